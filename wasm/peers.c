/* peers.c — see peers.h. Linear scans: 20 slots cost less than any index would. */
#include "peers.h"

/* g_peers is defined in hub.c (memory layout, see buffers.c). */

ph_peer *peer_by_conn(int32_t conn)
{
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        if (g_peers[i].state != PEER_FREE && g_peers[i].conn == conn) return &g_peers[i];
    }
    return 0;
}

ph_peer *peer_by_id(const char *id, uint32_t n)
{
    if (n != PH_PEER_ID_LEN) return 0;
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        if (g_peers[i].state == PEER_OPEN && memcmp(g_peers[i].id, id, n) == 0) return &g_peers[i];
    }
    return 0;
}

ph_peer *peer_alloc(int32_t conn)
{
    for (uint32_t i = 0; i < MAX_PEERS; i++) {
        if (g_peers[i].state == PEER_FREE) {
            memset(&g_peers[i], 0, sizeof g_peers[i]);
            g_peers[i].conn = conn;
            g_peers[i].state = PEER_OPEN;
            return &g_peers[i];
        }
    }
    return 0;
}

uint32_t peer_count(int state)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < MAX_PEERS; i++) n += g_peers[i].state == state;
    return n;
}

void peer_network(const ph_peer *p, const char **net, uint32_t *len)
{
    if (p->announced) {
        *net = p->net;
        *len = p->net_len;
    } else {
        *net = "global";
        *len = 6;
    }
}

int peer_in_network(const ph_peer *p, const char *net, uint32_t len)
{
    return p->state == PEER_OPEN && p->announced && p->net_len == len &&
           memcmp(p->net, net, len) == 0;
}

/*
 * peers.h — the fixed table of client connections the hub has accepted (valid, unique peer id).
 *
 * A slot is OPEN while the peer may send and receive, CLOSING after the hub asked the bridge to
 * close it (timeout, shutdown) and until on_peer_disconnected frees it. CLOSING slots still count
 * against MAX_PEERS (the socket exists) but their id is free for a reconnect and they belong to
 * no network.
 */
#ifndef PH_PEERS_H
#define PH_PEERS_H

#include <stdint.h>

#include "ph_port.h"

#ifndef PH_NETWORK_MAX
#define PH_NETWORK_MAX 64      /* bytes of a networkName (raw JSON string content)         */
#endif
#ifndef PH_ANNOUNCE_DATA_MAX
#define PH_ANNOUNCE_DATA_MAX 256 /* bytes of an announce `data` object as received         */
#endif
#define PH_PEER_ID_LEN 40

enum { PEER_FREE = 0, PEER_OPEN, PEER_CLOSING };

typedef struct {
    int32_t conn;
    uint32_t last_activity;    /* millis() of the last frame or pong                      */
    uint32_t last_ping;        /* millis() of the last heartbeat ping                     */
    uint16_t extra_len;
    uint8_t state;
    uint8_t announced;         /* member of network `net`                                 */
    uint8_t is_hub;
    uint8_t pinged;            /* a heartbeat ping went out since the last activity       */
    uint8_t net_len;
    char id[PH_PEER_ID_LEN + 1];
    char net[PH_NETWORK_MAX];
    /* The announce data's members other than peerId/isHub, raw ("k":v,"k2":v2), replayed in
     * every peer-discovered about this peer. */
    char extra[PH_ANNOUNCE_DATA_MAX];
} ph_peer;

extern ph_peer g_peers[MAX_PEERS];

ph_peer *peer_by_conn(int32_t conn);                 /* OPEN or CLOSING */
ph_peer *peer_by_id(const char *id, uint32_t n);     /* OPEN only, case-sensitive */
ph_peer *peer_alloc(int32_t conn);                   /* NULL when MAX_PEERS slots are used */
uint32_t peer_count(int state);
/* Network of a peer for routing: its announced network, "global" when it has not announced. */
void peer_network(const ph_peer *p, const char **net, uint32_t *len);
int peer_in_network(const ph_peer *p, const char *net, uint32_t len);  /* announced there */

#endif /* PH_PEERS_H */

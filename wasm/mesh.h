/*
 * mesh.h — the hub-mesh tables hub.c keeps about other hubs' peers (docs/PROTOCOL.md §7).
 * Defined in buffers.c (memory layout), used by hub.c only.
 */
#ifndef PH_MESH_H
#define PH_MESH_H

#include <stdint.h>

#include "peers.h"

#ifndef PH_REMOTE_MAX
#define PH_REMOTE_MAX 32        /* remote peers remembered; when full, the oldest learned is evicted */
#endif
#define PH_SEEN_SLOTS 32        /* dedup ring: hashes of signaling frames relayed across hubs    */

/* A peer some hub connection told us about. id[0] == 0: free. The network is kept as a hash:
 * frames about the peer go to local peers whose network hashes the same, in their own words. */
typedef struct {
    char id[PH_PEER_ID_LEN];
    uint32_t net;
    int32_t via;                /* the hub connection it was learned from                       */
} ph_remote;

typedef struct {
    uint32_t hash, at;          /* FNV-1a of type+from+target+data, millis() seen               */
} ph_seen;

extern ph_remote g_remote[PH_REMOTE_MAX];
extern ph_seen g_seen[PH_SEEN_SLOTS];

#endif /* PH_MESH_H */

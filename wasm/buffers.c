/*
 * buffers.c — the hub's large, rarely addressed memory: the two frame buffers (hub.c) and the
 * hub-mesh tables (mesh.h). A file of its own, linked after every other source, so wasm-ld lays
 * these out after the small, busy tables (g_peers, the state): those then sit at addresses below
 * 8 KiB, whose i32.const takes 2 bytes instead of 3 in every access (about 0.4 KB of module).
 */
#include "buffers.h"
#include "mesh.h"

ph_remote g_remote[PH_REMOTE_MAX];
ph_seen g_seen[PH_SEEN_SLOTS];
char g_in[MAX_MESSAGE_SIZE + PH_RELAY_ROOM];   /* frames from the bridge, relays built around them */
char g_out[PH_OUT_SIZE];                       /* frames the hub composes                          */

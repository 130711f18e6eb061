/*
 * buffers.h — the hub's two frame buffers (defined in buffers.c, which says why they live there).
 *
 * g_in holds the frame the bridge wrote (get_input_buffer: at most MAX_MESSAGE_SIZE bytes). A relay
 * is written in place around that frame's `data` (hub.c relay_in_place), so g_in also has room for
 * the relay's envelope past the largest frame, and relaying never needs a second frame-sized buffer.
 * g_out holds the frames the hub composes itself, all of them small.
 */
#ifndef PH_BUFFERS_H
#define PH_BUFFERS_H

#include "ph_port.h"

/* `{"type":"<longest relayed type>","data":` before the data, and the longest relay tail after it
 * (hub.c: fromPeerId, targetPeerId, a networkName of PH_NETWORK_MAX, timestamp); hub.c checks that
 * each relay fits and counts it in dropped.sendFailed if one ever did not. */
#define PH_RELAY_ROOM 288
/* The largest frame the hub composes: a peer-discovered carrying PH_ANNOUNCE_DATA_MAX bytes of
 * announce data, about 560 bytes. */
#define PH_OUT_SIZE 1024

extern char g_in[MAX_MESSAGE_SIZE + PH_RELAY_ROOM];
extern char g_out[PH_OUT_SIZE];

#endif

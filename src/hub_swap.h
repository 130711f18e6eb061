/*
 * hub_swap.h — the bridge-core function the firmware needs that ph_bridge.h does not declare yet.
 *
 * Requested from the bridge engineer (lib/pigeonhub_bridge). When ph_bridge.h declares it, delete
 * this header and include ph_bridge.h only. Called on the owner thread (hub task).
 */
#ifndef PH_HUB_SWAP_H
#define PH_HUB_SWAP_H

#include <stddef.h>
#include <stdint.h>
#include "ph_bridge.h"

/*
 * Replace the running module with `wasm` in place, keeping the ph_bridge object, its connection ids,
 * outboxes and ph_bridge_on_sent() accounting:
 *   1. validate and instantiate `wasm` in a new runtime (the checks of ph_bridge_check_module,
 *      init() included); on failure return the error, write the reason into err, and leave the
 *      running module untouched;
 *   2. if the old module was started, call start_server(port) on the new one with the same port;
 *   3. replay every open connection: on_peer_connected(conn), then that connection's last frame
 *      whose JSON "type" was "announce" (the bridge keeps a copy per connection), so peers stay
 *      known without reconnecting;
 *   4. destroy the old runtime. After return the old module bytes are no longer read, so the
 *      caller may unmap them; `wasm` must stay valid as long as the bridge (WASM3 reads in place).
 */
ph_result ph_bridge_swap(ph_bridge *bridge, const uint8_t *wasm, size_t wasm_len, char *err,
                         size_t err_cap);

/* The largest accepted frame comes from ph_bridge_input_buffer_size() (ph_bridge.h); after a swap
 * it must report the new module's get_input_buffer_size(). */

#endif /* PH_HUB_SWAP_H */

/*
 * hub_swap.h — kept so existing includes compile: ph_bridge_swap() is now declared (and documented)
 * in ph_bridge.h, which this header includes. New code should include ph_bridge.h directly.
 */
#ifndef PH_HUB_SWAP_H
#define PH_HUB_SWAP_H

#include "ph_bridge.h"

/* The largest accepted frame comes from ph_bridge_input_buffer_size() (ph_bridge.h); after a swap
 * it reports the new module's get_input_buffer_size(). */

#endif /* PH_HUB_SWAP_H */

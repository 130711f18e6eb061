/*
 * hub_task.h — the one task that owns WASM3 and the bridge core.
 *
 * Every ph_bridge_* call happens on this task (except ph_bridge_on_sent). Other tasks hand it work
 * as events on one FreeRTOS queue; it also runs the module's loop() once a second.
 */
#ifndef PH_HUB_TASK_H
#define PH_HUB_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "esp_err.h"
#include "sdkconfig.h"
#include "freertos/FreeRTOS.h"
#include "hub_events.h"

/* Native stack of the hub task (WASM3 recursion happens here), one named constant. */
#define HUB_TASK_STACK_BYTES CONFIG_PIGEONHUB_HUB_TASK_STACK
#define HUB_TICK_MS 1000 /* module loop(): the ABI asks for at least one call per second */

esp_err_t hub_task_start(void);
/* The running module's hub id (40 hex), as of boot; "" when no module could be loaded. */
const char *hub_task_hub_id(void);
/* Where the network layers deliver what arrives (http_server_start, ws_links). */
const hub_event_sink *hub_task_sink(void);

/* Requests answered by the hub task (HTTP endpoints). All return an HTTP status code. */
int hub_health_json(char *buf, size_t cap);
int hub_stats_json(char *buf, size_t cap);
/* Check the module just written to `slot` and switch to it. On failure err says why. */
int hub_swap_to_slot(int slot, char *json, size_t cap);

#endif /* PH_HUB_TASK_H */

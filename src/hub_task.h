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

/* Native stack of the hub task (WASM3 recursion happens here), one named constant. */
#define HUB_TASK_STACK_BYTES CONFIG_PIGEONHUB_HUB_TASK_STACK
#define HUB_TICK_MS 1000 /* module loop(): the ABI asks for at least one call per second */

typedef enum {
    HUB_EV_OPEN,     /* data = request URL (path + query), len = its length         */
    HUB_EV_FRAME,    /* data = complete text/binary message, len = its length       */
    HUB_EV_TOO_BIG,  /* len = size of a message that was refused (socket closing)   */
    HUB_EV_PONG,
    HUB_EV_CLOSE,    /* the socket is gone; exactly once per opened session         */
    HUB_EV_CALL,     /* data = hub_call: a request from another task with a reply   */
    HUB_EV_LINK_OPEN, /* an outgoing hub link (ws_links.c) completed its handshake   */
} hub_event_type;

typedef struct {
    hub_event_type type;
    uint32_t session; /* ws_transport / ws_links session id, unique per WebSocket    */
    int fd;           /* -1 for outgoing hub links                                   */
    uint8_t *data;    /* heap, owned by the event; freed by the hub task             */
    size_t len;
} hub_event;

esp_err_t hub_task_start(void);
/* Post an event; false when the queue stayed full for `wait` ticks (data is then still the
 * caller's to free). Frame events also count against CONFIG_PIGEONHUB_INBOX_BYTES. */
bool hub_post(const hub_event *ev, TickType_t wait);
/* Reserve / release inbox bytes for a frame about to be posted (back-pressure, see Kconfig). */
bool hub_inbox_reserve(size_t len, TickType_t wait);
void hub_inbox_release(size_t len);

/* Requests answered by the hub task (HTTP endpoints). All return an HTTP status code. */
int hub_health_json(char *buf, size_t cap);
int hub_stats_json(char *buf, size_t cap);
/* Check the module just written to `slot` and switch to it. On failure err says why. */
int hub_swap_to_slot(int slot, char *json, size_t cap);

#endif /* PH_HUB_TASK_H */

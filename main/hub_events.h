/*
 * hub_events.h — what the network layers (ws_transport.c, ws_links.c) hand to the hub task, and
 * the sink they hand it through. They include this header only: the hub task gives them its sink
 * when it starts them, so calls go one way (hub_task -> transports) and events come back through
 * the sink.
 */
#ifndef PH_HUB_EVENTS_H
#define PH_HUB_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "freertos/FreeRTOS.h"

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
    uint32_t posted_us; /* frames: frame_cycles_stamp_us() when posted (the queue wait)  */
    uint8_t kind;       /* frames: frame_kind_of() (frame_cycles.h)                      */
} hub_event;

typedef struct {
    /* Post an event; false when the queue stayed full for `wait` ticks (data is then still the
     * caller's to free). Frame events count against CONFIG_PIGEONHUB_INBOX_BYTES. */
    bool (*post)(const hub_event *ev, TickType_t wait);
    /* Reserve inbox bytes for a frame about to be posted (back-pressure, see Kconfig); false
     * when they did not free up within `wait`. The hub task releases them once it handled it. */
    bool (*reserve)(size_t len, TickType_t wait);
    /* Any task: the bytes of a frame handed to a transport's send left it (written or dropped). */
    void (*sent)(int32_t conn, size_t len);
} hub_event_sink;

#endif /* PH_HUB_EVENTS_H */

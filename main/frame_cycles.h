/*
 * frame_cycles.h — where a frame's time goes on the board, in CPU cycles (/stats "frameCycles").
 *
 * Four stages per frame: transport in (the httpd task reads and checks it, up to the inbox), the
 * queue wait (posted, until the hub task takes it), the hub (ph_bridge_on_frame: bridge, module
 * and the imports it calls) and transport out (each frame the module sent, from the send queue
 * to httpd_ws_send_frame_async). Kept per kind of received frame: offer-size, candidate-size and
 * announce, as count, sum, minimum and maximum.
 *
 * A span inside one task is read from the core's cycle counter. The ESP32's two cores count
 * apart, so a span that ends on the other core (the task blocked and moved), and every span from
 * one task to another, is timed with esp_timer instead and converted (1 µs is 160 or 240 cycles).
 * Under QEMU with -icount the esp32c3's counter counts instructions (docs/PERFORMANCE.md), while
 * esp_timer keeps virtual time: the counter's stages are instruction counts there, the others not.
 */
#ifndef PH_FRAME_CYCLES_H
#define PH_FRAME_CYCLES_H

#include <stddef.h>
#include <stdint.h>

typedef enum { FRAME_OFFER, FRAME_CANDIDATE, FRAME_ANNOUNCE, FRAME_KINDS } frame_kind;
typedef enum { STAGE_TRANSPORT_IN, STAGE_QUEUE_WAIT, STAGE_HUB, STAGE_TRANSPORT_OUT, STAGES } frame_stage;

typedef struct {
    uint32_t cycles;
    uint32_t us;
    int core;
} cycle_mark;

/* Received frames this long or longer count as offer-size (an SDP offer is about 4.5 KB, an ICE
 * candidate about 360 B). */
#define FRAME_OFFER_MIN_BYTES 2048
/* An announce is recognised by "announce" within its first bytes. */
#define FRAME_KIND_HEAD_BYTES 64

frame_kind frame_kind_of(const uint8_t *data, size_t len);

cycle_mark frame_cycles_mark(void);
/* The cycles since `start`. */
void frame_cycles_add_since(frame_kind kind, frame_stage stage, cycle_mark start);
/* esp_timer's microseconds (low 32 bits), for spans from one task to another. */
uint32_t frame_cycles_stamp_us(void);
void frame_cycles_add_since_us(frame_kind kind, frame_stage stage, uint32_t start_us);

/* The hub task, while the module handles a frame: the kind its sends are counted under. */
void frame_cycles_set_current(frame_kind kind);
frame_kind frame_cycles_current(void);   /* FRAME_KINDS outside a frame */

/* {"cpuMHz":..,"offer":{"transportIn":{"count":..,"sum":..,"min":..,"max":..},..},..}; returns
 * its length, or -1 when it does not fit. */
int frame_cycles_json(char *out, size_t cap);

#endif /* PH_FRAME_CYCLES_H */

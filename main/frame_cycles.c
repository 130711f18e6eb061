/*
 * frame_cycles.c — per-stage cycle counts of the frames the hub handles (frame_cycles.h).
 */
#include "frame_cycles.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "esp_cpu.h"
#include "esp_rom_sys.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"

typedef struct {
    uint32_t count;
    uint64_t sum;
    uint32_t min;
    uint32_t max;
} cycle_stat;

static const char *const KIND_NAMES[FRAME_KINDS] = { "offer", "candidate", "announce" };
static const char *const STAGE_NAMES[STAGES] = { "transportIn", "queueWait", "hub", "transportOut" };

static cycle_stat s_stats[FRAME_KINDS][STAGES];
static portMUX_TYPE s_lock = portMUX_INITIALIZER_UNLOCKED;
static frame_kind s_current = FRAME_KINDS;

frame_kind frame_kind_of(const uint8_t *data, size_t len)
{
    static const char announce[] = "\"announce\"";
    /* PeerPigeon puts "type" first; a 4.5 KB offer is not searched through. */
    size_t head = len < FRAME_KIND_HEAD_BYTES ? len : FRAME_KIND_HEAD_BYTES;
    if (memmem(data, head, announce, sizeof(announce) - 1) != NULL) {
        return FRAME_ANNOUNCE;
    }
    return len >= FRAME_OFFER_MIN_BYTES ? FRAME_OFFER : FRAME_CANDIDATE;
}

static void add(frame_kind kind, frame_stage stage, uint32_t cycles)
{
    if (kind >= FRAME_KINDS || stage >= STAGES) {
        return;
    }
    portENTER_CRITICAL(&s_lock);
    cycle_stat *st = &s_stats[kind][stage];
    if (st->count == 0 || cycles < st->min) {
        st->min = cycles;
    }
    if (cycles > st->max) {
        st->max = cycles;
    }
    st->sum += cycles;
    st->count++;
    portEXIT_CRITICAL(&s_lock);
}

cycle_mark frame_cycles_mark(void)
{
    return (cycle_mark){ .cycles = esp_cpu_get_cycle_count(), .us = frame_cycles_stamp_us(),
                         .core = esp_cpu_get_core_id() };
}

void frame_cycles_add_since(frame_kind kind, frame_stage stage, cycle_mark start)
{
    uint32_t now = esp_cpu_get_cycle_count();
    if (esp_cpu_get_core_id() == start.core) {
        add(kind, stage, now - start.cycles);
    } else {
        frame_cycles_add_since_us(kind, stage, start.us);
    }
}

uint32_t frame_cycles_stamp_us(void)
{
    return (uint32_t)esp_timer_get_time();
}

void frame_cycles_add_since_us(frame_kind kind, frame_stage stage, uint32_t start_us)
{
    uint32_t us = frame_cycles_stamp_us() - start_us;
    uint64_t cycles = (uint64_t)us * esp_rom_get_cpu_ticks_per_us();
    add(kind, stage, cycles > UINT32_MAX ? UINT32_MAX : (uint32_t)cycles);
}

void frame_cycles_set_current(frame_kind kind)
{
    s_current = kind;
}

frame_kind frame_cycles_current(void)
{
    return s_current;
}

/* Appends to out[*at...]; false once it no longer fits. */
static bool append(char *out, size_t cap, size_t *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = *at < cap ? vsnprintf(out + *at, cap - *at, fmt, ap) : -1;
    va_end(ap);
    if (n < 0 || *at + (size_t)n >= cap) {
        return false;
    }
    *at += (size_t)n;
    return true;
}

int frame_cycles_json(char *out, size_t cap)
{
    cycle_stat copy[FRAME_KINDS][STAGES];
    portENTER_CRITICAL(&s_lock);
    memcpy(copy, s_stats, sizeof(copy));
    portEXIT_CRITICAL(&s_lock);

    size_t at = 0;
    bool ok = append(out, cap, &at, "{\"cpuMHz\":%" PRIu32, esp_rom_get_cpu_ticks_per_us());
    for (int k = 0; ok && k < FRAME_KINDS; k++) {
        ok = append(out, cap, &at, ",\"%s\":{", KIND_NAMES[k]);
        for (int s = 0; ok && s < STAGES; s++) {
            const cycle_stat *st = &copy[k][s];
            ok = append(out, cap, &at,
                        "%s\"%s\":{\"count\":%" PRIu32 ",\"sum\":%" PRIu64 ",\"min\":%" PRIu32
                        ",\"max\":%" PRIu32 "}",
                        s ? "," : "", STAGE_NAMES[s], st->count, st->sum, st->min, st->max);
        }
        ok = ok && append(out, cap, &at, "}");
    }
    ok = ok && append(out, cap, &at, "}");
    return ok ? (int)at : -1;
}

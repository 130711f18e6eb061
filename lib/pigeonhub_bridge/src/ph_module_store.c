/*
 * ph_module_store.c — the module store's policy (ph_module_store.h); the host keeps the state.
 *
 * Every function loads the state, decides, and saves it when it changed: the state is a few
 * bytes, changes are rare (boots, uploads), and a host that dies between two calls then never
 * finds a decision half-applied.
 */
#include "ph_module_store.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const SLOT_NAMES[PH_STORE_SLOTS] = PH_STORE_SLOT_NAMES;

static bool is_slot(int slot)
{
    return slot >= 0 && slot < PH_STORE_SLOTS;
}

static void store_log(ph_store *store, char level, const char *fmt, ...)
{
    if (store->ops.log == NULL) return;
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    store->ops.log(store->ops.ctx, level, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* The state as the host keeps it, with anything out of range read as "nothing there". */
static void load(ph_store *store, ph_store_state *state)
{
    memset(state, 0, sizeof *state);
    state->active = state->previous = PH_STORE_BUILTIN;
    if (store->ops.load(store->ops.ctx, state) < 0) {
        memset(state, 0, sizeof *state);
        state->active = state->previous = PH_STORE_BUILTIN;
        return;
    }
    if (!is_slot(state->active)) state->active = PH_STORE_BUILTIN;
    if (!is_slot(state->previous)) state->previous = PH_STORE_BUILTIN;
    state->trial = state->trial && is_slot(state->active);
}

static int save(ph_store *store, const ph_store_state *state)
{
    return store->ops.save(store->ops.ctx, state);
}

void ph_store_init(ph_store *store, const ph_store_ops *ops, const char *builtin_name,
                   const char *restart, uint32_t confirm_after_s, uint8_t fresh_boots)
{
    memset(store, 0, sizeof *store);
    store->ops = *ops;
    store->builtin_name = builtin_name;
    store->restart = restart;
    store->confirm_after_s = confirm_after_s;
    store->fresh_boots = fresh_boots;
    store->running = PH_STORE_BUILTIN;
    store->trial_failed = store->trial_failed_then = PH_STORE_NONE;
}

const char *ph_store_slot_name(const ph_store *store, int slot)
{
    return is_slot(slot) ? SLOT_NAMES[slot] : store->builtin_name;
}

static void forget(ph_store_state *state, int slot)
{
    memset(&state->slot[slot], 0, sizeof state->slot[slot]);
    if (state->active == slot) {
        state->active = state->previous;   /* the built-in module stays the last resort */
        state->previous = PH_STORE_BUILTIN;
        state->trial = 0;
        state->trial_boots = 0;
    } else if (state->previous == slot) {
        state->previous = PH_STORE_BUILTIN;
    }
}

int ph_store_mark_bad(ph_store *store, int slot)
{
    if (!is_slot(slot)) return 0;
    ph_store_state state;
    load(store, &state);
    forget(&state, slot);
    return save(store, &state);
}

static bool usable(ph_store *store, const ph_store_state *state, int slot)
{
    return is_slot(slot) && state->slot[slot].len > 0 &&
           (store->ops.slot_exists == NULL || store->ops.slot_exists(store->ops.ctx, slot));
}

int ph_store_boot_order(ph_store *store, int order[PH_STORE_SLOTS + 1])
{
    ph_store_state state;
    load(store, &state);
    if (state.trial && state.trial_boots >= store->fresh_boots) {
        store_log(store, 'W', "module in %s did not run %u s before the last %s: falling back",
                  SLOT_NAMES[state.active], (unsigned)store->confirm_after_s, store->restart);
        forget(&state, state.active);
        save(store, &state);
    }
    int n = 0;
    if (usable(store, &state, state.active)) order[n++] = state.active;
    if (state.previous != state.active && usable(store, &state, state.previous)) {
        order[n++] = state.previous;
    }
    order[n++] = PH_STORE_BUILTIN;
    return n;
}

void ph_store_note_boot(ph_store *store, int slot)
{
    store->running = slot;
    if (!is_slot(slot) || store->fresh_boots == 0) return;
    ph_store_state state;
    load(store, &state);
    if (state.trial && state.active == slot && state.trial_boots < UINT8_MAX) {
        state.trial_boots++;
        save(store, &state);
    }
}

int ph_store_free_slot(const ph_store *store)
{
    return store->running == 0 ? 1 : 0;
}

int ph_store_record_upload(ph_store *store, int slot, uint32_t len, const uint8_t sha256[32])
{
    if (!is_slot(slot) || len == 0) return -1;
    ph_store_state state;
    load(store, &state);
    state.slot[slot].len = len;
    memcpy(state.slot[slot].sha256, sha256, sizeof state.slot[slot].sha256);
    return save(store, &state);
}

int ph_store_activate(ph_store *store, int slot)
{
    if (!is_slot(slot)) return -1;
    ph_store_state state;
    load(store, &state);
    if (state.active != slot) state.previous = state.active;
    state.active = (int8_t)slot;
    state.trial = 1;
    state.trial_boots = 0;
    int rc = save(store, &state);
    if (rc == 0) store->running = slot;
    return rc;
}

bool ph_store_needs_confirm(ph_store *store)
{
    ph_store_state state;
    load(store, &state);
    return state.trial != 0;
}

int ph_store_confirm(ph_store *store)
{
    ph_store_state state;
    load(store, &state);
    if (!state.trial) return 0;
    state.trial = 0;
    state.trial_boots = 0;
    int rc = save(store, &state);
    if (rc == 0) store_log(store, 'I', "module confirmed: it stays active across %ss", store->restart);
    return rc;
}

int ph_store_trial_trapped(ph_store *store, uint32_t traps)
{
    if (traps == 0 || !is_slot(store->running)) return PH_STORE_NONE;
    ph_store_state state;
    load(store, &state);
    if (!state.trial || state.active != store->running) return PH_STORE_NONE;
    int failed = state.active;
    forget(&state, failed);
    /* Not saved is still given up for now: the host swaps back regardless, and at the next boot
     * the slot, still on trial, falls back the way an unconfirmed module does. */
    save(store, &state);
    return failed;
}

void ph_store_note_fallback(ph_store *store, int failed, uint32_t traps, int now)
{
    store->running = now;
    store->trial_failed = failed;
    store->trial_failed_traps = traps;
    store->trial_failed_then = now;
    store_log(store, 'E', "module %s trapped %u time%s while on trial: not confirmed, slot marked "
              "bad; %s runs now", ph_store_slot_name(store, failed), (unsigned)traps,
              traps == 1 ? "" : "s", ph_store_slot_name(store, now));
}

void ph_store_clean_shutdown(ph_store *store)
{
    ph_store_state state;
    load(store, &state);
    if (state.trial && state.trial_boots) {
        state.trial_boots = 0;
        save(store, &state);
    }
}

uint32_t ph_store_recorded_len(ph_store *store, int slot)
{
    if (!is_slot(slot)) return 0;
    ph_store_state state;
    load(store, &state);
    return state.slot[slot].len;
}

bool ph_store_verify(ph_store *store, int slot, size_t len, const uint8_t sha256[32], char *err,
                     size_t err_cap)
{
    if (!is_slot(slot)) {
        snprintf(err, err_cap, "module slot %d does not exist", slot);
        return false;
    }
    ph_store_state state;
    load(store, &state);
    const ph_store_record *rec = &state.slot[slot];
    if (rec->len == 0) {
        snprintf(err, err_cap, "%s is empty", SLOT_NAMES[slot]);
        return false;
    }
    if (len != rec->len) {
        snprintf(err, err_cap, "%s holds %u bytes, %u were recorded", SLOT_NAMES[slot],
                 (unsigned)len, (unsigned)rec->len);
        return false;
    }
    if (memcmp(sha256, rec->sha256, sizeof rec->sha256) != 0) {
        snprintf(err, err_cap, "%s: SHA-256 of the contents differs from the recorded one",
                 SLOT_NAMES[slot]);
        return false;
    }
    return true;
}

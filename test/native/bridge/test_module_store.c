/*
 * test_module_store.c — the module store's policy (ph_module_store.c) on a host that keeps its
 * state in memory, as the board keeps it in NVS and the PC hub in a state file: boot order,
 * trial and confirmation with the board's 0 and the PC's 1 fresh boots, marking bad, uploads
 * never into the running slot, verification, and a state that cannot be read or holds garbage.
 *
 *   ./test_module_store      exit status 0 = all passed
 */
#include <stdio.h>
#include <string.h>

#include "ph_module_store.h"

static int failures;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #cond);         \
            failures++;                                                               \
        }                                                                             \
    } while (0)

typedef struct {
    ph_store_state state;
    int readable;           /* 0: load() fails, as a corrupt NVS page or state file would */
    int saves;
    int missing_slot;       /* a slot whose partition is not in the table, or -2 */
    char last_log[200];
} memory_host;

static int mem_load(void *ctx, ph_store_state *state)
{
    memory_host *h = ctx;
    if (!h->readable) return -1;
    *state = h->state;
    return 0;
}

static int mem_save(void *ctx, const ph_store_state *state)
{
    memory_host *h = ctx;
    h->state = *state;
    h->readable = 1;
    h->saves++;
    return 0;
}

static bool mem_slot_exists(void *ctx, int slot)
{
    return ((memory_host *)ctx)->missing_slot != slot;
}

static void mem_log(void *ctx, char level, const char *msg, size_t len)
{
    memory_host *h = ctx;
    snprintf(h->last_log, sizeof h->last_log, "%c %.*s", level, (int)len, msg);
}

static void host_init(memory_host *h, ph_store *store, uint8_t fresh_boots)
{
    memset(h, 0, sizeof *h);
    h->state.active = h->state.previous = PH_STORE_BUILTIN;
    h->readable = 1;
    h->missing_slot = -2;
    const ph_store_ops ops = { h, mem_load, mem_save, mem_slot_exists, mem_log };
    ph_store_init(store, &ops, fresh_boots ? "packaged" : "embedded",
                  fresh_boots ? "restart" : "reset", 60, fresh_boots);
}

static const uint8_t SHA_A[32] = { 0xaa, 1, 2, 3 };
static const uint8_t SHA_B[32] = { 0xbb, 4, 5, 6 };

/* An upload as a host does it: into the free slot, recorded, then activated by the swap. */
static int upload(ph_store *store, uint32_t len, const uint8_t sha[32])
{
    int slot = ph_store_free_slot(store);
    ph_store_mark_bad(store, slot);   /* its old module is about to be overwritten */
    CHECK(ph_store_record_upload(store, slot, len, sha) == 0);
    CHECK(ph_store_activate(store, slot) == 0);
    return slot;
}

static int order_is(ph_store *store, int n, const int *want)
{
    int order[PH_STORE_SLOTS + 1];
    int got = ph_store_boot_order(store, order);
    if (got != n) return 0;
    for (int i = 0; i < n; i++) {
        if (order[i] != want[i]) return 0;
    }
    return 1;
}

static void test_nothing_uploaded_runs_the_builtin_module(void)
{
    memory_host h;
    ph_store s;
    host_init(&h, &s, 0);
    CHECK(order_is(&s, 1, (int[]){ PH_STORE_BUILTIN }));
    CHECK(!ph_store_needs_confirm(&s));
    CHECK(strcmp(ph_store_slot_name(&s, PH_STORE_BUILTIN), "embedded") == 0);
    CHECK(strcmp(ph_store_slot_name(&s, 1), "hubmod1") == 0);
}

static void test_uploads_alternate_and_never_hit_the_running_slot(void)
{
    memory_host h;
    ph_store s;
    host_init(&h, &s, 0);
    CHECK(upload(&s, 100, SHA_A) == 0);
    CHECK(s.running == 0 && ph_store_free_slot(&s) == 1);
    CHECK(ph_store_confirm(&s) == 0);
    CHECK(strcmp(h.last_log, "I module confirmed: it stays active across resets") == 0);
    CHECK(upload(&s, 200, SHA_B) == 1);
    CHECK(h.state.active == 1 && h.state.previous == 0 && h.state.trial == 1);
    CHECK(ph_store_free_slot(&s) == 0);
    /* A third upload reuses the previous module's slot: that module is forgotten first. */
    ph_store_confirm(&s);
    CHECK(upload(&s, 300, SHA_A) == 0);
    CHECK(h.state.active == 0 && h.state.previous == 1 && h.state.slot[0].len == 300);
}

static void test_board_falls_back_at_once_after_a_reset_on_trial(void)
{
    memory_host h;
    ph_store s;
    host_init(&h, &s, 0);
    upload(&s, 100, SHA_A);
    ph_store_confirm(&s);
    upload(&s, 200, SHA_B);                 /* slot 1 on trial, slot 0 previous */
    /* reset before it was confirmed: */
    CHECK(order_is(&s, 2, (int[]){ 0, PH_STORE_BUILTIN }));
    CHECK(strcmp(h.last_log, "W module in hubmod1 did not run 60 s before the last reset: "
                             "falling back") == 0);
    CHECK(h.state.slot[1].len == 0 && h.state.active == 0 && !h.state.trial);
}

static void test_pc_gives_a_module_on_trial_one_fresh_boot(void)
{
    memory_host h;
    ph_store s;
    host_init(&h, &s, 1);
    upload(&s, 100, SHA_A);
    ph_store_confirm(&s);
    upload(&s, 200, SHA_B);
    CHECK(order_is(&s, 3, (int[]){ 1, 0, PH_STORE_BUILTIN }));   /* its fresh boot */
    ph_store_note_boot(&s, 1);
    ph_store_clean_shutdown(&s);            /* stopped on purpose: the fresh boot starts over */
    CHECK(order_is(&s, 3, (int[]){ 1, 0, PH_STORE_BUILTIN }));
    ph_store_note_boot(&s, 1);              /* ... and this time the hub died */
    CHECK(order_is(&s, 2, (int[]){ 0, PH_STORE_BUILTIN }));
    CHECK(strstr(h.last_log, "before the last restart: falling back") != NULL);
}

static void test_confirmed_module_stays_across_any_number_of_restarts(void)
{
    memory_host h;
    ph_store s;
    host_init(&h, &s, 1);
    upload(&s, 100, SHA_A);
    ph_store_note_boot(&s, 0);
    CHECK(ph_store_confirm(&s) == 0);
    for (int i = 0; i < 5; i++) {
        CHECK(order_is(&s, 2, (int[]){ 0, PH_STORE_BUILTIN }));
        ph_store_note_boot(&s, 0);
    }
}

static void test_mark_bad_promotes_the_previous_module(void)
{
    memory_host h;
    ph_store s;
    host_init(&h, &s, 0);
    upload(&s, 100, SHA_A);
    ph_store_confirm(&s);
    upload(&s, 200, SHA_B);
    ph_store_confirm(&s);
    ph_store_mark_bad(&s, 1);               /* the active one failed to load */
    CHECK(h.state.active == 0 && h.state.previous == PH_STORE_BUILTIN);
    CHECK(order_is(&s, 2, (int[]){ 0, PH_STORE_BUILTIN }));
    ph_store_mark_bad(&s, 0);
    CHECK(order_is(&s, 1, (int[]){ PH_STORE_BUILTIN }));
    ph_store_mark_bad(&s, PH_STORE_BUILTIN);   /* not a slot: nothing to forget */
    ph_store_mark_bad(&s, 7);
    CHECK(order_is(&s, 1, (int[]){ PH_STORE_BUILTIN }));
}

static void test_verify_names_what_differs(void)
{
    memory_host h;
    ph_store s;
    char err[128];
    host_init(&h, &s, 0);
    upload(&s, 100, SHA_A);
    CHECK(ph_store_recorded_len(&s, 0) == 100 && ph_store_recorded_len(&s, 1) == 0);
    CHECK(ph_store_verify(&s, 0, 100, SHA_A, err, sizeof err));
    CHECK(!ph_store_verify(&s, 0, 100, SHA_B, err, sizeof err));
    CHECK(strcmp(err, "hubmod0: SHA-256 of the contents differs from the recorded one") == 0);
    CHECK(!ph_store_verify(&s, 0, 99, SHA_A, err, sizeof err));
    CHECK(strcmp(err, "hubmod0 holds 99 bytes, 100 were recorded") == 0);
    CHECK(!ph_store_verify(&s, 1, 100, SHA_A, err, sizeof err));
    CHECK(strcmp(err, "hubmod1 is empty") == 0);
    CHECK(!ph_store_verify(&s, PH_STORE_BUILTIN, 100, SHA_A, err, sizeof err));
}

static void test_unreadable_or_garbage_state_runs_the_builtin_module(void)
{
    memory_host h;
    ph_store s;
    host_init(&h, &s, 0);
    upload(&s, 100, SHA_A);
    h.readable = 0;
    CHECK(order_is(&s, 1, (int[]){ PH_STORE_BUILTIN }));
    h.readable = 1;
    h.state.active = 42;                    /* out of range: nothing active */
    h.state.previous = -7;
    CHECK(order_is(&s, 1, (int[]){ PH_STORE_BUILTIN }));
    h.state.active = 0;
    h.state.trial = 0;
    h.missing_slot = 0;                     /* its partition is not in this table */
    CHECK(order_is(&s, 1, (int[]){ PH_STORE_BUILTIN }));
    CHECK(ph_store_record_upload(&s, 2, 100, SHA_A) < 0 && ph_store_record_upload(&s, 0, 0, SHA_A) < 0);
    CHECK(ph_store_activate(&s, PH_STORE_BUILTIN) < 0);
}

static void test_a_boot_without_trial_writes_nothing(void)
{
    memory_host h;
    ph_store s;
    host_init(&h, &s, 0);
    upload(&s, 100, SHA_A);
    ph_store_confirm(&s);
    int saves = h.saves;
    int order[PH_STORE_SLOTS + 1];
    ph_store_boot_order(&s, order);
    ph_store_note_boot(&s, 0);
    ph_store_needs_confirm(&s);
    CHECK(h.saves == saves);                /* flash and NVS wear only on a change */
}

static void test_a_module_that_traps_on_trial_is_given_up(void)
{
    memory_host h;
    ph_store s;
    host_init(&h, &s, 0);
    upload(&s, 100, SHA_A);
    ph_store_confirm(&s);
    upload(&s, 200, SHA_B);                  /* hubmod1 runs, on trial; hubmod0 previous */
    CHECK(ph_store_trial_trapped(&s, 0) == PH_STORE_NONE);
    CHECK(h.state.active == 1 && h.state.trial == 1);
    CHECK(ph_store_trial_trapped(&s, 3) == 1);
    CHECK(h.state.active == 0 && h.state.previous == PH_STORE_BUILTIN && !h.state.trial);
    CHECK(h.state.slot[1].len == 0 && h.state.slot[0].len == 100);
    CHECK(order_is(&s, 2, (int[]){ 0, PH_STORE_BUILTIN }));
    CHECK(s.trial_failed == PH_STORE_NONE);   /* until the host says what runs instead */
    ph_store_note_fallback(&s, 1, 3, 0);
    CHECK(s.running == 0 && s.trial_failed == 1 && s.trial_failed_traps == 3 &&
          s.trial_failed_then == 0);
    CHECK(strcmp(h.last_log, "E module hubmod1 trapped 3 times while on trial: not confirmed, slot "
                             "marked bad; hubmod0 runs now") == 0);
    /* What runs now is confirmed: its traps are not held against it. */
    CHECK(ph_store_trial_trapped(&s, 5) == PH_STORE_NONE);
    CHECK(h.state.active == 0 && h.state.slot[0].len == 100);
}

static void test_traps_after_confirmation_or_of_the_builtin_module_change_nothing(void)
{
    memory_host h;
    ph_store s;
    host_init(&h, &s, 1);
    CHECK(ph_store_trial_trapped(&s, 1) == PH_STORE_NONE);   /* the packaged module runs */
    upload(&s, 100, SHA_A);
    ph_store_confirm(&s);
    int saves = h.saves;
    CHECK(ph_store_trial_trapped(&s, 1) == PH_STORE_NONE);
    CHECK(h.saves == saves && h.state.active == 0 && h.state.slot[0].len == 100);
    /* Only the first upload on this host, on trial: it falls back to the packaged module. */
    memory_host h2;
    ph_store s2;
    host_init(&h2, &s2, 1);
    upload(&s2, 100, SHA_A);
    CHECK(ph_store_trial_trapped(&s2, 1) == 0);
    ph_store_note_fallback(&s2, 0, 1, PH_STORE_BUILTIN);
    CHECK(strcmp(h2.last_log, "E module hubmod0 trapped 1 time while on trial: not confirmed, slot "
                              "marked bad; packaged runs now") == 0);
    CHECK(order_is(&s2, 1, (int[]){ PH_STORE_BUILTIN }));
}

int main(void)
{
    test_nothing_uploaded_runs_the_builtin_module();
    test_uploads_alternate_and_never_hit_the_running_slot();
    test_board_falls_back_at_once_after_a_reset_on_trial();
    test_pc_gives_a_module_on_trial_one_fresh_boot();
    test_confirmed_module_stays_across_any_number_of_restarts();
    test_mark_bad_promotes_the_previous_module();
    test_verify_names_what_differs();
    test_unreadable_or_garbage_state_runs_the_builtin_module();
    test_a_boot_without_trial_writes_nothing();
    test_a_module_that_traps_on_trial_is_given_up();
    test_traps_after_confirmation_or_of_the_builtin_module_change_nothing();
    if (failures) {
        fprintf(stderr, "test_module_store: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_module_store: all passed\n");
    return 0;
}

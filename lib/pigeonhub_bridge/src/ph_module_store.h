/*
 * ph_module_store.h — which hub module runs: the policy the board and the PC hub share.
 *
 * A host keeps two slots for uploaded modules (flash partitions on the board, files on the PC)
 * next to the module it was built with (embedded in the firmware, packaged with the PC hub), and a
 * small state: which slot is active, which was active before, whether the active one still has to
 * prove itself, and each slot's length and SHA-256. Where those live is the host's business
 * (ph_store_ops: NVS on the board, a state file on the PC); what they mean is decided here:
 *
 *   - Boot order: the active slot, then the previous one, then the built-in module. A slot that
 *     fails to load is marked bad (its record forgotten) and the next one is tried.
 *   - An upload goes to the slot that is not running; activating it makes it the active module
 *     "on trial" and the old active one the previous. Once it has run long enough the host
 *     confirms it and it stays across restarts.
 *   - A module still on trial when the host restarts gets `fresh_boots` more boots (0 on a board:
 *     a reset within the confirmation time means it failed, like an OTA app failing its self-test;
 *     1 on the PC, which is restarted on purpose far more often than a board crashes). After
 *     those it is marked bad and the previous module runs.
 *   - A module that traps while on trial is not confirmed either: the host gives it up at once,
 *     marks its slot bad and swaps the previous module back in live (peers stay connected, as in
 *     any swap). A module that traps once it is confirmed keeps running (each trap closes only
 *     the connection it happened on).
 */
#ifndef PH_STORE_POLICY_H
#define PH_STORE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PH_STORE_SLOTS 2
#define PH_STORE_BUILTIN (-1)            /* the module the host was built with                  */
#define PH_STORE_NONE (-2)               /* no slot (ph_store_trial_trapped: nothing given up)  */
#define PH_STORE_SLOT_BYTES (64 * 1024)  /* one slot (partitions.csv: hubmod0/hubmod1, 0x10000) */
#define PH_STORE_SLOT_NAMES { "hubmod0", "hubmod1" }   /* the board's partition labels */
/* Seconds an activated module runs before it is confirmed: the PC hub's default and Kconfig's
 * PIGEONHUB_MODULE_CONFIRM_S default (test/firmware/test_config_consistency.py checks it). */
#define PH_STORE_CONFIRM_S_DEFAULT 60
#define PH_UPLOAD_TOKEN_MIN 8            /* upload tokens (POST /module, Bearer <token>)        */
#define PH_UPLOAD_TOKEN_MAX 64

typedef struct {
    uint32_t len;            /* 0: empty, or marked bad */
    uint8_t sha256[32];
} ph_store_record;

typedef struct {
    int8_t active;           /* a slot, or PH_STORE_BUILTIN */
    int8_t previous;
    uint8_t trial;           /* 1 until the active module is confirmed */
    uint8_t trial_boots;     /* boots of the active module while on trial (hosts with fresh_boots) */
    ph_store_record slot[PH_STORE_SLOTS];
} ph_store_state;

/* Where a host keeps the state. Called on the thread that calls the ph_store functions. */
typedef struct ph_store_ops {
    void *ctx;
    /* Fill *state, which arrives as "nothing uploaded". Returns 0, or <0 when the state cannot be
     * read: the store then runs the built-in module (a broken state must never stop a boot). */
    int (*load)(void *ctx, ph_store_state *state);
    int (*save)(void *ctx, const ph_store_state *state);   /* 0, or <0 */
    /* Does this slot exist on this host (a partition in the table, a writable directory)? */
    bool (*slot_exists)(void *ctx, int slot);
    /* One log line, as ph_transport_ops.log; may be NULL. */
    void (*log)(void *ctx, char level, const char *msg, size_t len);
} ph_store_ops;

typedef struct {
    ph_store_ops ops;
    const char *builtin_name;    /* "embedded" on the board, "packaged" on the PC */
    const char *restart;         /* what starting over is called there: "reset", "restart" */
    uint32_t confirm_after_s;    /* for the log line when a module on trial is given up */
    uint8_t fresh_boots;
    int running;                 /* the slot the hub runs now (PH_STORE_BUILTIN at first) */
    /* The last module given up for trapping on trial, since the host started (for /stats). */
    int trial_failed;            /* its slot, or PH_STORE_NONE */
    uint32_t trial_failed_traps;
    int trial_failed_then;       /* what ran instead */
} ph_store;

void ph_store_init(ph_store *store, const ph_store_ops *ops, const char *builtin_name,
                   const char *restart, uint32_t confirm_after_s, uint8_t fresh_boots);

/* "hubmod0", "hubmod1", or the built-in module's name. */
const char *ph_store_slot_name(const ph_store *store, int slot);

/* The slots to try at boot, best first, into order[]; returns how many (the built-in module is
 * always last). Gives up a module whose trial boots are spent (marks it bad, logs why). */
int ph_store_boot_order(ph_store *store, int order[PH_STORE_SLOTS + 1]);
/* The host booted this slot: it runs now; a module on trial has used one of its fresh boots. */
void ph_store_note_boot(ph_store *store, int slot);
/* A slot failed to load, or is about to be overwritten: forget its record; if it was active, the
 * previous module becomes active. 0, or <0 when the state could not be saved. */
int ph_store_mark_bad(ph_store *store, int slot);

/* The slot an upload may overwrite: never the running one. */
int ph_store_free_slot(const ph_store *store);
/* An upload into `slot` was written and checked: record its length and SHA-256. 0 or <0. */
int ph_store_record_upload(ph_store *store, int slot, uint32_t len, const uint8_t sha256[32]);
/* The hub now runs this slot: active and on trial, the old active one the previous. 0 or <0. */
int ph_store_activate(ph_store *store, int slot);
bool ph_store_needs_confirm(ph_store *store);
/* The active module has run long enough: it stays across restarts. 0 or <0. */
int ph_store_confirm(ph_store *store);
/* The running module has trapped `traps` times since it started running. When it is the active
 * module on trial and traps > 0, it is given up: its record is forgotten, the previous module
 * becomes active (confirmed), and its slot is returned; else PH_STORE_NONE. The host then swaps
 * to the first module of ph_store_boot_order() that loads and calls ph_store_note_fallback(). */
int ph_store_trial_trapped(ph_store *store, uint32_t traps);
/* `now` runs instead of the module given up: logs why (level 'E') and keeps it for /stats. */
void ph_store_note_fallback(ph_store *store, int failed, uint32_t traps, int now);

/* The host stopped on purpose (PC: Ctrl-C): not the module's fault, its fresh boots start over. */
void ph_store_clean_shutdown(ph_store *store);

/* The length recorded for a slot's module; 0 when the slot is empty or was marked bad. */
uint32_t ph_store_recorded_len(ph_store *store, int slot);
/* Does a slot's content (len bytes whose SHA-256 is sha256, computed by the host) match its
 * record? Returns true, or false with the reason in err ("hubmod1 is empty", ...). */
bool ph_store_verify(ph_store *store, int slot, size_t len, const uint8_t sha256[32], char *err,
                     size_t err_cap);

#endif /* PH_STORE_POLICY_H */

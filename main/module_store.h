/*
 * module_store.h — where hub modules live: the one embedded in the firmware and two flash slots
 * (partitions hubmod0/hubmod1) for uploaded modules, memory-mapped so WASM3 reads them in place.
 * Which one runs is the module store's policy (ph_module_store.h, shared with the PC hub): the
 * active uploaded slot → the previous slot → the embedded module, and a slot that was activated
 * but never confirmed (the device reset within CONFIG_PIGEONHUB_MODULE_CONFIRM_S) is given up,
 * like an OTA app that failed its self-test.
 */
#ifndef PH_MODULE_STORE_H
#define PH_MODULE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "esp_err.h"
#include "esp_partition.h"
#include "ph_module_store.h"
#include "ph_module_upload.h"

#define MODULE_SLOT_EMBEDDED PH_STORE_BUILTIN
#define MODULE_SLOT_COUNT PH_STORE_SLOTS
#define MODULE_PARTITION_TYPE ((esp_partition_type_t)0x40) /* application-defined, partitions.csv */
#define MODULE_SLOT_MIN_BYTES PH_STORE_SLOT_BYTES          /* partitions.csv: 0x10000 each       */

typedef struct {
    int slot;                         /* 0, 1 or MODULE_SLOT_EMBEDDED                */
    const uint8_t *data;              /* stays valid until module_store_release()    */
    size_t len;
    uint8_t sha256[32];
    esp_partition_mmap_handle_t map;  /* valid when slot >= 0                        */
} module_image;

esp_err_t module_store_init(void);
/* Fill order[] with the slots to try at boot, best first; returns how many (embedded is last). */
int module_store_boot_order(int order[MODULE_SLOT_COUNT + 1]);
/* Map a slot (or the embedded module) and verify its recorded length and SHA-256. */
esp_err_t module_store_open(int slot, module_image *img, char *err, size_t err_cap);
void module_store_release(module_image *img);

/* "hubmod0", "hubmod1" (the partition labels) or "embedded". */
const char *module_store_slot_name(int slot);
/* Mark which slot the hub runs now (any task may then ask which slot is free for an upload). */
void module_store_set_running(int slot);
int module_store_running(void);
/* A slot failed to load at boot: never try it again until something new is written there. */
void module_store_mark_bad(int slot);
/* Record a slot as the active module (unconfirmed), keeping the old one as previous. */
esp_err_t module_store_activate(int slot);
/* The active module has run long enough: keep it across resets. */
void module_store_confirm(void);
bool module_store_needs_confirm(void);
/* The running module trapped `traps` times since it started: the slot given up when it was on
 * trial (the previous module is active now), else PH_STORE_NONE (ph_store_trial_trapped). */
int module_store_trial_trapped(uint32_t traps);
/* `now` runs instead of the module given up: logs why and keeps it for /stats. */
void module_store_note_fallback(int failed, uint32_t traps, int now);
/* The last module given up since boot (true), or none (false). */
bool module_store_trial_failure(int *failed, uint32_t *traps, int *now);

/* Upload into the slot that is not running (ph_module_upload.h: begin erases, write streams,
 * finish checks length + SHA-256 and records, abort erases). `up` starts zeroed. */
esp_err_t module_store_upload_begin(ph_upload *up, size_t len, char *err, size_t err_cap);
esp_err_t module_store_upload_write(ph_upload *up, const void *data, size_t len, char *err,
                                    size_t err_cap);
esp_err_t module_store_upload_finish(ph_upload *up, const uint8_t expected_sha[32], char *err,
                                     size_t err_cap);
void module_store_upload_abort(ph_upload *up);
size_t module_store_slot_size(void);

void module_store_sha_hex(const uint8_t sha[32], char out[65]);

#endif /* PH_MODULE_STORE_H */

/*
 * module_store.c — the embedded module and two flash slots: the module store's policy
 * (ph_module_store.c, shared with the PC hub) over NVS, and the partitions it names.
 *
 * NVS (namespace "pigeonhub"), the policy's ph_store_state:
 *   mod_active i8   slot of the module to run (-1 = embedded)
 *   mod_prev   i8   slot to fall back to
 *   mod_trial  u8   1 while the active module has not yet run CONFIG_PIGEONHUB_MODULE_CONFIRM_S
 *   mod_lenN   u32  bytes of the module in slot N (absent = slot empty or bad)
 *   mod_shaN   blob SHA-256 of those bytes, checked every time the slot is mapped
 */
#include "module_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "esp_log.h"
#include "mbedtls/sha256.h"
#include "nvs.h"
#include "settings.h"

static const char *TAG = "pigeonhub";

/* The module built by extra_scripts/build_hub_wasm.py, embedded by main/CMakeLists.txt EMBED_FILES. */
extern const uint8_t hub_wasm_start[] asm("_binary_hub_wasm_start");
extern const uint8_t hub_wasm_end[] asm("_binary_hub_wasm_end");

/* The partitions' labels (partitions.csv), which are also the slots' names in logs and answers. */
static const char *const SLOT_LABELS[MODULE_SLOT_COUNT] = PH_STORE_SLOT_NAMES;
static const esp_partition_t *s_parts[MODULE_SLOT_COUNT];
static ph_store s_store;

const char *module_store_slot_name(int slot)
{
    return ph_store_slot_name(&s_store, slot);
}

static void key_for(char *buf, size_t cap, const char *prefix, int slot)
{
    snprintf(buf, cap, "%s%d", prefix, slot);
}

static int8_t nvs_i8_or(nvs_handle_t nvs, const char *key, int8_t fallback)
{
    int8_t v;
    return nvs_get_i8(nvs, key, &v) == ESP_OK ? v : fallback;
}

static bool slot_valid(int slot)
{
    return slot >= 0 && slot < MODULE_SLOT_COUNT && s_parts[slot] != NULL;
}

/* ---- the policy's state in NVS ------------------------------------------------------------- */

static int nvs_load_state(void *ctx, ph_store_state *state)
{
    nvs_handle_t nvs;
    char key[16];
    if (nvs_open(SETTINGS_NAMESPACE, NVS_READONLY, &nvs) != ESP_OK) {
        return 0;   /* nothing written yet: no module was ever uploaded */
    }
    state->active = nvs_i8_or(nvs, SETTINGS_KEY_MODULE_ACTIVE, PH_STORE_BUILTIN);
    state->previous = nvs_i8_or(nvs, SETTINGS_KEY_MODULE_PREVIOUS, PH_STORE_BUILTIN);
    if (nvs_get_u8(nvs, SETTINGS_KEY_MODULE_TRIAL, &state->trial) != ESP_OK) {
        state->trial = 0;
    }
    for (int i = 0; i < MODULE_SLOT_COUNT; i++) {
        uint32_t len = 0;
        size_t sha_len = sizeof(state->slot[i].sha256);
        key_for(key, sizeof(key), SETTINGS_KEY_MODULE_LEN_PREFIX, i);
        if (nvs_get_u32(nvs, key, &len) != ESP_OK) {
            continue;
        }
        key_for(key, sizeof(key), SETTINGS_KEY_MODULE_SHA_PREFIX, i);
        if (nvs_get_blob(nvs, key, state->slot[i].sha256, &sha_len) == ESP_OK &&
            sha_len == sizeof(state->slot[i].sha256)) {
            state->slot[i].len = len;
        }
    }
    nvs_close(nvs);
    return 0;
}

/* NVS writes a key only when its value changes, so saving the whole state wears nothing extra. */
static int nvs_save_state(void *ctx, const ph_store_state *state)
{
    nvs_handle_t nvs;
    char key[16];
    esp_err_t e = nvs_open(SETTINGS_NAMESPACE, NVS_READWRITE, &nvs);
    if (e != ESP_OK) {
        ESP_LOGE(TAG, "module store: nvs_open failed: %s", esp_err_to_name(e));
        return -1;
    }
    e = nvs_set_i8(nvs, SETTINGS_KEY_MODULE_ACTIVE, state->active);
    if (e == ESP_OK) e = nvs_set_i8(nvs, SETTINGS_KEY_MODULE_PREVIOUS, state->previous);
    if (e == ESP_OK) e = nvs_set_u8(nvs, SETTINGS_KEY_MODULE_TRIAL, state->trial);
    for (int i = 0; e == ESP_OK && i < MODULE_SLOT_COUNT; i++) {
        key_for(key, sizeof(key), SETTINGS_KEY_MODULE_LEN_PREFIX, i);
        if (state->slot[i].len == 0) {
            esp_err_t gone = nvs_erase_key(nvs, key);
            e = gone == ESP_ERR_NVS_NOT_FOUND ? ESP_OK : gone;
            continue;
        }
        e = nvs_set_u32(nvs, key, state->slot[i].len);
        if (e == ESP_OK) {
            key_for(key, sizeof(key), SETTINGS_KEY_MODULE_SHA_PREFIX, i);
            e = nvs_set_blob(nvs, key, state->slot[i].sha256, sizeof(state->slot[i].sha256));
        }
    }
    if (e == ESP_OK) e = nvs_commit(nvs);
    nvs_close(nvs);
    if (e != ESP_OK) {
        ESP_LOGE(TAG, "module store: writing NVS failed: %s", esp_err_to_name(e));
        return -1;
    }
    return 0;
}

static bool partition_exists(void *ctx, int slot)
{
    return slot_valid(slot);
}

static void store_log(void *ctx, char level, const char *msg, size_t len)
{
    esp_log_level_t l = level == 'E' ? ESP_LOG_ERROR : level == 'W' ? ESP_LOG_WARN : ESP_LOG_INFO;
    ESP_LOG_LEVEL(l, TAG, "%.*s", (int)len, msg);
}

void module_store_sha_hex(const uint8_t sha[32], char out[65])
{
    ph_sha256_hex(sha, out);
}

esp_err_t module_store_init(void)
{
    for (int i = 0; i < MODULE_SLOT_COUNT; i++) {
        s_parts[i] = esp_partition_find_first(MODULE_PARTITION_TYPE, (esp_partition_subtype_t)i,
                                              SLOT_LABELS[i]);
        if (s_parts[i] == NULL) {
            ESP_LOGW(TAG, "partition %s (type 0x40, subtype %d) not found: flash partitions.csv; "
                          "uploads disabled for this slot", SLOT_LABELS[i], i);
        } else if (s_parts[i]->size < MODULE_SLOT_MIN_BYTES) {
            ESP_LOGW(TAG, "partition %s is %" PRIu32 " bytes, smaller than %d: ignored",
                     SLOT_LABELS[i], s_parts[i]->size, MODULE_SLOT_MIN_BYTES);
            s_parts[i] = NULL;
        }
    }
    const ph_store_ops ops = { NULL, nvs_load_state, nvs_save_state, partition_exists, store_log };
    ph_store_init(&s_store, &ops, "embedded", "reset", CONFIG_PIGEONHUB_MODULE_CONFIRM_S, 0);
    return (s_parts[0] || s_parts[1]) ? ESP_OK : ESP_ERR_NOT_FOUND;
}

void module_store_mark_bad(int slot)
{
    ph_store_mark_bad(&s_store, slot);
}

int module_store_boot_order(int order[MODULE_SLOT_COUNT + 1])
{
    return ph_store_boot_order(&s_store, order);
}

esp_err_t module_store_open(int slot, module_image *img, char *err, size_t err_cap)
{
    memset(img, 0, sizeof(*img));
    img->slot = slot;
    if (slot == MODULE_SLOT_EMBEDDED) {
        img->data = hub_wasm_start;
        img->len = (size_t)(hub_wasm_end - hub_wasm_start);
        mbedtls_sha256(img->data, img->len, img->sha256, 0);
        return ESP_OK;
    }
    if (!slot_valid(slot)) {
        snprintf(err, err_cap, "module slot %d does not exist in the partition table", slot);
        return ESP_ERR_NOT_FOUND;
    }
    uint32_t len = ph_store_recorded_len(&s_store, slot);
    if (len == 0) {
        ph_store_verify(&s_store, slot, 0, NULL, err, err_cap); /* says why: "hubmod1 is empty" */
        return ESP_ERR_NOT_FOUND;
    }
    if (len > s_parts[slot]->size) {
        snprintf(err, err_cap, "%s: recorded length %" PRIu32 " exceeds the slot", SLOT_LABELS[slot],
                 len);
        return ESP_ERR_INVALID_SIZE;
    }
    const void *ptr = NULL;
    esp_err_t e = esp_partition_mmap(s_parts[slot], 0, len, ESP_PARTITION_MMAP_DATA, &ptr, &img->map);
    if (e != ESP_OK) {
        snprintf(err, err_cap, "%s: esp_partition_mmap failed: %s", SLOT_LABELS[slot],
                 esp_err_to_name(e));
        return e;
    }
    img->data = ptr;
    img->len = len;
    mbedtls_sha256(img->data, img->len, img->sha256, 0);
    if (!ph_store_verify(&s_store, slot, img->len, img->sha256, err, err_cap)) {
        esp_partition_munmap(img->map);
        memset(img, 0, sizeof(*img));
        return ESP_ERR_INVALID_CRC;
    }
    return ESP_OK;
}

void module_store_release(module_image *img)
{
    if (img->slot >= 0 && img->data != NULL) {
        esp_partition_munmap(img->map);
    }
    memset(img, 0, sizeof(*img));
    img->slot = MODULE_SLOT_EMBEDDED;
}

void module_store_set_running(int slot)
{
    ph_store_note_boot(&s_store, slot);
}

int module_store_running(void)
{
    return s_store.running;
}

esp_err_t module_store_activate(int slot)
{
    return ph_store_activate(&s_store, slot) == 0 ? ESP_OK : ESP_FAIL;
}

bool module_store_needs_confirm(void)
{
    return ph_store_needs_confirm(&s_store);
}

void module_store_confirm(void)
{
    ph_store_confirm(&s_store);
}

int module_store_trial_trapped(uint32_t traps)
{
    return ph_store_trial_trapped(&s_store, traps);
}

void module_store_note_fallback(int failed, uint32_t traps, int now)
{
    ph_store_note_fallback(&s_store, failed, traps, now);
}

bool module_store_trial_failure(int *failed, uint32_t *traps, int *now)
{
    *failed = s_store.trial_failed;
    *traps = s_store.trial_failed_traps;
    *now = s_store.trial_failed_then;
    return *failed != PH_STORE_NONE;
}

size_t module_store_slot_size(void)
{
    size_t size = 0;
    for (int i = 0; i < MODULE_SLOT_COUNT; i++) {
        if (s_parts[i] && (size == 0 || s_parts[i]->size < size)) {
            size = s_parts[i]->size;
        }
    }
    return size;
}

/* ---- uploads: the stream is ph_module_upload.c's, the flash and the SHA-256 engine are here -- */

static size_t ops_slot_size(void *ctx, int slot)
{
    return slot_valid(slot) ? s_parts[slot]->size : 0;
}

static int ops_erase(void *ctx, int slot, size_t len, char *err, size_t err_cap)
{
    const esp_partition_t *part = s_parts[slot];
    size_t unit = part->erase_size ? part->erase_size : 4096;
    esp_err_t e = esp_partition_erase_range(part, 0, (len + unit - 1) / unit * unit);
    if (e != ESP_OK) {
        snprintf(err, err_cap, "erasing %s failed: %s", SLOT_LABELS[slot], esp_err_to_name(e));
        return -1;
    }
    return 0;
}

static int ops_write(void *ctx, int slot, size_t offset, const void *data, size_t len, char *err,
                     size_t err_cap)
{
    esp_err_t e = esp_partition_write(s_parts[slot], offset, data, len);
    if (e != ESP_OK) {
        snprintf(err, err_cap, "writing to flash failed: %s", esp_err_to_name(e));
        return -1;
    }
    return 0;
}

static void *ops_sha_start(void *ctx)
{
    mbedtls_sha256_context *sha = malloc(sizeof(*sha));
    if (sha != NULL) {
        mbedtls_sha256_init(sha);
        mbedtls_sha256_starts(sha, 0);
    }
    return sha;
}

static void ops_sha_update(void *ctx, void *sha, const void *data, size_t len)
{
    mbedtls_sha256_update(sha, data, len);
}

static void ops_sha_end(void *ctx, void *sha, uint8_t *out)
{
    if (out != NULL) {
        mbedtls_sha256_finish(sha, out);
    }
    mbedtls_sha256_free(sha);
    free(sha);
}

static const ph_upload_ops UPLOAD_OPS = {
    .slot_size = ops_slot_size, .erase = ops_erase, .write = ops_write,
    .sha_start = ops_sha_start, .sha_update = ops_sha_update, .sha_end = ops_sha_end,
    .record_where = "NVS",
};

esp_err_t module_store_upload_begin(ph_upload *up, size_t len, char *err, size_t err_cap)
{
    switch (ph_upload_begin(up, &s_store, &UPLOAD_OPS, len, err, err_cap)) {
    case PH_UPLOAD_OK:        return ESP_OK;
    case PH_UPLOAD_NO_SLOT:   return ESP_ERR_NOT_FOUND;
    case PH_UPLOAD_TOO_BIG:   return ESP_ERR_INVALID_SIZE;
    case PH_UPLOAD_NO_MEMORY: return ESP_ERR_NO_MEM;
    default:                  return ESP_FAIL;
    }
}

esp_err_t module_store_upload_write(ph_upload *up, const void *data, size_t len, char *err,
                                    size_t err_cap)
{
    return ph_upload_write(up, data, len, err, err_cap) == PH_UPLOAD_OK ? ESP_OK : ESP_FAIL;
}

void module_store_upload_abort(ph_upload *up)
{
    ph_upload_abort(up);
}

esp_err_t module_store_upload_finish(ph_upload *up, const uint8_t expected_sha[32], char *err,
                                     size_t err_cap)
{
    return ph_upload_finish(up, expected_sha, err, err_cap) == PH_UPLOAD_OK ? ESP_OK : ESP_FAIL;
}

/*
 * module_store.c — embedded module + two flash slots, NVS bookkeeping, boot fallback.
 *
 * NVS (namespace "pigeonhub"):
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
static const char *const SLOT_LABELS[MODULE_SLOT_COUNT] = { "hubmod0", "hubmod1" };
static const esp_partition_t *s_parts[MODULE_SLOT_COUNT];
static volatile int s_running = MODULE_SLOT_EMBEDDED;

const char *module_store_slot_name(int slot)
{
    return slot >= 0 && slot < MODULE_SLOT_COUNT ? SLOT_LABELS[slot] : "embedded";
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

void module_store_sha_hex(const uint8_t sha[32], char out[65])
{
    for (int i = 0; i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", sha[i]);
    }
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
    return (s_parts[0] || s_parts[1]) ? ESP_OK : ESP_ERR_NOT_FOUND;
}

void module_store_mark_bad(int slot)
{
    nvs_handle_t nvs;
    char key[16];
    if (!slot_valid(slot) || nvs_open(SETTINGS_NAMESPACE, NVS_READWRITE, &nvs) != ESP_OK) {
        return;
    }
    key_for(key, sizeof(key), SETTINGS_KEY_MODULE_LEN_PREFIX, slot);
    nvs_erase_key(nvs, key);
    if (nvs_i8_or(nvs, SETTINGS_KEY_MODULE_ACTIVE, MODULE_SLOT_EMBEDDED) == slot) {
        /* The previous module becomes the active one; the embedded one stays the last resort. */
        nvs_set_i8(nvs, SETTINGS_KEY_MODULE_ACTIVE, nvs_i8_or(nvs, SETTINGS_KEY_MODULE_PREVIOUS, MODULE_SLOT_EMBEDDED));
        nvs_set_i8(nvs, SETTINGS_KEY_MODULE_PREVIOUS, MODULE_SLOT_EMBEDDED);
        nvs_set_u8(nvs, SETTINGS_KEY_MODULE_TRIAL, 0);
    } else if (nvs_i8_or(nvs, SETTINGS_KEY_MODULE_PREVIOUS, MODULE_SLOT_EMBEDDED) == slot) {
        nvs_set_i8(nvs, SETTINGS_KEY_MODULE_PREVIOUS, MODULE_SLOT_EMBEDDED);
    }
    nvs_commit(nvs);
    nvs_close(nvs);
}

int module_store_boot_order(int order[MODULE_SLOT_COUNT + 1])
{
    nvs_handle_t nvs;
    int n = 0;
    int8_t active = MODULE_SLOT_EMBEDDED;
    int8_t prev = MODULE_SLOT_EMBEDDED;
    uint8_t trial = 0;

    if (nvs_open(SETTINGS_NAMESPACE, NVS_READONLY, &nvs) == ESP_OK) {
        active = nvs_i8_or(nvs, SETTINGS_KEY_MODULE_ACTIVE, MODULE_SLOT_EMBEDDED);
        prev = nvs_i8_or(nvs, SETTINGS_KEY_MODULE_PREVIOUS, MODULE_SLOT_EMBEDDED);
        if (nvs_get_u8(nvs, SETTINGS_KEY_MODULE_TRIAL, &trial) != ESP_OK) {
            trial = 0;
        }
        nvs_close(nvs);
    }
    if (trial && slot_valid(active)) {
        ESP_LOGW(TAG, "module in %s did not run %d s before the last reset: falling back",
                 SLOT_LABELS[active], CONFIG_PIGEONHUB_MODULE_CONFIRM_S);
        module_store_mark_bad(active);
        active = prev;
        prev = MODULE_SLOT_EMBEDDED;
    }
    if (slot_valid(active)) {
        order[n++] = active;
    }
    if (slot_valid(prev) && prev != active) {
        order[n++] = prev;
    }
    order[n++] = MODULE_SLOT_EMBEDDED;
    return n;
}

esp_err_t module_store_open(int slot, module_image *img, char *err, size_t err_cap)
{
    nvs_handle_t nvs;
    char key[16];
    uint8_t want[32];
    size_t want_len = sizeof(want);
    uint32_t len = 0;
    esp_err_t e;

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
    if ((e = nvs_open(SETTINGS_NAMESPACE, NVS_READONLY, &nvs)) != ESP_OK) {
        snprintf(err, err_cap, "%s: no module recorded (nvs_open: %s)", SLOT_LABELS[slot],
                 esp_err_to_name(e));
        return e;
    }
    key_for(key, sizeof(key), SETTINGS_KEY_MODULE_LEN_PREFIX, slot);
    e = nvs_get_u32(nvs, key, &len);
    if (e == ESP_OK) {
        key_for(key, sizeof(key), SETTINGS_KEY_MODULE_SHA_PREFIX, slot);
        e = nvs_get_blob(nvs, key, want, &want_len);
    }
    nvs_close(nvs);
    if (e != ESP_OK || want_len != sizeof(want) || len == 0) {
        snprintf(err, err_cap, "%s is empty", SLOT_LABELS[slot]);
        return ESP_ERR_NOT_FOUND;
    }
    if (len > s_parts[slot]->size) {
        snprintf(err, err_cap, "%s: recorded length %" PRIu32 " exceeds the slot", SLOT_LABELS[slot],
                 len);
        return ESP_ERR_INVALID_SIZE;
    }
    const void *ptr = NULL;
    e = esp_partition_mmap(s_parts[slot], 0, len, ESP_PARTITION_MMAP_DATA, &ptr, &img->map);
    if (e != ESP_OK) {
        snprintf(err, err_cap, "%s: esp_partition_mmap failed: %s", SLOT_LABELS[slot],
                 esp_err_to_name(e));
        return e;
    }
    img->data = ptr;
    img->len = len;
    mbedtls_sha256(img->data, img->len, img->sha256, 0);
    if (memcmp(img->sha256, want, sizeof(want)) != 0) {
        esp_partition_munmap(img->map);
        snprintf(err, err_cap, "%s: SHA-256 of the flash contents differs from the recorded one",
                 SLOT_LABELS[slot]);
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
    s_running = slot;
}

int module_store_running(void)
{
    return s_running;
}

esp_err_t module_store_activate(int slot)
{
    nvs_handle_t nvs;
    esp_err_t e = nvs_open(SETTINGS_NAMESPACE, NVS_READWRITE, &nvs);
    if (e != ESP_OK) {
        return e;
    }
    int8_t active = nvs_i8_or(nvs, SETTINGS_KEY_MODULE_ACTIVE, MODULE_SLOT_EMBEDDED);
    if (active != slot) {
        e = nvs_set_i8(nvs, SETTINGS_KEY_MODULE_PREVIOUS, active);
    }
    if (e == ESP_OK) {
        e = nvs_set_i8(nvs, SETTINGS_KEY_MODULE_ACTIVE, (int8_t)slot);
    }
    if (e == ESP_OK) {
        e = nvs_set_u8(nvs, SETTINGS_KEY_MODULE_TRIAL, slot >= 0 ? 1 : 0);
    }
    if (e == ESP_OK) {
        e = nvs_commit(nvs);
    }
    nvs_close(nvs);
    return e;
}

bool module_store_needs_confirm(void)
{
    nvs_handle_t nvs;
    uint8_t trial = 0;
    if (nvs_open(SETTINGS_NAMESPACE, NVS_READONLY, &nvs) == ESP_OK) {
        nvs_get_u8(nvs, SETTINGS_KEY_MODULE_TRIAL, &trial);
        nvs_close(nvs);
    }
    return trial != 0;
}

void module_store_confirm(void)
{
    nvs_handle_t nvs;
    if (nvs_open(SETTINGS_NAMESPACE, NVS_READWRITE, &nvs) == ESP_OK) {
        nvs_set_u8(nvs, SETTINGS_KEY_MODULE_TRIAL, 0);
        nvs_commit(nvs);
        nvs_close(nvs);
        ESP_LOGI(TAG, "module confirmed: it stays active across resets");
    }
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

static size_t erase_len(const esp_partition_t *part, size_t len)
{
    size_t unit = part->erase_size ? part->erase_size : 4096;
    return (len + unit - 1) / unit * unit;
}

esp_err_t module_store_upload_begin(module_upload *up, size_t len, char *err, size_t err_cap)
{
    memset(up, 0, sizeof(*up));
    /* Never the running slot: WASM3 reads the running module from its mapping. */
    int slot = module_store_running() == 0 ? 1 : 0;
    if (!slot_valid(slot)) {
        snprintf(err, err_cap, "no free module slot (partition %s missing)", SLOT_LABELS[slot]);
        return ESP_ERR_NOT_FOUND;
    }
    if (len == 0 || len > s_parts[slot]->size) {
        snprintf(err, err_cap, "module is %u bytes; a slot holds 1 to %" PRIu32, (unsigned)len,
                 s_parts[slot]->size);
        return ESP_ERR_INVALID_SIZE;
    }
    /* The slot's old module is about to disappear: stop every reference to it first. */
    module_store_mark_bad(slot);
    esp_err_t e = esp_partition_erase_range(s_parts[slot], 0, erase_len(s_parts[slot], len));
    if (e != ESP_OK) {
        snprintf(err, err_cap, "erasing %s failed: %s", SLOT_LABELS[slot], esp_err_to_name(e));
        return e;
    }
    mbedtls_sha256_context *sha = malloc(sizeof(*sha));
    if (sha == NULL) {
        snprintf(err, err_cap, "out of memory");
        return ESP_ERR_NO_MEM;
    }
    mbedtls_sha256_init(sha);
    mbedtls_sha256_starts(sha, 0);
    up->part = s_parts[slot];
    up->slot = slot;
    up->expected_len = len;
    up->sha = sha;
    return ESP_OK;
}

esp_err_t module_store_upload_write(module_upload *up, const void *data, size_t len)
{
    if (up->written + len > up->expected_len) {
        return ESP_ERR_INVALID_SIZE;
    }
    esp_err_t e = esp_partition_write(up->part, up->written, data, len);
    if (e != ESP_OK) {
        return e;
    }
    mbedtls_sha256_update(up->sha, data, len);
    up->written += len;
    return ESP_OK;
}

static void upload_free(module_upload *up)
{
    if (up->sha) {
        mbedtls_sha256_free(up->sha);
        free(up->sha);
        up->sha = NULL;
    }
}

void module_store_upload_abort(module_upload *up)
{
    if (up->part && up->written > 0) {
        /* Leave no half-written module behind. */
        esp_partition_erase_range(up->part, 0, erase_len(up->part, up->written));
    }
    if (up->part) {
        module_store_mark_bad(up->slot); /* forget its length/SHA-256 record too */
    }
    upload_free(up);
    up->part = NULL;
}

esp_err_t module_store_upload_finish(module_upload *up, const uint8_t expected_sha[32], char *err,
                                     size_t err_cap)
{
    uint8_t got[32];
    char got_hex[65];
    char want_hex[65];
    nvs_handle_t nvs;
    char key[16];

    if (up->written != up->expected_len) {
        snprintf(err, err_cap, "body ended after %u of %u bytes", (unsigned)up->written,
                 (unsigned)up->expected_len);
        return ESP_ERR_INVALID_SIZE;
    }
    mbedtls_sha256_finish(up->sha, got);
    upload_free(up);
    if (memcmp(got, expected_sha, sizeof(got)) != 0) {
        module_store_sha_hex(got, got_hex);
        module_store_sha_hex(expected_sha, want_hex);
        snprintf(err, err_cap, "SHA-256 mismatch: received %s, X-Module-SHA256 says %s", got_hex,
                 want_hex);
        return ESP_ERR_INVALID_CRC;
    }
    esp_err_t e = nvs_open(SETTINGS_NAMESPACE, NVS_READWRITE, &nvs);
    if (e == ESP_OK) {
        key_for(key, sizeof(key), SETTINGS_KEY_MODULE_SHA_PREFIX, up->slot);
        e = nvs_set_blob(nvs, key, got, sizeof(got));
        if (e == ESP_OK) {
            key_for(key, sizeof(key), SETTINGS_KEY_MODULE_LEN_PREFIX, up->slot);
            e = nvs_set_u32(nvs, key, (uint32_t)up->written);
        }
        if (e == ESP_OK) {
            e = nvs_commit(nvs);
        }
        nvs_close(nvs);
    }
    if (e != ESP_OK) {
        snprintf(err, err_cap, "recording the module in NVS failed: %s", esp_err_to_name(e));
    }
    return e;
}

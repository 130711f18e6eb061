/*
 * hub_task.c — the hub task: owns WASM3 (through the bridge core), the connection table and the
 * module lifecycle (boot fallback, over-the-air swap, confirmation).
 *
 * Events arrive on one queue (hub_task.h); loop() runs every HUB_TICK_MS, driven by the queue
 * receive timeout so a busy queue can never starve the heartbeat.
 */
#include "hub_task.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "frame_cycles.h"
#include "freertos/queue.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "hub_events.h"
#include "module_sig.h"
#include "module_store.h"
#include "ph_bridge.h"
#include "pigeonhub_abi.h"
#include "settings.h"
#include "ws_links.h"
#include "ws_transport.h"

static const char *TAG = "pigeonhub";

static bool hub_post(const hub_event *ev, TickType_t wait);
static bool hub_inbox_reserve(size_t len, TickType_t wait);
static void hub_inbox_release(size_t len);

/* One entry per socket the HTTP server may hold, plus the outgoing hub links (ws_links.c). */
#define HUB_MAX_SOCKETS (WS_MAX_OPEN_SOCKETS + CONFIG_PIGEONHUB_MAX_HUB_LINKS)
#define HUB_BOOTSTRAP_MAX 8                /* URLs read from the bootstrap list               */
#define HUB_BOOTSTRAP_BYTES 512            /* the whole comma-separated list (NVS / Kconfig)  */
#define HUB_CALL_WAIT_MS 10000             /* HTTP handlers give up on the hub task after this */
#define HUB_INBOX_POLL_MS 10
#define HUB_OUT_WAIT_MS 50                 /* longest wait for the sockets to take queued frames */
#define HUB_BOOT_WAIT_MS 60000             /* hub_task_start waits this long for the boot module */
#define HUB_ERR_LEN 160
#define HUB_SIG_REASON_LEN 240   /* a signature refusal names both key ids or the section's offsets */
#define WALL_CLOCK_SYNCED_AFTER 1600000000 /* s: an RTC before 2020 has not been set by SNTP */

/* A WebSocket the hub task knows, accepted or dialed: transport session ↔ bridge connection
 * ("link" means only a hub-to-hub link, ws_links.c). */
typedef struct {
    uint32_t session; /* 0 = free entry */
    int fd;           /* -1: an outgoing hub link, served by ws_links.c */
    int32_t conn;
    bool outgoing;
} hub_socket;

typedef enum { CALL_HEALTH, CALL_STATS, CALL_SWAP } call_kind;

/* A request with a reply; shared by the caller and the hub task, freed by whoever is last. */
typedef struct {
    call_kind kind;
    int slot;
    int status;          /* HTTP status */
    char *out;           /* JSON on success, reason text on failure */
    size_t cap;
    SemaphoreHandle_t done;
    atomic_int refs;
} hub_call;

static QueueHandle_t s_queue;
static SemaphoreHandle_t s_booted;   /* given once the boot module is loaded (or none could be) */
static ph_bridge *volatile s_bridge;
static module_image s_image = { .slot = MODULE_SLOT_EMBEDDED };
static char s_load_error[HUB_ERR_LEN];
static hub_socket s_sockets[HUB_MAX_SOCKETS];
static atomic_size_t s_inbox_bytes;
static atomic_size_t s_inbox_peak;   /* the most s_inbox_bytes has been since boot (/stats) */
static int64_t s_confirm_at_us; /* 0: nothing to confirm */
static uint32_t s_trap_base;    /* the bridge's trap count when the running module started */
static size_t s_module_heap;    /* heap the boot module's runtime took (WASM3 + bridge)  */
static size_t s_module_iram;    /* ...and of IRAM heap: code pages (CONFIG_PIGEONHUB_WASM3_CODE_IN_IRAM) */
static hub_socket *s_opening;     /* the entry of the connection ph_bridge_on_open is opening */
static char s_boot_hub_id[41];    /* copied before hub_task_start returns: read by other tasks */

/* ---- connection table --------------------------------------------------------------------- */

static hub_socket *socket_by_session(uint32_t session)
{
    for (int i = 0; i < HUB_MAX_SOCKETS; i++) {
        if (s_sockets[i].session == session) {
            return &s_sockets[i];
        }
    }
    return NULL;
}

static hub_socket *socket_by_conn(int32_t conn)
{
    for (int i = 0; i < HUB_MAX_SOCKETS; i++) {
        if (s_sockets[i].session != 0 && s_sockets[i].conn == conn) {
            return &s_sockets[i];
        }
    }
    /* Inside ph_bridge_on_open the module greets (or refuses) the new connection before its id
     * is returned: an id the table does not know yet is that connection's. */
    if (s_opening != NULL && s_opening->conn < 0) {
        s_opening->conn = conn;
        return s_opening;
    }
    return NULL;
}

/* ---- transport callbacks (hub task, from inside ph_bridge_* calls) ----------------------------- */

static int op_send(void *ctx, int32_t conn, const uint8_t *frame, size_t len)
{
    (void)ctx;
    hub_socket *sock = socket_by_conn(conn);
    if (sock && sock->outgoing) {
        return ws_links_send(sock->session, conn, frame, len);
    }
    return sock ? ws_transport_send(sock->fd, sock->session, conn, frame, len) : -1;
}

static void op_close(void *ctx, int32_t conn, uint16_t code, const char *reason, size_t len)
{
    (void)ctx;
    hub_socket *sock = socket_by_conn(conn);
    if (sock && sock->outgoing) {
        ws_links_close(sock->session, code, reason, len);
    } else if (sock) {
        ws_transport_close(sock->fd, sock->session, code, reason, len);
    }
}

static int op_ping(void *ctx, int32_t conn)
{
    (void)ctx;
    hub_socket *sock = socket_by_conn(conn);
    if (sock && sock->outgoing) {
        return ws_links_ping(sock->session);
    }
    return sock ? ws_transport_ping(sock->fd, sock->session) : -1;
}

static void op_log(void *ctx, char level, const char *msg, size_t len)
{
    (void)ctx;
    esp_log_level_t lvl = level == 'E' ? ESP_LOG_ERROR
                        : level == 'W' ? ESP_LOG_WARN
                        : level == 'D' ? ESP_LOG_DEBUG
                        : level == 'V' ? ESP_LOG_VERBOSE
                                       : ESP_LOG_INFO;
    ESP_LOG_LEVEL(lvl, TAG, "%.*s", (int)len, msg);
}

static uint32_t op_millis(void *ctx)
{
    (void)ctx;
    return (uint32_t)(esp_timer_get_time() / 1000);
}

static int64_t op_wall_clock_ms(void *ctx)
{
    struct timeval tv;
    (void)ctx;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec < WALL_CLOCK_SYNCED_AFTER) { /* before SNTP sync the RTC counts from 1970: uptime */
        return esp_timer_get_time() / 1000;
    }
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void op_device_id(void *ctx, char *buf, size_t cap)
{
    uint8_t mac[6] = { 0 };
    (void)ctx;
    esp_read_mac(mac, ESP_MAC_WIFI_STA);
    snprintf(buf, cap, "%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

static int op_server_start(void *ctx, int port)
{
    (void)ctx;
    if (port != CONFIG_PIGEONHUB_PORT) {
        ESP_LOGE(TAG, "module asked for port %d, the firmware listens on %d "
                      "(CONFIG_PIGEONHUB_PORT)", port, CONFIG_PIGEONHUB_PORT);
        return -1;
    }
    ws_transport_set_accepting(true);
    ESP_LOGI(TAG, "WebSocket server listening on port %d", port);
    return 0;
}

static void op_server_stop(void *ctx)
{
    (void)ctx;
    ws_transport_set_accepting(false);
    ESP_LOGI(TAG, "WebSocket server stopped accepting");
}

/* ABI 2 ws_connect: one attempt through ws_links.c; its events arrive as HUB_EV_LINK_OPEN /
 * HUB_EV_FRAME / HUB_EV_CLOSE with the session returned here. */
static int op_connect(void *ctx, int32_t conn, const char *url, size_t len)
{
    (void)ctx;
    hub_socket *sock = socket_by_session(0);
    uint32_t session = sock ? ws_links_open(conn, url, len) : 0;
    if (session == 0) {
        return -1;
    }
    ESP_LOGI(TAG, "connecting to bootstrap hub %.*s", (int)len, url);
    sock->session = session;
    sock->fd = -1;
    sock->conn = conn;
    sock->outgoing = true;
    return 0;
}

static const ph_transport_ops s_ops = {
    .ctx = NULL,
    .send = op_send,
    .close = op_close,
    .ping = op_ping,
    .log = op_log,
    .millis = op_millis,
    .wall_clock_ms = op_wall_clock_ms,
    .device_id = op_device_id,
    .server_start = op_server_start,
    .server_stop = op_server_stop,
    .connect = op_connect,
};

/* httpd task: bytes of a frame left the outbox. ph_bridge_on_sent is safe from any thread. */
static void on_sent(int32_t conn, size_t len)
{
    ph_bridge *b = s_bridge;
    if (b) {
        ph_bridge_on_sent(b, conn, len);
    }
}

/* The ESP32's IRAM heap, which serves only 32-bit accesses: the regions that take 32-bit
 * allocations but not byte ones (none on chips whose IRAM and DRAM are one SRAM). */
static size_t iram_only_free(void)
{
    size_t word = heap_caps_get_free_size(MALLOC_CAP_32BIT);
    size_t byte = heap_caps_get_free_size(MALLOC_CAP_8BIT);
    return word > byte ? word - byte : 0;
}

/* ---- module lifecycle -------------------------------------------------------------------------- */

static void log_module(const module_image *img)
{
    char hex[65];
    module_store_sha_hex(img->sha256, hex);
    /* Tests key on these lines (same wording as the PC hub). */
    ESP_LOGI(TAG, "module hub.wasm loaded: %u bytes, sha256 %s", (unsigned)img->len, hex);
    ESP_LOGI(TAG, "module source: %s", module_store_slot_name(img->slot));
    ESP_LOGI(TAG, "hub id %s", ph_bridge_hub_id(s_bridge));
    ESP_LOGI(TAG, "heap: %" PRIu32 " bytes free, module runtime %u bytes (+%u in IRAM)",
             esp_get_free_heap_size(), (unsigned)s_module_heap, (unsigned)s_module_iram);
}

/* The bootstrap list: NVS (console `bootstrap`) or CONFIG_PIGEONHUB_BOOTSTRAP_HUBS, split at commas
 * into `urls` (pointers into buf, spaces trimmed, empty entries dropped). */
static uint32_t bootstrap_list(char *buf, size_t cap, const char **urls, uint32_t max)
{
    uint32_t n = 0;
    settings_get_str(SETTINGS_KEY_BOOTSTRAP, CONFIG_PIGEONHUB_BOOTSTRAP_HUBS, buf, cap);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') {
            tok++;
        }
        size_t len = strlen(tok);
        while (len > 0 && tok[len - 1] == ' ') {
            tok[--len] = '\0';
        }
        if (len == 0) {
            continue;
        }
        if (n == max) {
            ESP_LOGW(TAG, "bootstrap hub %s ignored: at most %u are read", tok, (unsigned)max);
            continue;
        }
        urls[n++] = tok;
    }
    return n;
}

static ph_bridge *create_bridge(const module_image *img, char *err, size_t cap)
{
    ph_bridge_config cfg = PH_BRIDGE_CONFIG_DEFAULT;
    ph_result res = PH_OK;
    static char list[HUB_BOOTSTRAP_BYTES];   /* hub task only; the bridge copies the URLs */
    const char *urls[HUB_BOOTSTRAP_MAX];
    cfg.bootstrap_count = bootstrap_list(list, sizeof(list), urls, HUB_BOOTSTRAP_MAX);
    cfg.bootstrap_urls = urls;
    cfg.max_links = CONFIG_PIGEONHUB_MAX_HUB_LINKS;
    for (uint32_t i = 0; i < cfg.bootstrap_count; i++) {
        ESP_LOGI(TAG, "bootstrap hub %s", urls[i]);
    }
    /* Accepted sockets only: the bridge reserves max_links slots for outgoing links on top. */
    cfg.max_connections = WS_MAX_OPEN_SOCKETS;
    cfg.outbox_limit_bytes = CONFIG_PIGEONHUB_OUTBOX_LIMIT;
    cfg.memory_limit_bytes = CONFIG_PIGEONHUB_MODULE_MEMORY_LIMIT;
    cfg.wasm_stack_bytes = CONFIG_PIGEONHUB_WASM_STACK;
    ph_bridge *b = ph_bridge_create(img->data, img->len, &s_ops, &cfg, &res, err, cap);
    if (b == NULL && err[0] == '\0') {
        snprintf(err, cap, "ph_bridge_create failed (%d)", (int)res);
    }
    return b;
}

/* Kept for /health; quotes would break its JSON, so they become apostrophes. */
static void set_load_error(const char *err)
{
    strlcpy(s_load_error, err, sizeof(s_load_error));
    for (char *p = s_load_error; *p; p++) {
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) {
            *p = '\'';
        }
    }
}

static void module_running(const module_image *img)
{
    ws_transport_set_frame_limit(ph_bridge_input_buffer_size(s_bridge));
    ws_links_set_frame_limit(ph_bridge_input_buffer_size(s_bridge));
    module_store_set_running(img->slot);
    s_trap_base = ph_bridge_trap_count(s_bridge);
    s_load_error[0] = '\0';
    log_module(img);
}

/* Boot: active uploaded slot → previous slot → embedded; the first that loads and starts wins. */
static void load_boot_module(void)
{
    int order[MODULE_SLOT_COUNT + 1];
    int n = module_store_boot_order(order);
    char err[HUB_ERR_LEN];
    char why[HUB_SIG_REASON_LEN];

    module_sig_log_key();
    for (int i = 0; i < n; i++) {
        module_image img;
        err[0] = '\0';
        if (module_store_open(order[i], &img, err, sizeof(err)) != ESP_OK) {
            ESP_LOGW(TAG, "module %s skipped: %s", module_store_slot_name(order[i]), err);
            module_store_mark_bad(order[i]);
            continue;
        }
        if (module_sig_check(img.data, img.len, why, sizeof(why)) != 0) {
            if (img.slot != MODULE_SLOT_EMBEDDED) {   /* uploaded: only what the key signed runs */
                ESP_LOGW(TAG, "module %s refused: %s", module_store_slot_name(order[i]), why);
                module_store_release(&img);
                module_store_mark_bad(order[i]);
                continue;
            }
            /* The embedded module is part of the firmware, trusted as the firmware is (secure
             * boot signs both): it runs, so the board stays reachable for a signed upload. */
            ESP_LOGW(TAG, "the embedded module runs although %s (build the firmware with "
                          "CONFIG_PIGEONHUB_MODULE_SIGNING_KEY)", why);
        }
        size_t heap_before = esp_get_free_heap_size();
        size_t iram_before = iram_only_free();
        s_bridge = create_bridge(&img, err, sizeof(err));
        s_module_heap = heap_before - esp_get_free_heap_size();
        s_module_iram = iram_before - iram_only_free();
        if (s_bridge != NULL && ph_bridge_start(s_bridge, CONFIG_PIGEONHUB_PORT) != 0) {
            snprintf(err, sizeof(err), "start_server(%d) failed", CONFIG_PIGEONHUB_PORT);
            ph_bridge_destroy(s_bridge);
            s_bridge = NULL;
        }
        if (s_bridge == NULL) {
            ESP_LOGE(TAG, "module %s refused: %s", module_store_slot_name(order[i]), err);
            module_store_release(&img);
            module_store_mark_bad(order[i]);
            set_load_error(err);
            continue;
        }
        s_image = img;
        module_running(&img);
        strlcpy(s_boot_hub_id, ph_bridge_hub_id(s_bridge), sizeof(s_boot_hub_id));
        if (img.slot >= 0 && module_store_needs_confirm()) {
            s_confirm_at_us = esp_timer_get_time() + CONFIG_PIGEONHUB_MODULE_CONFIRM_S * 1000000LL;
        }
        return;
    }
    ESP_LOGE(TAG, "no hub module could be loaded (%s); WebSocket clients are refused until a "
                  "module is uploaded (POST /module)", s_load_error);
}

/* Run a slot's module in place of the running one: a live swap, peers kept. 200, or the HTTP
 * status of the failure with its reason in out (422: the module itself is at fault). */
static int swap_in(int slot, char *out, size_t cap)
{
    module_image img;
    char err[HUB_ERR_LEN] = "";
    ph_result res;

    if (module_store_open(slot, &img, err, sizeof(err)) != ESP_OK) {
        strlcpy(out, err, cap);
        return 500;
    }
    /* With a module key, the signature before anything parses the module's bytes. */
    char why[HUB_SIG_REASON_LEN];
    if (module_sig_check(img.data, img.len, why, sizeof(why)) != 0) {
        snprintf(out, cap, "module rejected: %s", why);
        module_store_release(&img);
        return 422;
    }
    /* The check needs a scratch runtime beside the running one; without the heap for it, the
     * swap below makes the same checks after unloading the running module. */
    res = ph_bridge_check_module(img.data, img.len, err, sizeof(err));
    if (res != PH_OK && res != PH_ERR_NO_MEMORY) {
        snprintf(out, cap, "module rejected: %s", err);
        module_store_release(&img);
        return 422;
    }
    if (s_bridge != NULL) {
        res = ph_bridge_swap(s_bridge, img.data, img.len, err, sizeof(err));
    } else {
        ph_bridge *b = create_bridge(&img, err, sizeof(err));
        res = b ? PH_OK : PH_ERR_LOAD;
        if (b && ph_bridge_start(b, CONFIG_PIGEONHUB_PORT) != 0) {
            snprintf(err, sizeof(err), "start_server(%d) failed", CONFIG_PIGEONHUB_PORT);
            ph_bridge_destroy(b);
            res = PH_ERR_INIT;
        } else if (b) {
            s_bridge = b;
        }
    }
    if (res != PH_OK) {
        bool rejected = res != PH_ERR_NO_MEMORY && res != PH_ERR_INIT;
        snprintf(out, cap, "%s%s", rejected ? "module rejected: " :
                 res == PH_ERR_NO_MEMORY ? "not enough memory for this module, the previous one keeps running: "
                                         : "swap failed, the previous module keeps running: ", err);
        module_store_release(&img);
        return rejected ? 422 : res == PH_ERR_NO_MEMORY ? 507 : 500;
    }
    /* The old runtime is gone: its bytes may be unmapped now. */
    module_store_release(&s_image);
    s_image = img;
    module_running(&img);
    return 200;
}

static int swap_to_slot(int slot, char *out, size_t cap)
{
    int status = swap_in(slot, out, cap);
    if (status != 200) {
        return status;
    }
    esp_err_t e = module_store_activate(slot);
    if (e != ESP_OK) {
        ESP_LOGW(TAG, "module runs but is not persisted (NVS: %s): next boot uses the old one",
                 esp_err_to_name(e));
    }
    s_confirm_at_us = esp_timer_get_time() + CONFIG_PIGEONHUB_MODULE_CONFIRM_S * 1000000LL;
    char hex[65];
    module_store_sha_hex(s_image.sha256, hex);
    snprintf(out, cap, "{\"ok\":true,\"slot\":\"%s\",\"bytes\":%u,\"sha256\":\"%s\",\"hubId\":\"%s\","
                       "\"confirmAfterSeconds\":%d,\"peersReplayed\":%" PRIu32 "}",
             module_store_slot_name(slot), (unsigned)s_image.len, hex, ph_bridge_hub_id(s_bridge),
             CONFIG_PIGEONHUB_MODULE_CONFIRM_S, ph_bridge_last_swap_replayed(s_bridge));
    return 200;
}

/* The module store's policy (ph_store_trial_trapped): a module that trapped while on trial is
 * given up and the first module of the boot order that loads is swapped back in, peers kept.
 * Returns true when it was given up. */
static bool give_up_trapping_trial(void)
{
    if (s_bridge == NULL || s_confirm_at_us == 0) {
        return false;   /* nothing on trial: a confirmed module's traps cost no NVS read */
    }
    uint32_t traps = ph_bridge_trap_count(s_bridge) - s_trap_base;
    int failed = module_store_trial_trapped(traps);
    if (failed == PH_STORE_NONE) {
        return false;
    }
    s_confirm_at_us = 0;
    int order[MODULE_SLOT_COUNT + 1];
    int n = module_store_boot_order(order);
    char why[HUB_ERR_LEN];
    for (int i = 0; i < n; i++) {
        int status = swap_in(order[i], why, sizeof(why));
        if (status == 200) {
            module_store_note_fallback(failed, traps, order[i]);
            return true;
        }
        ESP_LOGE(TAG, "module %s could not be swapped back in: %s", module_store_slot_name(order[i]),
                 why);
        if (status == 422) {
            module_store_mark_bad(order[i]);
        }
    }
    ESP_LOGE(TAG, "no module could be swapped back in: %s keeps running",
             module_store_slot_name(failed));
    return true;
}

/* The integer after `"key":` in the module's stats JSON (0 when absent): /health reports a few
 * module counters and a full JSON parser is not worth its flash for that. */
static long stats_int(const char *json, const char *key)
{
    const char *at = strstr(json, key);
    return at ? strtol(at + strlen(key), NULL, 10) : 0;
}

/* The board's memory figures (/health and /stats): heap now, its low-water mark, the largest
 * block one allocation can get, the least stack each busy task has had left, and the most bytes
 * the inbox and the send queue have held at once. */
static void memory_json(char *out, size_t cap)
{
    TaskHandle_t httpd = xTaskGetHandle("httpd");
    snprintf(out, cap,
             "{\"freeHeap\":%" PRIu32 ",\"minFreeHeap\":%" PRIu32 ",\"largestFreeBlock\":%u,"
             "\"moduleRuntime\":%u,\"moduleRuntimeIram\":%u,\"iramFree\":%u,\"hubStackFree\":%u,\"hubStackSize\":%d,\"httpdStackFree\":%u,\"httpdStackSize\":%d,"
             "\"inboxPeak\":%u,\"outQueuePeak\":%u}",
             esp_get_free_heap_size(), esp_get_minimum_free_heap_size(),
             (unsigned)heap_caps_get_largest_free_block(MALLOC_CAP_8BIT), (unsigned)s_module_heap,
             (unsigned)s_module_iram, (unsigned)iram_only_free(),
             (unsigned)uxTaskGetStackHighWaterMark(NULL), HUB_TASK_STACK_BYTES,
             httpd ? (unsigned)uxTaskGetStackHighWaterMark(httpd) : 0, CONFIG_PIGEONHUB_HTTPD_STACK,
             (unsigned)atomic_load(&s_inbox_peak), (unsigned)ws_transport_out_peak());
}

/* The reference server's /health shape (docs/PROTOCOL.md §10), with the board's heap as "memory".
 * `out` first serves as scratch for the module stats the counters come from. */
static int health_json(char *out, size_t cap)
{
    char memory[384];
    memory_json(memory, sizeof(memory));
    long hubs = 0, networks = 0;
    if (s_bridge && ph_bridge_stats_json(s_bridge, out, cap) >= 0) {
        hubs = stats_int(out, "\"hubs\":");
        networks = stats_int(out, "\"networks\":");
    }
    char hex[65] = "";
    if (s_image.data) {
        module_store_sha_hex(s_image.sha256, hex);
    }
    /* Wall clock from SNTP; before it syncs this reads 1970 plus uptime, as on any ESP32. */
    struct timeval tv;
    struct tm utc;
    char stamp[32];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &utc);
    size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
    snprintf(out, cap,
             "{\"status\":\"%s\",\"timestamp\":\"%s\",\"wallClock\":\"%s\",\"uptime\":%.3f,\"isHub\":true,"
             "\"connections\":%" PRIu32 ",\"peers\":%d,\"hubs\":%ld,\"networks\":%ld,"
             "\"module\":{\"source\":\"%s\",\"bytes\":%u,\"sha256\":\"%s\",\"error\":\"%s\"},"
             "\"memory\":%s}",
             s_bridge ? "healthy" : "no-module", stamp,
             tv.tv_sec < WALL_CLOCK_SYNCED_AFTER ? "unsynced" : "synced", esp_timer_get_time() / 1e6,
             s_bridge ? ph_bridge_connection_count(s_bridge) : 0,
             s_bridge ? ph_bridge_peer_count(s_bridge) : 0, hubs, networks,
             module_store_slot_name(s_image.slot), (unsigned)s_image.len, hex, s_load_error, memory);
    return 200;
}

/* The bridge's stats object with what the PC hub adds (same shape): the module image's size,
 * sha256 and source inside "module", and hubId, uptime, the board's memory and the bridge's peer
 * list (ph_bridge_peers_json, as on the PC) at the top. */
static int stats_json(char *out, size_t cap)
{
    static const char head[] = "{\"module\":{";
    char image[256], memory[384], hex[65] = "", failure[112] = "null";
    int n = ph_bridge_stats_json(s_bridge, out, cap);
    if (n <= 0 || out[n - 1] != '}') {
        return -1;
    }
    if (s_image.data) {
        module_store_sha_hex(s_image.sha256, hex);
    }
    memory_json(memory, sizeof(memory));
    size_t at = sizeof(head) - 1;
    bool module_object = strncmp(out, head, at) == 0;
    int failed, now;
    uint32_t traps;
    if (module_store_trial_failure(&failed, &traps, &now)) {
        snprintf(failure, sizeof(failure), "{\"slot\":\"%s\",\"traps\":%" PRIu32 ",\"replacedBy\":\"%s\"}",
                 module_store_slot_name(failed), traps, module_store_slot_name(now));
    }
    int ilen = snprintf(image, sizeof(image),
                        "\"size\":%u,\"sha256\":\"%s\",\"source\":\"%s\",\"trialFailure\":%s%s",
                        (unsigned)s_image.len, hex, module_store_slot_name(s_image.slot), failure,
                        module_object && out[at] != '}' ? "," : "");
    if (!module_object || ilen >= (int)sizeof(image) || (size_t)(n + ilen) >= cap) {
        return -1;
    }
    memmove(out + at + ilen, out + at, (size_t)n - at + 1);
    memcpy(out + at, image, (size_t)ilen);
    /* The rest is written over the closing brace, straight into `out`. */
    size_t end = (size_t)(n + ilen - 1);
    int tlen = snprintf(out + end, cap - end,
                        ",\"hubId\":\"%s\",\"uptime\":%.3f,\"memory\":%s,\"frameCycles\":",
                        ph_bridge_hub_id(s_bridge), esp_timer_get_time() / 1e6, memory);
    if (tlen < 0 || (size_t)tlen >= cap - end) {
        return -1;
    }
    end += (size_t)tlen;
    int clen = frame_cycles_json(out + end, cap - end);
    if (clen < 0 || end + (size_t)clen + 2 > cap) {
        return -1;
    }
    end += (size_t)clen;
    static const char peers_key[] = ",\"peers\":";
    if (end + sizeof(peers_key) > cap) {
        return -1;
    }
    memcpy(out + end, peers_key, sizeof(peers_key) - 1);
    end += sizeof(peers_key) - 1;
    int plen = ph_bridge_peers_json(s_bridge, out + end, cap - end);
    if (plen < 0 || end + (size_t)plen + 2 > cap) {
        return -1;
    }
    end += (size_t)plen;
    out[end++] = '}';
    out[end] = '\0';
    return 0;
}

static void handle_call(hub_call *c)
{
    switch (c->kind) {
    case CALL_HEALTH:
        c->status = health_json(c->out, c->cap);
        break;
    case CALL_STATS:
        if (s_bridge == NULL) {
            snprintf(c->out, c->cap, "no hub module loaded: %s", s_load_error);
            c->status = 503;
        } else {
            c->status = stats_json(c->out, c->cap) == 0 ? 200 : 503;
            if (c->status != 200) {
                strlcpy(c->out, "stats do not fit the buffer", c->cap);
            }
        }
        break;
    case CALL_SWAP:
        c->status = swap_to_slot(c->slot, c->out, c->cap);
        break;
    }
}

static void call_unref(hub_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) {
        vSemaphoreDelete(c->done);
        free(c->out);
        free(c);
    }
}

/* ---- event dispatch ----------------------------------------------------------------------------- */

static void on_open(const hub_event *ev)
{
    if (s_bridge == NULL) {
        ws_transport_close(ev->fd, ev->session, PH_CLOSE_INTERNAL, PH_REASON_TRAP,
                           strlen(PH_REASON_TRAP));
        return;
    }
    hub_socket *sock = socket_by_session(0);
    if (sock == NULL) {
        ws_transport_close(ev->fd, ev->session, PH_CLOSE_POLICY, PH_REASON_FULL,
                           strlen(PH_REASON_FULL));
        return;
    }
    /* Filled before the call: the module's greeting and its 1008 refusals are sent from inside. */
    *sock = (hub_socket){ .session = ev->session, .fd = ev->fd, .conn = -1, .outgoing = false };
    s_opening = sock;
    int32_t conn = ph_bridge_on_open(s_bridge, (const char *)ev->data, ev->len);
    s_opening = NULL;
    if (conn < 0) {
        memset(sock, 0, sizeof(*sock));
        ws_transport_close(ev->fd, ev->session, PH_CLOSE_POLICY, PH_REASON_FULL,
                           strlen(PH_REASON_FULL));
        return;
    }
    sock->conn = conn;
}

static void dispatch(hub_event *ev)
{
    hub_socket *sock = ev->type == HUB_EV_CALL ? NULL : socket_by_session(ev->session);
    switch (ev->type) {
    case HUB_EV_OPEN:
        on_open(ev);
        break;
    case HUB_EV_FRAME:
        if (sock && s_bridge) {
            frame_kind kind = (frame_kind)ev->kind;
            frame_cycles_add_since_us(kind, STAGE_QUEUE_WAIT, ev->posted_us);
            frame_cycles_set_current(kind);
            cycle_mark start = frame_cycles_mark();
            ph_bridge_on_frame(s_bridge, sock->conn, ev->data, ev->len);
            frame_cycles_add_since(kind, STAGE_HUB, start);
            frame_cycles_set_current(FRAME_KINDS);
        }
        hub_inbox_release(ev->len);
        break;
    case HUB_EV_TOO_BIG:
        if (sock && s_bridge) {
            ph_bridge_accepts_frame(s_bridge, sock->conn, ev->len); /* false: counts and closes 1009 */
        }
        break;
    case HUB_EV_PONG:
        if (sock && s_bridge) {
            ph_bridge_on_pong(s_bridge, sock->conn);
        }
        break;
    case HUB_EV_LINK_OPEN:
        if (sock && s_bridge) {
            ph_bridge_on_link_open(s_bridge, sock->conn); /* the module sends its hub announce */
        }
        break;
    case HUB_EV_CLOSE:
        if (sock) {
            if (s_bridge) {
                ph_bridge_on_close(s_bridge, sock->conn);
            }
            memset(sock, 0, sizeof(*sock));
        }
        break;
    case HUB_EV_CALL: {
        hub_call *c = (hub_call *)ev->data;
        handle_call(c);
        xSemaphoreGive(c->done);
        call_unref(c);
        ev->data = NULL; /* not a plain heap buffer */
        break;
    }
    }
    free(ev->data);
}

static void tick(void)
{
    if (s_bridge) {
        ph_bridge_tick(s_bridge);
    }
    ws_transport_kick();
    /* Every tick, and so also just before the confirmation: a trap since the last tick counts. */
    give_up_trapping_trial();
    if (s_confirm_at_us && esp_timer_get_time() >= s_confirm_at_us) {
        s_confirm_at_us = 0;
        module_store_confirm();
    }
}

/* How ws_transport and ws_links reach this task (hub_events.h). */
static const hub_event_sink s_sink = { .post = hub_post, .reserve = hub_inbox_reserve,
                                       .sent = on_sent };

const hub_event_sink *hub_task_sink(void)
{
    return &s_sink;
}

static void hub_task(void *arg)
{
    (void)arg;
    esp_err_t err = ws_links_start(&s_sink);
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "hub links unavailable (%s): no outgoing links to bootstrap hubs",
                 esp_err_to_name(err));
    }
    load_boot_module();
    xSemaphoreGive(s_booted);

    TickType_t next_tick = xTaskGetTickCount() + pdMS_TO_TICKS(HUB_TICK_MS);
    for (;;) {
        hub_event ev;
        TickType_t now = xTaskGetTickCount();
        TickType_t wait = (int32_t)(next_tick - now) > 0 ? next_tick - now : 0;
        /* Bounded: the httpd task may itself be waiting for inbox room that only we free. */
        ws_transport_wait_writable(pdMS_TO_TICKS(HUB_OUT_WAIT_MS));
        if (xQueueReceive(s_queue, &ev, wait) == pdTRUE) {
            dispatch(&ev);
            ws_transport_flush();
        }
        now = xTaskGetTickCount();
        if ((int32_t)(now - next_tick) >= 0) {
            tick();
            next_tick = now + pdMS_TO_TICKS(HUB_TICK_MS);
        }
    }
}

/* ---- API for other tasks ------------------------------------------------------------------------- */

const char *hub_task_hub_id(void)
{
    return s_boot_hub_id;
}

esp_err_t hub_task_start(void)
{
    s_queue = xQueueCreate(CONFIG_PIGEONHUB_HUB_QUEUE_LEN, sizeof(hub_event));
    s_booted = xSemaphoreCreateBinary();
    if (s_queue == NULL || s_booted == NULL) {
        return ESP_ERR_NO_MEM;
    }
    if (xTaskCreate(hub_task, "hub", HUB_TASK_STACK_BYTES, NULL, CONFIG_PIGEONHUB_HUB_TASK_PRIORITY,
                    NULL) != pdPASS) {
        ESP_LOGE(TAG, "creating the hub task (%d bytes of stack) failed", HUB_TASK_STACK_BYTES);
        return ESP_ERR_NO_MEM;
    }
    /* The module's runtime is the heap its load takes (s_module_heap): nothing else may allocate
     * meanwhile, so the caller starts the network and the HTTP server only after it. */
    if (xSemaphoreTake(s_booted, pdMS_TO_TICKS(HUB_BOOT_WAIT_MS)) != pdTRUE) {
        ESP_LOGW(TAG, "the boot module is still loading after %d ms: starting the network anyway",
                 HUB_BOOT_WAIT_MS);
    }
    return ESP_OK;
}

static bool hub_post(const hub_event *ev, TickType_t wait)
{
    return xQueueSend(s_queue, ev, wait) == pdTRUE;
}

static bool hub_inbox_reserve(size_t len, TickType_t wait)
{
    TickType_t start = xTaskGetTickCount();
    for (;;) {
        size_t cur = atomic_load(&s_inbox_bytes);
        /* A single frame larger than the whole budget still passes when the inbox is empty. */
        if (cur == 0 || cur + len <= CONFIG_PIGEONHUB_INBOX_BYTES) {
            if (atomic_compare_exchange_weak(&s_inbox_bytes, &cur, cur + len)) {
                size_t peak = atomic_load(&s_inbox_peak);
                while (cur + len > peak && !atomic_compare_exchange_weak(&s_inbox_peak, &peak, cur + len)) {
                }
                return true;
            }
            continue;
        }
        if (xTaskGetTickCount() - start >= wait) {
            return false;
        }
        vTaskDelay(pdMS_TO_TICKS(HUB_INBOX_POLL_MS));
    }
}

static void hub_inbox_release(size_t len)
{
    atomic_fetch_sub(&s_inbox_bytes, len);
}

static int call_hub(call_kind kind, int slot, char *out, size_t cap)
{
    hub_call *c = calloc(1, sizeof(*c));
    char *buf = malloc(cap);
    SemaphoreHandle_t done = xSemaphoreCreateBinary();
    if (c == NULL || buf == NULL || done == NULL) {
        free(c);
        free(buf);
        if (done) {
            vSemaphoreDelete(done);
        }
        strlcpy(out, "out of memory", cap);
        return 503;
    }
    buf[0] = '\0';
    c->kind = kind;
    c->slot = slot;
    c->out = buf;
    c->cap = cap;
    c->done = done;
    atomic_store(&c->refs, 2);
    hub_event ev = { .type = HUB_EV_CALL, .data = (uint8_t *)c };
    if (!hub_post(&ev, pdMS_TO_TICKS(HUB_CALL_WAIT_MS))) {
        atomic_store(&c->refs, 1);
        call_unref(c);
        strlcpy(out, "hub task busy", cap);
        return 503;
    }
    int status = 503;
    if (xSemaphoreTake(done, pdMS_TO_TICKS(HUB_CALL_WAIT_MS)) == pdTRUE) {
        status = c->status;
        strlcpy(out, c->out, cap);
    } else {
        strlcpy(out, "hub task did not answer in time", cap);
    }
    call_unref(c);
    return status;
}

int hub_health_json(char *buf, size_t cap)
{
    return call_hub(CALL_HEALTH, 0, buf, cap);
}

int hub_stats_json(char *buf, size_t cap)
{
    return call_hub(CALL_STATS, 0, buf, cap);
}

int hub_swap_to_slot(int slot, char *json, size_t cap)
{
    return call_hub(CALL_SWAP, slot, json, cap);
}

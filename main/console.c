/*
 * console.c — `wifi <ssid> [password]`, `token <secret>`, `modkey <key>`, `bootstrap <url,url>`,
 * `tls ...`, `status`, `restart` on the console UART
 * (or USB Serial/JTAG when that is the configured console). Values go to NVS and win over Kconfig.
 */
#include "console.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "freertos/FreeRTOS.h"
#include "freertos/task.h" /* tskNO_AFFINITY in ESP_CONSOLE_REPL_CONFIG_DEFAULT */
#include "esp_console.h"
#include "esp_log.h"
#include "esp_system.h"
#include "module_sig.h"
#include "settings.h"
#include "network.h"
#include "ph_module_store.h"
#include "mbedtls/base64.h"
#include "tls_identity.h"

static const char *TAG = "pigeonhub";

static int cmd_wifi(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        printf("usage: wifi <ssid> [password]   (quote an SSID with spaces: wifi \"my net\" pw)\n");
        return 1;
    }
    esp_err_t err = network_set_wifi_credentials(argv[1], argc == 3 ? argv[2] : "");
    if (err == ESP_ERR_INVALID_ARG) {
        printf("SSID must be 1-32 bytes and the password at most 63\n");
        return 1;
    }
    if (err != ESP_OK) {
        printf("failed: %s\n", esp_err_to_name(err));
        return 1;
    }
    printf("saved; connecting to \"%s\"\n", argv[1]);
    return 0;
}

static int cmd_token(int argc, char **argv)
{
    if (argc != 2 || strlen(argv[1]) < PH_UPLOAD_TOKEN_MIN || strlen(argv[1]) > PH_UPLOAD_TOKEN_MAX) {
        printf("usage: token <secret>   (%d-%d characters; required by POST /module)\n",
               PH_UPLOAD_TOKEN_MIN, PH_UPLOAD_TOKEN_MAX);
        return 1;
    }
    if (settings_set_str(SETTINGS_KEY_UPLOAD_TOKEN, argv[1]) != ESP_OK) {
        printf("failed to store the token\n");
        return 1;
    }
    printf("upload token saved\n");
    return 0;
}

/* The key a module must be signed by to run (module_sig.c); checked before it is stored, used from
 * the next upload on. The key is one line: base64 DER, or a PEM whose lines were joined. */
static int cmd_modkey(int argc, char **argv)
{
    static char text[320];   /* the console task's alone; its stack is 4 KiB */
    char hex[17], err[120];
    text[0] = '\0';
    for (int i = 1; i < argc; i++) {
        if (i > 1) strlcat(text, " ", sizeof(text));
        strlcat(text, argv[i], sizeof(text));
    }
    if (argc < 2) {
        printf("usage: modkey <public key: the line `pigeonhub keygen` prints> | none\n");
        return 1;
    }
    if (strcmp(text, "none") == 0) {
        if (settings_set_str(SETTINGS_KEY_MODULE_KEY, "") != ESP_OK) {
            printf("failed to clear the module key\n");
            return 1;
        }
        printf("module key cleared (CONFIG_PIGEONHUB_MODULE_PUBKEY applies, if set)\n");
        return 0;
    }
    if (module_sig_parse_key(text, hex, err, sizeof(err)) != ESP_OK) {
        printf("module key refused: %s\n", err);
        return 1;
    }
    if (settings_set_str(SETTINGS_KEY_MODULE_KEY, text) != ESP_OK) {
        printf("failed to store the module key\n");
        return 1;
    }
    printf("module key %s saved: only modules signed by it run from now on\n", hex);
    return 0;
}

/* Stored in NVS; read when the module starts (start_server dials them), so: restart to apply. */
static int cmd_bootstrap(int argc, char **argv)
{
    char list[512];
    if (argc != 2) {
        settings_get_str(SETTINGS_KEY_BOOTSTRAP, CONFIG_PIGEONHUB_BOOTSTRAP_HUBS, list, sizeof(list));
        printf("usage: bootstrap <ws://host:port/,...>   (comma-separated; `bootstrap none` clears)\n"
               "current: %s\n", list[0] ? list : "(none)");
        return argc == 1 ? 0 : 1;
    }
    const char *value = strcmp(argv[1], "none") == 0 ? "" : argv[1];
    if (strlen(value) >= sizeof(list)) {
        printf("the list is longer than %u characters\n", (unsigned)sizeof(list) - 1);
        return 1;
    }
    strlcpy(list, value, sizeof(list));
    for (char *save = NULL, *url = strtok_r(list, ",", &save); url; url = strtok_r(NULL, ",", &save)) {
        while (*url == ' ') {
            url++;
        }
        static const char ws[] = "ws://", wss[] = "wss://";
        if (*url && strncmp(url, ws, sizeof ws - 1) != 0 && strncmp(url, wss, sizeof wss - 1) != 0) {
            printf("'%s' is not a ws:// or wss:// URL; nothing saved\n", url);
            return 1;
        }
    }
    if (settings_set_str(SETTINGS_KEY_BOOTSTRAP, value) != ESP_OK) {
        printf("failed to store the bootstrap list\n");
        return 1;
    }
    printf("bootstrap hubs saved (%s); `restart` to link to them\n", value[0] ? value : "none");
    return 0;
}

/* `tls cert|key <base64 chunk>` appends to what `tls save` stores: a PEM is longer than a console
 * line (esp_console's 256 bytes), so `pigeonhub provision` sends it in pieces. */
typedef struct {
    char *b64;
    size_t len;
} staged_pem;

static staged_pem s_staged[2];   /* 0: certificate, 1: key */
#define STAGED_B64_MAX (((TLS_PEM_MAX + 2) / 3) * 4)

static void tls_discard_staged(void)
{
    for (int i = 0; i < 2; i++) {
        free(s_staged[i].b64);
        s_staged[i] = (staged_pem){ 0 };
    }
}

static int tls_append(staged_pem *st, const char *chunk)
{
    size_t n = strlen(chunk);
    if (st->len + n > STAGED_B64_MAX) {
        printf("longer than %d bytes of PEM; nothing staged (tls clear-staged to start over)\n",
               TLS_PEM_MAX);
        tls_discard_staged();
        return 1;
    }
    char *grown = realloc(st->b64, st->len + n + 1);
    if (grown == NULL) {
        printf("out of memory\n");
        tls_discard_staged();
        return 1;
    }
    memcpy(grown + st->len, chunk, n + 1);
    st->b64 = grown;
    st->len += n;
    printf("staged %u\n", (unsigned)st->len);
    return 0;
}

/* The staged base64 decoded into a NUL-terminated PEM; *len includes the NUL. */
static char *tls_decode(const staged_pem *st, size_t *len, const char *what)
{
    size_t n = 0;
    if (st->len == 0) {
        printf("no %s staged (tls %s <base64 of the PEM file>)\n", what, what);
        return NULL;
    }
    char *pem = malloc(st->len * 3 / 4 + 2);
    if (pem == NULL) {
        printf("out of memory\n");
        return NULL;
    }
    if (mbedtls_base64_decode((unsigned char *)pem, st->len * 3 / 4 + 1, &n,
                              (const unsigned char *)st->b64, st->len) != 0) {
        printf("the staged %s is not valid base64\n", what);
        free(pem);
        return NULL;
    }
    pem[n] = '\0';
    *len = n + 1;
    return pem;
}

static int tls_save(void)
{
    size_t cert_len = 0, key_len = 0;
    char summary[96], err[160];
    int rc = 1;
    char *cert = tls_decode(&s_staged[0], &cert_len, "cert");
    char *key = cert ? tls_decode(&s_staged[1], &key_len, "key") : NULL;
    if (key != NULL) {
        if (tls_identity_store(cert, cert_len, key, key_len, summary, sizeof(summary), err,
                               sizeof(err)) == ESP_OK) {
            printf("TLS certificate saved (%s); `restart` to serve wss:// and https://\n", summary);
            rc = 0;
        } else {
            printf("%s; nothing saved\n", err);
        }
    }
    free(cert);
    free(key);
    tls_discard_staged();
    return rc;
}

static int cmd_tls(int argc, char **argv)
{
    char summary[96], err[160];
    if (argc == 3 && strcmp(argv[1], "cert") == 0) {
        return tls_append(&s_staged[0], argv[2]);
    }
    if (argc == 3 && strcmp(argv[1], "key") == 0) {
        return tls_append(&s_staged[1], argv[2]);
    }
    if (argc == 2 && strcmp(argv[1], "save") == 0) {
        return tls_save();
    }
    if (argc == 2 && strcmp(argv[1], "clear-staged") == 0) {
        tls_discard_staged();
        printf("staged certificate and key discarded\n");
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "none") == 0) {
        tls_discard_staged();
        if (tls_identity_store(NULL, 0, NULL, 0, summary, sizeof(summary), err, sizeof(err)) !=
            ESP_OK) {
            printf("%s\n", err);
            return 1;
        }
        printf("TLS certificate removed; `restart` to serve plain ws://\n");
        return 0;
    }
    if (argc == 1) {
        tls_identity id;
        esp_err_t e = tls_identity_load(&id, err, sizeof(err));
        printf("tls: %s\n", e == ESP_OK ? id.summary : err);
        tls_identity_free(&id);
    }
    printf("usage: tls cert <base64 chunk> ... tls key <base64 chunk> ... tls save   (PEM files, "
           "base64 in pieces; `pigeonhub provision --cert C --key K` sends them)\n"
           "       tls none   (back to plain ws://)\n");
    return argc == 1 ? 0 : 1;
}

static int cmd_status(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("wifi: %s%s\nport: %d\nfree heap: %lu bytes\n",
           network_is_connected() ? "connected, IPv4 address " : "not connected",
           network_ip_string(), CONFIG_PIGEONHUB_PORT, (unsigned long)esp_get_free_heap_size());
    return 0;
}

static int cmd_restart(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    esp_restart();
    return 0;
}

esp_err_t console_start(void)
{
    static const esp_console_cmd_t cmds[] = {
        { .command = "wifi", .help = "Set Wi-Fi credentials (stored in NVS) and connect",
          .hint = "<ssid> [password]", .func = cmd_wifi },
        { .command = "token", .help = "Set the token POST /module requires (stored in NVS)",
          .hint = "<secret>", .func = cmd_token },
        { .command = "modkey", .help = "Set the public key uploaded modules must be signed by (NVS)",
          .hint = "<base64 public key|none>", .func = cmd_modkey },
        { .command = "bootstrap", .help = "Set the hubs to link to (stored in NVS, used after restart)",
          .hint = "<ws://host:port/,...|none>", .func = cmd_bootstrap },
        { .command = "tls", .help = "Set the TLS certificate and key (stored in NVS): wss:// and "
                                    "https:// after restart",
          .hint = "cert|key <base64> | save | none", .func = cmd_tls },
        { .command = "status", .help = "Show Wi-Fi state, IP address and free heap",
          .hint = NULL, .func = cmd_status },
        { .command = "restart", .help = "Reboot the hub", .hint = NULL, .func = cmd_restart },
    };
    esp_console_repl_t *repl = NULL;
    esp_console_repl_config_t repl_config = ESP_CONSOLE_REPL_CONFIG_DEFAULT();
    repl_config.prompt = "pigeonhub>";
    esp_err_t err;

#if CONFIG_ESP_CONSOLE_UART_DEFAULT || CONFIG_ESP_CONSOLE_UART_CUSTOM
    esp_console_dev_uart_config_t dev = ESP_CONSOLE_DEV_UART_CONFIG_DEFAULT();
    err = esp_console_new_repl_uart(&dev, &repl_config, &repl);
#elif CONFIG_ESP_CONSOLE_USB_SERIAL_JTAG
    esp_console_dev_usb_serial_jtag_config_t dev = ESP_CONSOLE_DEV_USB_SERIAL_JTAG_CONFIG_DEFAULT();
    err = esp_console_new_repl_usb_serial_jtag(&dev, &repl_config, &repl);
#else
    ESP_LOGW(TAG, "no console device configured: serial commands unavailable");
    return ESP_ERR_NOT_SUPPORTED;
#endif
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "console REPL failed: %s", esp_err_to_name(err));
        return err;
    }
    esp_console_register_help_command();
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        esp_console_cmd_register(&cmds[i]);
    }
    return esp_console_start_repl(repl);
}

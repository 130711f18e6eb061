/*
 * module_sig.h — signed modules on the board: the module key (NVS `mod_key`, set with the console's
 * `modkey`, else CONFIG_PIGEONHUB_MODULE_PUBKEY) and the check every module goes through before it
 * runs while a key is set (lib/pigeonhub_bridge/src/ph_module_sig.h finds the signature and words
 * the refusal; mbedtls verifies it). docs/SIGNED_MODULES.md.
 */
#ifndef PH_MODULE_SIG_BOARD_H
#define PH_MODULE_SIG_BOARD_H

#include <stddef.h>
#include <stdint.h>
#include "esp_err.h"

/* 0 when wasm may run: no key is set, or the key signed it. Else 1, with the reason in reason. */
int module_sig_check(const uint8_t *wasm, size_t len, char *reason, size_t cap);

/* The boot log's line about the key: "module key <id> (NVS): only modules signed by it run". */
void module_sig_log_key(void);

/* Is text a P-256 public key (base64 DER on one line, or PEM)? ESP_OK with its id (16 hex), else
 * ESP_ERR_INVALID_ARG with the reason. For the console's `modkey`. */
esp_err_t module_sig_parse_key(const char *text, char key_id_hex[17], char *err, size_t cap);

#endif /* PH_MODULE_SIG_BOARD_H */

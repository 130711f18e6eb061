/*
 * console.h — serial console commands (esp_console REPL): configure the hub without reflashing.
 */
#ifndef PH_CONSOLE_H
#define PH_CONSOLE_H

#include "esp_err.h"

esp_err_t console_start(void);

#endif /* PH_CONSOLE_H */

/*
 * code_pages_esp.c — where WASM3 keeps the code it compiles a module into, on the ESP32
 * (patch 0008-code-page-allocator; compiled with CONFIG_PIGEONHUB_WASM3_CODE_IN_IRAM).
 *
 * The ESP32's IRAM heap serves only 32-bit loads and stores, so nothing in the firmware allocates
 * there, while code pages are read and written only as whole words: IRAM first, then the general
 * heap once IRAM is full. A byte access to IRAM would raise LoadStoreError on silicon (QEMU does
 * not model that), hence the zeroing below word by word instead of calloc's memset.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "esp_heap_caps.h"

void *ph_wasm3_code_page_malloc(size_t size)
{
    volatile uint32_t *page = heap_caps_malloc(size, MALLOC_CAP_EXEC | MALLOC_CAP_32BIT);
    if (page == NULL) {
        return calloc(1, size);
    }
    for (size_t i = 0; i < size / sizeof(uint32_t); i++) {
        page[i] = 0;
    }
    return (void *)page;
}

void ph_wasm3_code_page_free(void *page)
{
    heap_caps_free(page);
}

/*
 * ph_port.h — how hub.c reaches its host: the imports of pigeonhub_abi.h as C declarations.
 *
 * In the wasm32 build each import is an `env.<name>` function import and each export carries
 * export_name, so the module's import/export sections are exactly the ABI tables. In the native
 * build (gcc, sanitizers) the same declarations are plain extern functions that a test harness
 * defines, and the exports are ordinary global functions it calls.
 */
#ifndef PH_PORT_H
#define PH_PORT_H

#include <stddef.h>
#include <stdint.h>

#include "pigeonhub_abi.h"

#ifdef __wasm__
#define PH_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define PH_EXPORT(name) __attribute__((export_name(#name)))
#else
#define PH_IMPORT(name)
#define PH_EXPORT(name)
#endif

/* Pointers are i32 offsets into linear memory on wasm32, real pointers natively. */
PH_IMPORT(ws_server_start)    int32_t ws_server_start(int32_t port);
PH_IMPORT(ws_server_stop)     void ws_server_stop(void);
PH_IMPORT(ws_send_to_peer)    int32_t ws_send_to_peer(int32_t conn, const char *data, int32_t len);
PH_IMPORT(ws_broadcast)       int32_t ws_broadcast(const char *data, int32_t len, int32_t exclude_conn);
PH_IMPORT(log_message)        void log_message(const char *msg, int32_t len);
#define LOG_LIT(lit) log_message((lit), (int32_t)sizeof(lit) - 1)   /* a string literal, no counting */
PH_IMPORT(get_device_id)      void get_device_id(char *buf, int32_t len);
PH_IMPORT(millis)             uint32_t millis(void);
PH_IMPORT(ws_get_request_url) int32_t ws_get_request_url(int32_t conn, char *buf, int32_t len);
PH_IMPORT(ws_close_peer)      void ws_close_peer(int32_t conn, int32_t code, const char *reason, int32_t len);
PH_IMPORT(ws_ping_peer)       int32_t ws_ping_peer(int32_t conn);
PH_IMPORT(wall_clock_ms)      int64_t wall_clock_ms(void);
PH_IMPORT(ws_connect)         int32_t ws_connect(const char *url, int32_t len);
PH_IMPORT(get_bootstrap_hub)  int32_t get_bootstrap_hub(int32_t index, char *buf, int32_t len);
PH_IMPORT(json_string_end)    int32_t json_string_end(const char *text, int32_t len);
PH_IMPORT(json_value_end)     int32_t json_value_end(const char *text, int32_t len);

/* The exports (hub.c defines them). */
PH_EXPORT(init)                  int32_t init(void);
PH_EXPORT(start_server)          int32_t start_server(int32_t port);
PH_EXPORT(stop_server)           void stop_server(void);
PH_EXPORT(on_peer_connected)     void on_peer_connected(int32_t conn);
PH_EXPORT(on_peer_disconnected)  void on_peer_disconnected(int32_t conn);
PH_EXPORT(on_message)            void on_message(int32_t conn, const char *ptr, int32_t len);
PH_EXPORT(loop)                  void loop(void);
PH_EXPORT(is_running)            int32_t is_running(void);
PH_EXPORT(get_peer_count)        int32_t get_peer_count(void);
PH_EXPORT(get_stats)             void get_stats(char *buf, int32_t size);
PH_EXPORT(get_hub_id)            const char *get_hub_id(void);
PH_EXPORT(abi_version)           int32_t abi_version(void);
PH_EXPORT(get_input_buffer)      char *get_input_buffer(void);
PH_EXPORT(get_input_buffer_size) int32_t get_input_buffer_size(void);
PH_EXPORT(on_pong)               void on_pong(int32_t conn);
PH_EXPORT(on_link_open)          void on_link_open(int32_t conn);

/* libc.c on wasm32; the native build uses the C library's, so the sanitizers check the real thing. */
#ifdef __wasm__
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
#ifdef __wasm_bulk_memory__
/* -fno-builtin (build.py) hides these from the optimiser; the builtins become one memory.copy /
 * memory.fill instruction inline (constant small sizes: a few loads and stores). */
#define memcpy(d, s, n) __builtin_memcpy(d, s, n)
#define memmove(d, s, n) __builtin_memmove(d, s, n)
#define memset(d, c, n) __builtin_memset(d, c, n)
#endif
#else
#include <string.h>
#endif

#endif /* PH_PORT_H */

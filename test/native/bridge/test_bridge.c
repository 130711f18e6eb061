/*
 * test_bridge.c — the bridge core (lib/pigeonhub_bridge) driving the REAL WASM3 and real modules.
 *
 * The only stand-in is the socket layer: a fake transport that records what the bridge asks of it
 * (frames, closes, pings, log lines) and reports closes and written bytes back when pump() runs,
 * as a real event loop would a moment later. Modules:
 *   fixtures/fixture_hub.wat   one action per frame (see its header), plus its broken variants;
 *   $HUB_WASM                  the real hub.wasm (built with --test-hooks for the trap tests).
 *
 * usage: test_bridge FIXTURE_DIR [HUB_WASM]
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "ph_bridge.h"
#include "pigeonhub_abi.h"

/* ------------------------------------------------------------------------------------------------ */
/* A minimal test runner                                                                            */

static int g_failures_in_test;
static const char *g_skip_reason;

#define CHECK(cond, ...)                                                                            \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            g_failures_in_test++;                                                                   \
            printf("    %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);                     \
            printf(__VA_ARGS__);                                                                    \
            printf("\n");                                                                           \
        }                                                                                           \
    } while (0)

#define SKIP(reason) do { g_skip_reason = (reason); return; } while (0)

/* ------------------------------------------------------------------------------------------------ */
/* Fake transport                                                                                   */

#define MAX_CONNS   1024
#define MAX_FRAMES  512
#define MAX_LOGS    4096

typedef struct {
    int32_t id;
    bool slow;              /* never reports bytes written: its outbox only grows             */
    bool close_requested;
    bool closed_reported;   /* pump() told the bridge                                         */
    int close_calls;
    uint16_t close_code;
    char close_reason[128];
    int pings;
    size_t unacked;         /* bytes handed over, not yet reported by pump()                  */
    int frame_count;
    char *frames[MAX_FRAMES];
    size_t frame_len[MAX_FRAMES];
} fake_conn;

typedef struct {
    ph_bridge *bridge;
    fake_conn conns[MAX_CONNS];
    int conn_count;
    char *logs[MAX_LOGS];
    int log_count;
    uint32_t now;
    bool close_reports_at_once;   /* misbehaving transport: reports the close from inside close() */
    int server_starts;
    /* Outgoing hub links (ABI 2): what ops->connect was asked to dial. */
    bool connect_fails;           /* connect() answers -1 (e.g. the transport cannot resolve) */
    int connects;
    int32_t connect_ids[16];
    char connect_urls[16][600];
} fake_transport;

static fake_conn *conn_rec(fake_transport *t, int32_t id)
{
    for (int i = 0; i < t->conn_count; i++)
        if (t->conns[i].id == id) return &t->conns[i];
    if (t->conn_count == MAX_CONNS) {
        fprintf(stderr, "fake transport: too many connections\n");
        exit(2);
    }
    fake_conn *c = &t->conns[t->conn_count++];
    memset(c, 0, sizeof *c);
    c->id = id;
    return c;
}

static int ft_send(void *ctx, int32_t conn, const uint8_t *frame, size_t len)
{
    fake_transport *t = ctx;
    fake_conn *c = conn_rec(t, conn);
    if (c->closed_reported) return -1;
    if (c->frame_count < MAX_FRAMES) {
        char *copy = malloc(len + 1);
        memcpy(copy, frame, len);
        copy[len] = '\0';
        c->frames[c->frame_count] = copy;
        c->frame_len[c->frame_count] = len;
    }
    c->frame_count++;
    c->unacked += len;
    return 0;
}

static void ft_close(void *ctx, int32_t conn, uint16_t code, const char *reason, size_t len)
{
    fake_transport *t = ctx;
    fake_conn *c = conn_rec(t, conn);
    c->close_calls++;
    if (!c->close_requested) {
        c->close_requested = true;
        c->close_code = code;
        snprintf(c->close_reason, sizeof c->close_reason, "%.*s", (int)len, reason);
    }
    if (t->close_reports_at_once && !c->closed_reported) {
        c->closed_reported = true;
        ph_bridge_on_close(t->bridge, conn);
    }
}

static int ft_ping(void *ctx, int32_t conn)
{
    conn_rec(ctx, conn)->pings++;
    return 0;
}

static void ft_log(void *ctx, char level, const char *msg, size_t len)
{
    fake_transport *t = ctx;
    if (t->log_count == MAX_LOGS) return;
    char *line = malloc(len + 3);
    line[0] = level;
    line[1] = ' ';
    memcpy(line + 2, msg, len);
    line[len + 2] = '\0';
    t->logs[t->log_count++] = line;
    if (getenv("TEST_VERBOSE")) printf("      log: %s\n", line);
}

static uint32_t ft_millis(void *ctx) { return ((fake_transport *)ctx)->now; }
static int64_t ft_wall(void *ctx) { return 1795721113692LL + ((fake_transport *)ctx)->now; }
static void ft_device_id(void *ctx, char *buf, size_t cap) { (void)ctx; snprintf(buf, cap, "24:6f:28:aa:bb:cc"); }
static int ft_connect(void *ctx, int32_t conn, const char *url, size_t len)
{
    fake_transport *t = ctx;
    if (t->connect_fails) return -1;
    if (t->connects < 16) {
        t->connect_ids[t->connects] = conn;
        snprintf(t->connect_urls[t->connects], sizeof t->connect_urls[0], "%.*s", (int)len, url);
    }
    t->connects++;
    return 0;
}

static int ft_server_start(void *ctx, int port) { (void)port; ((fake_transport *)ctx)->server_starts++; return 0; }

static const ph_transport_ops *ft_ops(fake_transport *t)
{
    static ph_transport_ops ops;
    ops = (ph_transport_ops){ .ctx = t, .send = ft_send, .close = ft_close, .ping = ft_ping,
                              .log = ft_log, .millis = ft_millis, .wall_clock_ms = ft_wall,
                              .device_id = ft_device_id, .server_start = ft_server_start,
                              .connect = ft_connect };
    return &ops;
}

/* What the event loop does between bridge calls: writes queued bytes (except for slow readers)
 * and finishes requested closes. */
static void pump(fake_transport *t)
{
    for (int i = 0; i < t->conn_count; i++) {
        fake_conn *c = &t->conns[i];
        if (!c->slow && c->unacked) {
            ph_bridge_on_sent(t->bridge, c->id, c->unacked);
            c->unacked = 0;
        }
        if (c->close_requested && !c->closed_reported) {
            c->closed_reported = true;
            ph_bridge_on_close(t->bridge, c->id);
        }
    }
}

static void ft_free(fake_transport *t)
{
    ph_bridge_destroy(t->bridge);
    for (int i = 0; i < t->conn_count; i++)
        for (int j = 0; j < t->conns[i].frame_count && j < MAX_FRAMES; j++) free(t->conns[i].frames[j]);
    for (int i = 0; i < t->log_count; i++) free(t->logs[i]);
    free(t);
}

static int count_logs(fake_transport *t, const char *needle)
{
    int n = 0;
    for (int i = 0; i < t->log_count; i++)
        if (strstr(t->logs[i], needle)) n++;
    return n;
}

static const char *last_frame(fake_transport *t, int32_t conn)
{
    fake_conn *c = conn_rec(t, conn);
    return c->frame_count ? c->frames[(c->frame_count > MAX_FRAMES ? MAX_FRAMES : c->frame_count) - 1] : "";
}

/* ------------------------------------------------------------------------------------------------ */
/* Modules                                                                                          */

typedef struct { uint8_t *data; size_t len; } blob;

static const char *g_fixtures;
static const char *g_hub_path;
static blob g_fixture, g_hub;

static blob read_file(const char *path)
{
    blob b = { NULL, 0 };
    FILE *f = fopen(path, "rb");
    if (!f) return b;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.data = malloc(n > 0 ? (size_t)n : 1);
    b.len = fread(b.data, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static blob fixture(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.wasm", g_fixtures, name);
    blob b = read_file(path);
    if (!b.data) {
        fprintf(stderr, "missing fixture %s (run through the Makefile)\n", path);
        exit(2);
    }
    return b;
}

static fake_transport *start(blob module, const ph_bridge_config *config)
{
    fake_transport *t = calloc(1, sizeof *t);
    ph_bridge_config defaults = PH_BRIDGE_CONFIG_DEFAULT;
    ph_result rc;
    char err[256];
    t->bridge = ph_bridge_create(module.data, module.len, ft_ops(t), config ? config : &defaults, &rc,
                                 err, sizeof err);
    if (!t->bridge) {
        printf("    bridge refused the module: %d %s\n", rc, err);
        for (int i = 0; i < t->log_count; i++) free(t->logs[i]);
        free(t);
        return NULL;
    }
    return t;
}

static int32_t open_conn(fake_transport *t, const char *url)
{
    int32_t id = ph_bridge_on_open(t->bridge, url, strlen(url));
    pump(t);
    return id;
}

static void frame(fake_transport *t, int32_t conn, const char *text)
{
    ph_bridge_on_frame(t->bridge, conn, (const uint8_t *)text, strlen(text));
    pump(t);
}

/* ------------------------------------------------------------------------------------------------ */
/* Load errors                                                                                      */

static void expect_refused(const uint8_t *data, size_t len, ph_result code, const char *message)
{
    fake_transport *t = calloc(1, sizeof *t);
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    ph_result rc = PH_OK;
    char err[256] = "";
    ph_bridge *b = ph_bridge_create(data, len, ft_ops(t), &config, &rc, err, sizeof err);
    CHECK(b == NULL, "module was accepted, expected %d \"%s\"", code, message);
    CHECK(rc == code, "result %d, expected %d (%s)", rc, code, err);
    CHECK(strstr(err, message) != NULL, "message \"%s\" lacks \"%s\"", err, message);
    char err2[256] = "";
    ph_result rc2 = ph_bridge_check_module(data, len, err2, sizeof err2);
    CHECK(rc2 == code && strcmp(err, err2) == 0, "check_module said %d \"%s\"", rc2, err2);
    ph_bridge_destroy(b);
    for (int i = 0; i < t->log_count; i++) free(t->logs[i]);
    free(t);
}

static void test_refuses_non_wasm(void)
{
    const char *text = "hello, this is not a module";
    expect_refused((const uint8_t *)text, strlen(text), PH_ERR_NOT_WASM,
                   "not a WebAssembly module: starts with 68 65 6c 6c, expected 00 61 73 6d");
    expect_refused((const uint8_t *)"", 0, PH_ERR_NOT_WASM, "not a WebAssembly module: only 0 bytes");
    const uint8_t header_only[6] = { 0, 'a', 's', 'm', 1, 0 };
    expect_refused(header_only, sizeof header_only, PH_ERR_NOT_WASM, "the 8-byte header is cut short");
    const uint8_t v2[8] = { 0, 'a', 's', 'm', 2, 0, 0, 0 };
    expect_refused(v2, sizeof v2, PH_ERR_NOT_WASM, "binary version 2, expected 1");
}

static void test_refuses_truncated(void)
{
    expect_refused(g_fixture.data, g_fixture.len / 2, PH_ERR_LOAD, "module is truncated: its ");
    expect_refused(g_fixture.data, g_fixture.len - 1, PH_ERR_LOAD, "module is truncated: its ");
}

static void test_refuses_each_broken_variant(void)
{
    static const struct { const char *name; ph_result code; const char *message; } variants[] = {
#include "variants.inc"
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        blob b = fixture(variants[i].name);
        int before = g_failures_in_test;
        expect_refused(b.data, b.len, variants[i].code, variants[i].message);
        if (g_failures_in_test != before) printf("    (variant %s)\n", variants[i].name);
        free(b.data);
    }
}

static void test_refuses_module_larger_than_memory_limit(void)
{
    /* The fixture's data ends near 13300: a 10000-byte limit cannot hold it. */
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    config.memory_limit_bytes = 10000;
    fake_transport *t = calloc(1, sizeof *t);
    ph_result rc;
    char err[256] = "";
    ph_bridge *b = ph_bridge_create(g_fixture.data, g_fixture.len, ft_ops(t), &config, &rc, err, sizeof err);
    CHECK(!b && rc == PH_ERR_MEMORY, "rc %d err %s", rc, err);
    CHECK(strstr(err, "module does not fit in the 10000-byte memory limit"), "%s", err);
    /* A limit below the stack top (8192) is refused before init() can touch it. */
    config.memory_limit_bytes = 4096;
    b = ph_bridge_create(g_fixture.data, g_fixture.len, ft_ops(t), &config, &rc, err, sizeof err);
    CHECK(!b && (rc == PH_ERR_MEMORY || rc == PH_ERR_LOAD), "rc %d err %s", rc, err);
    CHECK(strstr(err, "memory"), "%s", err);
    for (int i = 0; i < t->log_count; i++) free(t->logs[i]);
    free(t);
}

static void test_accepts_fixture(void)
{
    char err[256] = "";
    CHECK(ph_bridge_check_module(g_fixture.data, g_fixture.len, err, sizeof err) == PH_OK, "%s", err);
    fake_transport *t = start(g_fixture, NULL);
    CHECK(t != NULL, "fixture refused");
    if (!t) return;
    CHECK(strcmp(ph_bridge_hub_id(t->bridge), "0123456789abcdef0123456789abcdef01234567") == 0, "hub id %s",
          ph_bridge_hub_id(t->bridge));
    CHECK(ph_bridge_input_buffer_size(t->bridge) == 4096, "input %u", ph_bridge_input_buffer_size(t->bridge));
    CHECK(count_logs(t, "I fixture init") == 1, "init log line missing (level letter convention)");
    CHECK(ph_bridge_start(t->bridge, 3000) == 0 && t->server_starts == 1, "start_server");
    ft_free(t);
}

/* ------------------------------------------------------------------------------------------------ */
/* Connections through the fixture                                                                   */

static void test_connect_echo_url_device(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/?peerId=aaaa");
    CHECK(a >= 0, "on_open -> %d", a);
    CHECK(strcmp(last_frame(t, a), "hello") == 0, "greeting \"%s\"", last_frame(t, a));
    CHECK(ph_bridge_peer_count(t->bridge) == 1 && ph_bridge_connection_count(t->bridge) == 1, "counts");
    frame(t, a, "Eecho me");
    CHECK(strcmp(last_frame(t, a), "Eecho me") == 0, "echo \"%s\"", last_frame(t, a));
    frame(t, a, "U");
    CHECK(strcmp(last_frame(t, a), "/?peerId=aaaa") == 0, "url \"%s\"", last_frame(t, a));
    frame(t, a, "D");
    CHECK(strcmp(last_frame(t, a), "24:6f:28:aa:bb:cc") == 0, "device id \"%s\"", last_frame(t, a));
    frame(t, a, "P");
    CHECK(conn_rec(t, a)->pings == 1, "ping");
    ph_bridge_on_pong(t->bridge, a);
    ph_bridge_tick(t->bridge);

    char stats[1024];
    int n = ph_bridge_stats_json(t->bridge, stats, sizeof stats);
    CHECK(n > 0 && (size_t)n == strlen(stats), "stats length %d", n);
    CHECK(strncmp(stats, "{\"module\":{\"fixture\":true},\"bridge\":{\"connections\":1,\"maxConnections\":24,"
                         "\"framesIn\":4,", 80) == 0, "%s", stats);
    CHECK(ph_bridge_stats_json(t->bridge, stats, 10) < 0, "tiny buffer must fail");
    ft_free(t);
}

static void test_ids_never_reused_and_close_once(void)
{
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    config.max_connections = 2;
    fake_transport *t = start(g_fixture, &config);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t ids[20];
    for (int i = 0; i < 20; i++) {
        ids[i] = open_conn(t, "/");
        CHECK(ids[i] >= 0, "open %d -> %d", i, ids[i]);
        for (int j = 0; j < i; j++) CHECK(ids[i] != ids[j], "id %d reused (%d and %d)", ids[i], i, j);
        ph_bridge_on_close(t->bridge, ids[i]);
        ph_bridge_on_close(t->bridge, ids[i]);   /* a duplicate report changes nothing */
    }
    CHECK(count_logs(t, "I gone") == 0 && count_logs(t, "D gone") == 20, "disconnects: %d",
          count_logs(t, "D gone"));
    /* A frame for a stale id is not delivered to anyone. */
    int32_t live = open_conn(t, "/");
    int before = conn_rec(t, live)->frame_count;
    frame(t, ids[0], "Estale");
    CHECK(conn_rec(t, live)->frame_count == before, "stale id reached a live connection");
    CHECK(ph_bridge_peer_count(t->bridge) == 1, "peer count %d", ph_bridge_peer_count(t->bridge));
    ft_free(t);
}

static void test_full(void)
{
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    config.max_connections = 3;
    fake_transport *t = start(g_fixture, &config);
    if (!t) { CHECK(0, "fixture refused"); return; }
    for (int i = 0; i < 3; i++) CHECK(open_conn(t, "/") >= 0, "open %d", i);
    CHECK(ph_bridge_on_open(t->bridge, "/", 1) == PH_ERR_FULL, "4th connection must be refused");
    CHECK(ph_bridge_connection_count(t->bridge) == 3, "count");
    char stats[1024];
    ph_bridge_stats_json(t->bridge, stats, sizeof stats);
    CHECK(strstr(stats, "\"refusedFull\":1"), "%s", stats);
    ft_free(t);
}

static void test_oversized_frame_1009(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/"), b = open_conn(t, "/");
    CHECK(ph_bridge_accepts_frame(t->bridge, a, 4096), "4096 bytes fit the input buffer");
    CHECK(!ph_bridge_accepts_frame(t->bridge, a, 4097), "4097 bytes must be refused");
    pump(t);
    fake_conn *ca = conn_rec(t, a);
    CHECK(ca->close_code == PH_CLOSE_TOO_BIG && strcmp(ca->close_reason, "Message too big") == 0,
          "close %u \"%s\"", ca->close_code, ca->close_reason);
    char *big = malloc(5001);
    memset(big, 'E', 5000);
    big[5000] = '\0';
    int before = conn_rec(t, b)->frame_count;
    frame(t, b, big);
    CHECK(conn_rec(t, b)->close_code == PH_CLOSE_TOO_BIG, "on_frame must refuse too");
    CHECK(conn_rec(t, b)->frame_count == before, "the module must not have seen it");
    free(big);
    char stats[1024];
    ph_bridge_stats_json(t->bridge, stats, sizeof stats);
    CHECK(strstr(stats, "\"framesTooBig\":2"), "%s", stats);
    CHECK(count_logs(t, "D gone") == 2 && ph_bridge_peer_count(t->bridge) == 0, "disconnect once each");
    ft_free(t);
}

static void test_outbox_overflow_1013_only_slow(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/"), slow = open_conn(t, "/"), fast = open_conn(t, "/");
    conn_rec(t, slow)->slow = true;
    char msg[1001];
    memset(msg, 'x', 1000);
    msg[0] = 'B';
    msg[1000] = '\0';
    for (int i = 0; i < 100; i++) frame(t, a, msg);
    fake_conn *cs = conn_rec(t, slow), *cf = conn_rec(t, fast);
    CHECK(cs->close_code == PH_CLOSE_TRY_LATER && strcmp(cs->close_reason, "Outbox full (slow consumer)") == 0,
          "slow: close %u \"%s\"", cs->close_code, cs->close_reason);
    CHECK(cs->close_calls == 1, "closed %d times", cs->close_calls);
    /* "hello" (5) and as many 1000-byte frames as fit the limit; the next one was dropped. */
    int fit = 1 + (int)((PH_BRIDGE_DEFAULT_OUTBOX_LIMIT - 5) / 1000);
    CHECK(cs->frame_count == fit, "slow got %d frames, not %d", cs->frame_count, fit);
    CHECK(cf->frame_count == 101 && !cf->close_requested, "fast got %d frames", cf->frame_count);
    CHECK(conn_rec(t, a)->frame_count == 1, "sender excluded from its broadcast");
    char stats[1024];
    ph_bridge_stats_json(t->bridge, stats, sizeof stats);
    CHECK(strstr(stats, "\"outboxOverflows\":1,") && strstr(stats, "\"connections\":2,"), "%s", stats);
    CHECK(strstr(stats, "\"outboxBytes\":0,"), "acknowledged bytes leave the outbox: %s", stats);
    ft_free(t);
}

static void test_trap_closes_only_that_conn_1011(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/"), b = open_conn(t, "/");
    frame(t, a, "T");
    fake_conn *ca = conn_rec(t, a);
    CHECK(ca->close_code == PH_CLOSE_INTERNAL && strcmp(ca->close_reason, "Hub module error") == 0,
          "close %u \"%s\"", ca->close_code, ca->close_reason);
    char expected[128];
    snprintf(expected, sizeof expected, "E hub.wasm on_message() trapped: [trap] unreachable executed (conn %d)", a);
    CHECK(count_logs(t, expected) == 1, "log line \"%s\" missing", expected);
    frame(t, b, "Estill here");
    CHECK(strcmp(last_frame(t, b), "Estill here") == 0, "other connection not served");
    CHECK(count_logs(t, "D gone") == 1, "trapped conn disconnected once");
    char stats[1024];
    ph_bridge_stats_json(t->bridge, stats, sizeof stats);
    CHECK(strstr(stats, "\"traps\":1,"), "%s", stats);
    ft_free(t);
}

/* The call budget (ph_bridge_config.call_budget, WASM3 patch 0006): a module that never returns. */

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void test_budget_refuses_init_that_never_returns(void)
{
    blob loops = fixture("init_loops_forever");
    char expected[160];
    snprintf(expected, sizeof expected,
             "init() trapped: [trap] module exceeded its per-call budget of %u loop iterations/calls",
             (unsigned)PH_BRIDGE_DEFAULT_CALL_BUDGET);
    /* The over-the-air check: refused with the reason, and it returns (before patch 0006 it spun
     * for ever; main's watchdog fails the run then). */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char err[256] = "";
    ph_result rc = ph_bridge_check_module(loops.data, loops.len, err, sizeof err);
    double took = seconds_since(&t0);
    CHECK(rc == PH_ERR_INIT && strcmp(err, expected) == 0, "check_module: %d \"%s\"", rc, err);
    CHECK(took < 10.0, "check_module took %.1f s", took);
    /* ph_bridge_create the same, with the trap in the log; a budget of the caller's own size is
     * the one applied and reported. */
    fake_transport *t = calloc(1, sizeof *t);
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    config.call_budget = 1000;
    ph_bridge *b = ph_bridge_create(loops.data, loops.len, ft_ops(t), &config, &rc, err, sizeof err);
    CHECK(!b && rc == PH_ERR_INIT, "create: %d %s", rc, err);
    CHECK(strcmp(err, "init() trapped: [trap] module exceeded its per-call budget of 1000 loop "
                      "iterations/calls") == 0, "%s", err);
    CHECK(count_logs(t, "E hub.wasm init() trapped: [trap] module exceeded its per-call budget of "
                        "1000 loop iterations/calls") == 1, "init trap not logged");
    for (int i = 0; i < t->log_count; i++) free(t->logs[i]);
    free(t);
    free(loops.data);
}

static void test_budget_ends_runaway_tick(void)
{
    /* fuzz/corpus/check_module/timeout-loop-never-returns: loop() never returns. The module is
     * accepted (init() returns); each tick ends with a trap, and the hub serves on. */
    blob runaway = fixture("tick_loops_forever");
    char err[256] = "";
    CHECK(ph_bridge_check_module(runaway.data, runaway.len, err, sizeof err) == PH_OK, "%s", err);
    fake_transport *t = start(runaway, NULL);
    if (!t) { CHECK(0, "tick_loops_forever refused"); free(runaway.data); return; }
    int32_t a = open_conn(t, "/");
    ph_bridge_tick(t->bridge);
    ph_bridge_tick(t->bridge);
    CHECK(count_logs(t, "E hub.wasm loop() trapped: [trap] module exceeded its per-call budget of ") == 2,
          "loop() trap not logged twice");
    CHECK(!conn_rec(t, a)->close_requested, "a trap in loop() closed a connection");
    frame(t, a, "Estill served");
    CHECK(strcmp(last_frame(t, a), "Estill served") == 0, "not served after runaway ticks");
    ft_free(t);
    free(runaway.data);
}

static void test_budget_ends_runaway_on_message_1011(void)
{
    blob runaway = fixture("message_loops_forever");
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    config.max_connections = 4;
    fake_transport *t = start(runaway, &config);
    if (!t) { CHECK(0, "message_loops_forever refused"); free(runaway.data); return; }
    int32_t a = open_conn(t, "/"), b = open_conn(t, "/");
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    frame(t, a, "R");   /* on_message never returns for "R" */
    double took = seconds_since(&t0);
    CHECK(took < 10.0, "the runaway frame took %.1f s", took);
    fake_conn *ca = conn_rec(t, a);
    CHECK(ca->close_code == PH_CLOSE_INTERNAL && strcmp(ca->close_reason, "Hub module error") == 0,
          "close %u \"%s\"", ca->close_code, ca->close_reason);
    char expected[200];
    snprintf(expected, sizeof expected, "E hub.wasm on_message() trapped: [trap] module exceeded its "
             "per-call budget of %u loop iterations/calls (conn %d)",
             (unsigned)PH_BRIDGE_DEFAULT_CALL_BUDGET, (int)a);
    CHECK(count_logs(t, expected) == 1, "log line \"%s\" missing", expected);
    /* The others are served; the runaway's slot is given back (its disconnect reaches the module). */
    frame(t, b, "Estill here");
    CHECK(strcmp(last_frame(t, b), "Estill here") == 0, "other connection not served");
    CHECK(!conn_rec(t, b)->close_requested, "the other connection was closed");
    CHECK(count_logs(t, "D gone") == 1, "runaway conn disconnected %d times", count_logs(t, "D gone"));
    CHECK(ph_bridge_connection_count(t->bridge) == 1, "connections %u", ph_bridge_connection_count(t->bridge));
    /* A call tree without any loop (2^40 calls): function entries spend the budget too. */
    int32_t f = open_conn(t, "/");
    frame(t, f, "F");
    CHECK(conn_rec(t, f)->close_code == PH_CLOSE_INTERNAL, "fan-out: close %u", conn_rec(t, f)->close_code);
    snprintf(expected, sizeof expected, "E hub.wasm on_message() trapped: [trap] module exceeded its "
             "per-call budget of %u loop iterations/calls (conn %d)",
             (unsigned)PH_BRIDGE_DEFAULT_CALL_BUDGET, (int)f);
    CHECK(count_logs(t, expected) == 1, "log line \"%s\" missing", expected);
    CHECK(ph_bridge_connection_count(t->bridge) == 1, "connections %u", ph_bridge_connection_count(t->bridge));
    /* No slot leaked: 20 more runaways through 4 slots, then every slot opens again. */
    for (int i = 0; i < 20; i++) {
        int32_t c = open_conn(t, "/");
        CHECK(c >= 0, "runaway %d: no slot (%d)", i, c);
        if (c < 0) break;
        frame(t, c, "R");
        CHECK(conn_rec(t, c)->close_code == PH_CLOSE_INTERNAL, "runaway %d not closed", i);
    }
    CHECK(ph_bridge_connection_count(t->bridge) == 1, "connections %u", ph_bridge_connection_count(t->bridge));
    for (int i = 0; i < 3; i++) CHECK(open_conn(t, "/") >= 0, "slot %d not free again", i);
    CHECK(ph_bridge_on_open(t->bridge, "/", 1) == PH_ERR_FULL, "more slots than max_connections");
    frame(t, b, "Eafter 22 runaways");
    CHECK(strcmp(last_frame(t, b), "Eafter 22 runaways") == 0, "not served after 22 runaways");
    char stats[1024];
    ph_bridge_stats_json(t->bridge, stats, sizeof stats);
    char budget[96];
    snprintf(budget, sizeof budget, "\"callBudget\":%u,\"callBudgetPeak\":%u,",
             (unsigned)PH_BRIDGE_DEFAULT_CALL_BUDGET, (unsigned)PH_BRIDGE_DEFAULT_CALL_BUDGET);
    CHECK(strstr(stats, "\"traps\":22,") && strstr(stats, budget), "%s", stats);
    ft_free(t);
    free(runaway.data);
}

static void test_budget_peak_of_real_calls(void)
{
    /* What the fixture's calls spend is counted, far below the budget. */
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/");
    frame(t, a, "Eping");
    char stats[1024];
    ph_bridge_stats_json(t->bridge, stats, sizeof stats);
    const char *peak = strstr(stats, "\"callBudgetPeak\":");
    unsigned value = peak ? (unsigned)strtoul(peak + 17, NULL, 10) : 0;
    CHECK(peak && value > 0 && value < 100, "peak %u: %s", value, stats);
    ft_free(t);
}

static void test_stack_pointer_restored_after_traps(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t probe = open_conn(t, "/");
    frame(t, probe, "S");
    uint32_t sp0;
    memcpy(&sp0, last_frame(t, probe), 4);
    CHECK(sp0 == 8192, "initial stack pointer %u", sp0);
    /* Each trap moved the stack pointer down 256 bytes; 32 unrestored traps use the whole stack. */
    for (int i = 0; i < 200; i++) {
        int32_t c = open_conn(t, "/");
        frame(t, c, "T");
        CHECK(conn_rec(t, c)->close_code == PH_CLOSE_INTERNAL, "trap %d not reported", i);
    }
    frame(t, probe, "S");
    uint32_t sp1;
    memcpy(&sp1, last_frame(t, probe), 4);
    CHECK(sp1 == sp0, "stack pointer %u after 200 traps, was %u", sp1, sp0);
    frame(t, probe, "Eok");
    CHECK(strcmp(last_frame(t, probe), "Eok") == 0, "module still serves");
    ft_free(t);
}

static void test_hostile_pointers(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/?x");
    frame(t, a, "H");
    /* send: wrapped address -3, past the end -3; broadcast from NULL -3; url into the last bytes
     * -1; negative length -3. */
    CHECK(strcmp(last_frame(t, a), "33313") == 0, "results \"%s\"", last_frame(t, a));
    CHECK(!conn_rec(t, a)->close_requested, "bad pointers with a result do not cost the connection");
    int32_t b = open_conn(t, "/");
    frame(t, b, "L");
    CHECK(conn_rec(t, b)->close_code == PH_CLOSE_INTERNAL, "log_message past memory must trap");
    CHECK(count_logs(t, "[trap] out of bounds memory access") == 1, "trap reason logged");
    int32_t c = open_conn(t, "/");
    frame(t, c, "W");
    CHECK(conn_rec(t, c)->close_code == PH_CLOSE_INTERNAL, "get_device_id past memory must trap");
    ft_free(t);
}

static void test_memory_limit_applies_to_host_pointers(void)
{
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    config.memory_limit_bytes = 16384;   /* the fixture's page is 64 KiB; only 16 KiB exist */
    fake_transport *t = start(g_fixture, &config);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/");
    frame(t, a, "M");
    CHECK(strcmp(last_frame(t, a), "3") == 0, "send past the limit: \"%s\"", last_frame(t, a));
    ft_free(t);
    t = start(g_fixture, NULL);
    a = open_conn(t, "/");
    frame(t, a, "M");
    CHECK(strcmp(last_frame(t, a), "0") == 0, "send inside 64 KiB: \"%s\"", last_frame(t, a));
    ft_free(t);
}

static void test_module_close_and_invalid_code(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/"), b = open_conn(t, "/");
    frame(t, a, "C");
    CHECK(conn_rec(t, a)->close_code == 4000 && strcmp(conn_rec(t, a)->close_reason, "bye") == 0, "close");
    frame(t, b, "X");
    CHECK(conn_rec(t, b)->close_code == PH_CLOSE_INTERNAL, "invalid code 999 replaced: %u",
          conn_rec(t, b)->close_code);
    CHECK(count_logs(t, "invalid code 999") == 1, "warning missing");
    CHECK(count_logs(t, "D gone") == 2, "disconnects %d", count_logs(t, "D gone"));
    ft_free(t);
}

static void test_close_reported_inside_callback_is_deferred(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    t->bridge = t->bridge;
    t->close_reports_at_once = true;   /* close() calls ph_bridge_on_close() before returning */
    int32_t a = open_conn(t, "/"), b = open_conn(t, "/");
    frame(t, a, "C");   /* on_message -> ws_close_peer -> close() -> on_close, all inside the export */
    CHECK(count_logs(t, "D gone") == 1, "on_peer_disconnected once, after on_message returned");
    frame(t, b, "T");   /* trap -> bridge closes 1011 -> transport reports at once */
    CHECK(count_logs(t, "D gone") == 2, "after a trap too");
    CHECK(ph_bridge_peer_count(t->bridge) == 0 && ph_bridge_connection_count(t->bridge) == 0, "all gone");
    ft_free(t);
}

/* ph_bridge_on_sent() from another thread, as the ESP32's httpd task reports completed sends:
 * the outbox accounting must neither lose nor invent bytes while the owner thread keeps sending. */
typedef struct {
    ph_bridge *bridge;
    int32_t conn;
    _Atomic size_t handed;     /* bytes given to send() and not yet acknowledged */
    _Atomic size_t acked;
    _Atomic bool stop;
} writer_thread;

static void *writer_main(void *arg)
{
    writer_thread *w = arg;
    while (!atomic_load(&w->stop) || atomic_load(&w->handed)) {
        size_t n = atomic_exchange(&w->handed, 0);
        if (n) {
            /* Reported in two pieces, to interleave more with the sender. */
            ph_bridge_on_sent(w->bridge, w->conn, n / 2);
            ph_bridge_on_sent(w->bridge, w->conn, n - n / 2);
            atomic_fetch_add(&w->acked, n);
        } else {
            sched_yield();
        }
    }
    return NULL;
}

static writer_thread *g_writer;

static int threaded_send(void *ctx, int32_t conn, const uint8_t *frame, size_t len)
{
    (void)ctx; (void)frame;
    if (g_writer && conn == g_writer->conn) atomic_fetch_add(&g_writer->handed, len);
    return 0;
}

static void test_on_sent_from_another_thread(void)
{
    fake_transport *t = calloc(1, sizeof *t);
    ph_transport_ops ops = *ft_ops(t);
    ops.send = threaded_send;
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    ph_result rc;
    char err[256];
    t->bridge = ph_bridge_create(g_fixture.data, g_fixture.len, &ops, &config, &rc, err, sizeof err);
    if (!t->bridge) { CHECK(0, "%s", err); free(t); return; }
    static writer_thread w;
    atomic_init(&w.handed, 0);
    atomic_init(&w.acked, 0);
    atomic_init(&w.stop, false);
    w.bridge = t->bridge;
    w.conn = ph_bridge_on_open(t->bridge, "/", 1);
    g_writer = &w;
    atomic_store(&w.handed, 0);   /* the greeting went out before the writer knew the id */
    ph_bridge_on_sent(t->bridge, w.conn, 5);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, writer_main, &w) == 0, "thread");
    char msg[1001];
    memset(msg, 'E', 1000);
    msg[1000] = '\0';
    size_t sent = 0;
    for (int i = 0; i < 5000; i++) {
        /* Back-pressure like a real server: stay below half the outbox limit. */
        while (sent - atomic_load(&w.acked) > config.outbox_limit_bytes / 2) sched_yield();
        ph_bridge_on_frame(t->bridge, w.conn, (const uint8_t *)msg, 1000);
        sent += 1000;
    }
    atomic_store(&w.stop, true);
    pthread_join(thread, NULL);
    g_writer = NULL;
    char stats[1024];
    ph_bridge_stats_json(t->bridge, stats, sizeof stats);
    CHECK(strstr(stats, "\"outboxOverflows\":0,"), "%s", stats);
    CHECK(strstr(stats, "\"outboxBytes\":0,"), "outbox not back to 0: %s", stats);
    CHECK(atomic_load(&w.acked) == 5000 * 1000, "acked %zu", atomic_load(&w.acked));
    CHECK(count_logs(t, "not reading") == 0, "spurious 1013");
    ft_free(t);
}

/* ------------------------------------------------------------------------------------------------ */
/* The real hub.wasm                                                                                */

static const char *peer_a = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
static const char *peer_b = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
static const char *peer_c = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

static int32_t hub_join(fake_transport *t, const char *peer, const char *network)
{
    char url[128], msg[256];
    snprintf(url, sizeof url, "/?peerId=%s", peer);
    int32_t c = open_conn(t, url);
    snprintf(msg, sizeof msg, "{\"type\":\"announce\",\"data\":{\"peerId\":\"%s\"},\"maxPeers\":3,"
             "\"networkName\":\"%s\"}", peer, network);
    frame(t, c, msg);
    return c;
}

static bool received(fake_transport *t, int32_t conn, const char *a, const char *b)
{
    fake_conn *c = conn_rec(t, conn);
    for (int i = 0; i < c->frame_count && i < MAX_FRAMES; i++)
        if (strstr(c->frames[i], a) && (!b || strstr(c->frames[i], b))) return true;
    return false;
}

static int count_received(fake_transport *t, int32_t conn, const char *a)
{
    fake_conn *c = conn_rec(t, conn);
    int n = 0;
    for (int i = 0; i < c->frame_count && i < MAX_FRAMES; i++)
        if (strstr(c->frames[i], a)) n++;
    return n;
}

static char *offer(const char *target, size_t sdp_len)
{
    char *msg = malloc(sdp_len + 256);
    int n = sprintf(msg, "{\"type\":\"offer\",\"data\":{\"type\":\"offer\",\"sdp\":\"v=0");
    memset(msg + n, 'o', sdp_len);
    sprintf(msg + n + sdp_len, "\"},\"maxPeers\":3,\"networkName\":\"demo\",\"targetPeerId\":\"%s\"}", target);
    return msg;
}

static void test_hub_connect_announce_relay(void)
{
    if (!g_hub.data) SKIP("HUB_WASM not set");
    fake_transport *t = start(g_hub, NULL);
    CHECK(t != NULL, "hub.wasm refused");
    if (!t) return;
    const char *id = ph_bridge_hub_id(t->bridge);
    CHECK(strlen(id) == 40, "hub id %s", id);
    int32_t a = hub_join(t, peer_a, "demo");
    CHECK(received(t, a, "\"type\":\"connected\"", peer_a), "A got no 'connected'");
    int32_t b = hub_join(t, peer_b, "demo");
    CHECK(received(t, a, "\"type\":\"peer-discovered\"", peer_b), "A did not discover B");
    CHECK(received(t, b, "\"type\":\"peer-discovered\"", peer_a), "B did not discover A");
    CHECK(ph_bridge_peer_count(t->bridge) == 2, "peer count %d", ph_bridge_peer_count(t->bridge));
    char *o = offer(peer_b, 4000);
    frame(t, a, o);
    free(o);
    CHECK(received(t, b, "\"type\":\"offer\"", "\"fromPeerId\":\"a1a1"), "B did not get A's offer");
    ph_bridge_on_close(t->bridge, a);
    pump(t);
    CHECK(ph_bridge_peer_count(t->bridge) == 1, "peer count after close %d", ph_bridge_peer_count(t->bridge));
    char stats[8192];
    CHECK(ph_bridge_stats_json(t->bridge, stats, sizeof stats) > 0 && strncmp(stats, "{\"module\":{", 11) == 0,
          "%s", stats);
    ft_free(t);
}

static void test_hub_oversized_1009(void)
{
    if (!g_hub.data) SKIP("HUB_WASM not set");
    fake_transport *t = start(g_hub, NULL);
    if (!t) { CHECK(0, "hub.wasm refused"); return; }
    int32_t a = hub_join(t, peer_a, "demo"), b = hub_join(t, peer_b, "demo");
    size_t max = ph_bridge_input_buffer_size(t->bridge);
    CHECK(max >= 8192, "input buffer %zu smaller than an SDP offer budget", max);
    char *o = offer(peer_b, max);   /* sdp alone fills the buffer: the frame is larger */
    frame(t, a, o);
    free(o);
    CHECK(conn_rec(t, a)->close_code == PH_CLOSE_TOO_BIG, "close %u", conn_rec(t, a)->close_code);
    CHECK(!received(t, b, "\"type\":\"offer\"", NULL), "oversized frame reached the module");
    ft_free(t);
}

static void test_hub_outbox_overflow_1013(void)
{
    if (!g_hub.data) SKIP("HUB_WASM not set");
    fake_transport *t = start(g_hub, NULL);
    if (!t) { CHECK(0, "hub.wasm refused"); return; }
    int32_t a = hub_join(t, peer_a, "demo"), slow = hub_join(t, peer_b, "demo"),
            fast = hub_join(t, peer_c, "demo");
    conn_rec(t, slow)->slow = true;
    char *to_slow = offer(peer_b, 4000), *to_fast = offer(peer_c, 4000);
    for (int i = 0; i < 40; i++) {
        frame(t, a, to_slow);
        frame(t, a, to_fast);
    }
    free(to_slow);
    free(to_fast);
    fake_conn *cs = conn_rec(t, slow);
    CHECK(cs->close_code == PH_CLOSE_TRY_LATER && strcmp(cs->close_reason, PH_REASON_OUTBOX_FULL) == 0,
          "slow conn: close %u \"%s\"", cs->close_code, cs->close_reason);
    CHECK(count_received(t, fast, "\"type\":\"offer\"") == 40, "fast conn got %d offers",
          count_received(t, fast, "\"type\":\"offer\""));
    CHECK(!conn_rec(t, fast)->close_requested && !conn_rec(t, a)->close_requested, "others stay open");
    ft_free(t);
}

/* A frame larger than the whole outbox limit still reaches a reader whose outbox is empty; a second
 * one while the first is unsent is an overflow. */
static void test_hub_frame_over_the_outbox_limit_reaches_an_idle_reader(void)
{
    if (!g_hub.data) SKIP("HUB_WASM not set");
    fake_transport *t = start(g_hub, NULL);
    if (!t) { CHECK(0, "hub.wasm refused"); return; }
    int32_t a = hub_join(t, peer_a, "demo"), b = hub_join(t, peer_b, "demo");
    char *big = offer(peer_b, PH_BRIDGE_DEFAULT_OUTBOX_LIMIT + 1000);
    frame(t, a, big);
    conn_rec(t, b)->slow = true;   /* from here on, nothing it is sent is written */
    frame(t, a, big);
    CHECK(!conn_rec(t, b)->close_requested, "closed %u \"%s\" on a frame into an empty outbox",
          conn_rec(t, b)->close_code, conn_rec(t, b)->close_reason);
    CHECK(count_received(t, b, "\"type\":\"offer\"") == 2, "the reader got %d offers",
          count_received(t, b, "\"type\":\"offer\""));
    frame(t, a, big);
    free(big);
    CHECK(conn_rec(t, b)->close_code == PH_CLOSE_TRY_LATER, "second frame unsent: close %u",
          conn_rec(t, b)->close_code);
    CHECK(!conn_rec(t, a)->close_requested, "the sender stays open");
    ft_free(t);
}

static void test_hub_trap_1011_and_stack(void)
{
    if (!g_hub.data) SKIP("HUB_WASM not set");
    fake_transport *t = start(g_hub, NULL);
    if (!t) { CHECK(0, "hub.wasm refused"); return; }
    int32_t a = hub_join(t, peer_a, "demo"), b = hub_join(t, peer_b, "demo");
    frame(t, a, "{\"type\":\"__test_trap\",\"data\":{}}");
    if (!conn_rec(t, a)->close_requested) {
        ft_free(t);
        SKIP("HUB_WASM was built without --test-hooks (no __test_trap)");
    }
    CHECK(conn_rec(t, a)->close_code == PH_CLOSE_INTERNAL, "close %u", conn_rec(t, a)->close_code);
    CHECK(count_logs(t, "trapped: ") >= 1, "trap not logged");
    char *o = offer(peer_a, 100);
    frame(t, b, o);   /* A is gone: nothing to relay to, but B is served */
    free(o);
    CHECK(!conn_rec(t, b)->close_requested, "B closed after A's trap");
    /* Many traps in a row: without restoring __stack_pointer the hub would run out of stack. */
    for (int i = 0; i < 300; i++) {
        int32_t c = open_conn(t, "/?peerId=d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4");
        frame(t, c, "{\"type\":\"__test_trap\"}");
        CHECK(conn_rec(t, c)->close_code == PH_CLOSE_INTERNAL, "trap %d: close %u", i, conn_rec(t, c)->close_code);
        if (g_failures_in_test) break;
    }
    int32_t c = hub_join(t, peer_c, "demo");
    CHECK(received(t, c, "\"type\":\"peer-discovered\"", peer_b), "hub no longer serves after 300 traps");
    ft_free(t);
}

static void test_hub_full(void)
{
    if (!g_hub.data) SKIP("HUB_WASM not set");
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    config.max_connections = 2;
    fake_transport *t = start(g_hub, &config);
    if (!t) { CHECK(0, "hub.wasm refused"); return; }
    hub_join(t, peer_a, "demo");
    hub_join(t, peer_b, "demo");
    CHECK(ph_bridge_on_open(t->bridge, "/?peerId=c", 11) == PH_ERR_FULL, "third must be refused");
    ft_free(t);
}

/* ------------------------------------------------------------------------------------------------ */
/* Module swap (ph_bridge_swap)                                                                     */

/* What clients have seen so far: frames, closes and pings over all connections. */
typedef struct { int frames, closes, pings; } seen_totals;

static seen_totals totals(fake_transport *t)
{
    seen_totals s = { 0, 0, 0 };
    for (int i = 0; i < t->conn_count; i++) {
        s.frames += t->conns[i].frame_count;
        s.closes += t->conns[i].close_calls;
        s.pings += t->conns[i].pings;
    }
    return s;
}

static blob copy_blob(blob b)
{
    blob c = { malloc(b.len), b.len };
    memcpy(c.data, b.data, b.len);
    return c;
}

static void test_hub_swap_keeps_peers_silently(void)
{
    if (!g_hub.data) SKIP("HUB_WASM not set");
    fake_transport *t = start(g_hub, NULL);
    if (!t) { CHECK(0, "hub.wasm refused"); return; }
    CHECK(ph_bridge_start(t->bridge, 3000) == 0, "start");
    int32_t a = hub_join(t, peer_a, "demo"), b = hub_join(t, peer_b, "demo");
    CHECK(received(t, a, "\"type\":\"peer-discovered\"", peer_b), "A did not discover B");
    seen_totals before = totals(t);
    int starts = t->server_starts;

    /* A separate copy: the new module's bytes, as an upload would bring them. */
    blob next = copy_blob(g_hub);
    char err[256] = "";
    ph_result rc = ph_bridge_swap(t->bridge, next.data, next.len, err, sizeof err);
    pump(t);
    CHECK(rc == PH_OK, "swap failed: %d %s", rc, err);
    seen_totals after = totals(t);
    CHECK(after.frames == before.frames && after.closes == before.closes && after.pings == before.pings,
          "clients saw something during the swap: frames %d->%d closes %d->%d pings %d->%d",
          before.frames, after.frames, before.closes, after.closes, before.pings, after.pings);
    CHECK(t->server_starts == starts, "the transport was asked to start listening again");
    CHECK(ph_bridge_peer_count(t->bridge) == 2, "new module knows %d peers", ph_bridge_peer_count(t->bridge));
    CHECK(ph_bridge_connection_count(t->bridge) == 2, "connections %u", ph_bridge_connection_count(t->bridge));
    CHECK(ph_bridge_last_swap_replayed(t->bridge) == 2, "replayed %u", ph_bridge_last_swap_replayed(t->bridge));

    /* The new module relays between the peers it only knows from the replay... */
    char *o = offer(peer_b, 500);
    frame(t, a, o);
    free(o);
    CHECK(received(t, b, "\"type\":\"offer\"", "\"fromPeerId\":\"a1a1"), "B did not get A's offer after the swap");
    /* ...and knows their networks: a newcomer is introduced to both, both to it. */
    int32_t c = hub_join(t, peer_c, "demo");
    CHECK(received(t, c, "\"type\":\"connected\"", peer_c), "C got no 'connected'");
    CHECK(received(t, a, "\"type\":\"peer-discovered\"", peer_c), "A did not discover C after the swap");
    CHECK(received(t, b, "\"type\":\"peer-discovered\"", peer_c), "B did not discover C after the swap");
    CHECK(received(t, c, "\"type\":\"peer-discovered\"", peer_a), "C did not discover A");
    CHECK(count_received(t, a, "\"type\":\"connected\"") == 1, "A got a second 'connected'");
    CHECK(count_received(t, a, peer_b) >= 1 && count_received(t, b, "\"type\":\"peer-discovered\"") == 2,
          "B's discoveries: %d (A once, C once)", count_received(t, b, "\"type\":\"peer-discovered\""));
    /* Outbox accounting survived: everything sent was acknowledged by pump(). */
    char stats[8192];
    CHECK(ph_bridge_stats_json(t->bridge, stats, sizeof stats) > 0, "stats");
    CHECK(strstr(stats, "\"outboxBytes\":0,") && strstr(stats, "\"swaps\":1,") &&
          strstr(stats, "\"lastSwapReplayed\":2,") && strstr(stats, "\"lastSwapAnnounces\":2,"), "%s", stats);
    /* Closing after the swap: the new module gets the disconnect and tells the others. */
    ph_bridge_on_close(t->bridge, a);
    pump(t);
    CHECK(received(t, b, "\"type\":\"peer-disconnected\"", peer_a), "B not told A left");
    CHECK(ph_bridge_peer_count(t->bridge) == 2, "peers after close %d", ph_bridge_peer_count(t->bridge));
    ft_free(t);
    free(next.data);
}

/* /stats "peers": what the bridge keeps of each open connection the module took. */
static void test_hub_peers_json(void)
{
    if (!g_hub.data) SKIP("HUB_WASM not set");
    fake_transport *t = start(g_hub, NULL);
    if (!t) { CHECK(0, "hub.wasm refused"); return; }
    t->now = 1000;
    int32_t a = hub_join(t, peer_a, "caf\\u00e9 \\\"x\\\"");   /* escapes stay as sent: valid JSON */
    t->now = 3500;
    int32_t b = open_conn(t, "/?peerId=b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2");
    frame(t, b, "{\"type\":\"announce\",\"data\":{\"networkName\":\"nested\"}}");   /* none: global */
    int32_t c = open_conn(t, "/room?x=1&peerId=c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3");
    int32_t d = hub_join(t, "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4", "demo");
    frame(t, d, "{\"type\":\"goodbye\",\"data\":{}}");                             /* left its network */
    int32_t refused = open_conn(t, "/?peerId=nothex");
    t->now = 4000;
    char peers[4096];
    int n = ph_bridge_peers_json(t->bridge, peers, sizeof peers);
    CHECK(n > 0 && (size_t)n == strlen(peers) && peers[0] == '[' && peers[n - 1] == ']', "%s", peers);
    char want[256];
    snprintf(want, sizeof want, "{\"conn\":%d,\"peerId\":\"%s\",\"network\":\"caf\\u00e9 \\\"x\\\"\","
             "\"connectedMs\":3000,\"framesIn\":1,\"framesOut\":1}", (int)a, peer_a);
    CHECK(strstr(peers, want), "A: want %s in %s", want, peers);
    snprintf(want, sizeof want, "{\"conn\":%d,\"peerId\":\"%s\",\"network\":\"global\",\"connectedMs\":500,",
             (int)b, peer_b);
    CHECK(strstr(peers, want), "B: want %s in %s", want, peers);
    snprintf(want, sizeof want, "{\"conn\":%d,\"peerId\":\"%s\",\"network\":null,", (int)c, peer_c);
    CHECK(strstr(peers, want), "C: want %s in %s", want, peers);
    snprintf(want, sizeof want, "{\"conn\":%d,\"peerId\":\"d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4\","
             "\"network\":null,", (int)d);
    CHECK(strstr(peers, want), "D: want %s in %s", want, peers);
    snprintf(want, sizeof want, "\"conn\":%d,", (int)refused);
    CHECK(!strstr(peers, want) && !strstr(peers, "nothex"), "a refused connection is listed: %s", peers);
    CHECK(ph_bridge_peers_json(t->bridge, peers, 10) < 0, "tiny buffer must fail");
    CHECK(ph_bridge_peers_capacity(t->bridge) >= (size_t)n + 1, "capacity %zu < %d",
          ph_bridge_peers_capacity(t->bridge), n + 1);
    ph_bridge_on_close(t->bridge, a);
    pump(t);
    ph_bridge_peers_json(t->bridge, peers, sizeof peers);
    CHECK(!strstr(peers, peer_a), "A closed, still listed: %s", peers);
    ft_free(t);
}

static void test_hub_swap_forgets_announce_after_goodbye(void)
{
    if (!g_hub.data) SKIP("HUB_WASM not set");
    fake_transport *t = start(g_hub, NULL);
    if (!t) { CHECK(0, "hub.wasm refused"); return; }
    int32_t a = hub_join(t, peer_a, "demo");
    int32_t b = hub_join(t, peer_b, "demo");
    frame(t, b, "{\"type\":\"goodbye\",\"data\":{}}");
    /* A frame whose NESTED type says announce is not an announce. */
    char url[128];
    snprintf(url, sizeof url, "/?peerId=%s", peer_c);
    int32_t c = open_conn(t, url);
    frame(t, c, "{\"type\":\"ping\",\"data\":{\"type\":\"announce\"},\"networkName\":\"demo\"}");
    char err[256] = "";
    CHECK(ph_bridge_swap(t->bridge, g_hub.data, g_hub.len, err, sizeof err) == PH_OK, "%s", err);
    pump(t);
    char stats[8192];
    ph_bridge_stats_json(t->bridge, stats, sizeof stats);
    CHECK(strstr(stats, "\"lastSwapReplayed\":3,") && strstr(stats, "\"lastSwapAnnounces\":1,"), "%s", stats);
    int32_t d = hub_join(t, "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4", "demo");
    CHECK(received(t, a, "\"type\":\"peer-discovered\"", "d4d4"), "A (announced) did not discover D");
    CHECK(!received(t, b, "\"type\":\"peer-discovered\"", "d4d4"), "B said goodbye, yet discovered D");
    CHECK(!received(t, c, "\"type\":\"peer-discovered\"", "d4d4"), "C never announced, yet discovered D");
    CHECK(received(t, d, "\"type\":\"peer-discovered\"", peer_a), "D did not discover A");
    ft_free(t);
}

static void expect_swap_refused(fake_transport *t, int32_t a, const uint8_t *data, size_t len,
                                ph_result code, const char *message, const char *what)
{
    const char *hub_id = ph_bridge_hub_id(t->bridge);
    char id_before[41];
    snprintf(id_before, sizeof id_before, "%s", hub_id);
    seen_totals before = totals(t);
    char err[256] = "";
    ph_result rc = ph_bridge_swap(t->bridge, data, len, err, sizeof err);
    pump(t);
    CHECK(rc == code, "%s: result %d, expected %d (%s)", what, rc, code, err);
    CHECK(strstr(err, message) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err, message);
    seen_totals after = totals(t);
    CHECK(after.frames == before.frames && after.closes == before.closes,
          "%s: clients saw frames/closes from a refused module", what);
    /* The old module still serves: same hub id, same peers, echo works. */
    CHECK(strcmp(ph_bridge_hub_id(t->bridge), id_before) == 0, "%s: hub id changed", what);
    CHECK(ph_bridge_peer_count(t->bridge) == 2, "%s: peer count %d", what, ph_bridge_peer_count(t->bridge));
    CHECK(ph_bridge_input_buffer_size(t->bridge) == 4096, "%s: input buffer", what);
    frame(t, a, "Estill here");
    CHECK(strcmp(last_frame(t, a), "Estill here") == 0, "%s: old module does not echo: \"%s\"", what,
          last_frame(t, a));
}

static void test_swap_refusals_leave_old_module_serving(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    CHECK(ph_bridge_start(t->bridge, 3000) == 0, "start");
    int32_t a = open_conn(t, "/?peerId=aaaa");
    open_conn(t, "/?peerId=bbbb");
    static const struct { const char *name; ph_result code; const char *message; } variants[] = {
#include "variants.inc"
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        blob b = fixture(variants[i].name);
        expect_swap_refused(t, a, b.data, b.len, variants[i].code, variants[i].message, variants[i].name);
        free(b.data);
    }
    const char *text = "<html>not a module</html>";
    expect_swap_refused(t, a, (const uint8_t *)text, strlen(text), PH_ERR_NOT_WASM,
                        "not a WebAssembly module: starts with 3c 68 74 6d", "non-wasm");
    expect_swap_refused(t, a, g_fixture.data, g_fixture.len - 7, PH_ERR_LOAD, "module is truncated: its ",
                        "truncated");
    blob flipped = copy_blob(g_fixture);
    for (size_t i = 8; i < flipped.len; i += 97) flipped.data[i] ^= 0xFF;   /* corrupt: bytes flipped */
    char err[256] = "";
    seen_totals before = totals(t);
    ph_result rc = ph_bridge_swap(t->bridge, flipped.data, flipped.len, err, sizeof err);
    pump(t);
    CHECK(rc != PH_OK && err[0], "corrupt module accepted");
    CHECK(totals(t).frames == before.frames, "corrupt: clients saw frames");
    frame(t, a, "Ecorrupt survived");
    CHECK(strcmp(last_frame(t, a), "Ecorrupt survived") == 0, "old module gone after corrupt swap");
    free(flipped.data);
    /* Loads, but traps while taking over a connection: refused, old module keeps it. */
    blob traps = fixture("connect_traps");
    expect_swap_refused(t, a, traps.data, traps.len, PH_ERR_INIT,
                        "new module's on_peer_connected trapped while replaying conn", "connect_traps");
    free(traps.data);
    char stats[1024];
    ph_bridge_stats_json(t->bridge, stats, sizeof stats);
    CHECK(strstr(stats, "\"swaps\":0,") && strstr(stats, "\"swapFailures\":18,"), "%s", stats);
    ft_free(t);
}

static void test_swap_new_module_refusing_a_conn_closes_it_after(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/"), b = open_conn(t, "/");
    blob refuses = fixture("connect_refuses");
    char err[256] = "";
    CHECK(ph_bridge_swap(t->bridge, refuses.data, refuses.len, err, sizeof err) == PH_OK, "%s", err);
    /* The closes are requested after the swap, with the new module's code and reason, and
     * the new module hears of them (it logs "D gone" once per connection). */
    fake_conn *ca = conn_rec(t, a), *cb = conn_rec(t, b);
    CHECK(ca->close_code == 4000 && strcmp(ca->close_reason, "bye") == 0, "a: %u %s", ca->close_code,
          ca->close_reason);
    CHECK(cb->close_code == 4000 && cb->close_calls == 1, "b: %u x%d", cb->close_code, cb->close_calls);
    CHECK(ca->frame_count == 1 && cb->frame_count == 1, "only the old module's hello reached clients");
    CHECK(count_logs(t, "D gone") == 0, "disconnect before the transport reported the close");
    pump(t);
    CHECK(count_logs(t, "D gone") == 2, "new module got %d disconnects", count_logs(t, "D gone"));
    CHECK(ph_bridge_connection_count(t->bridge) == 0, "connections %u", ph_bridge_connection_count(t->bridge));
    CHECK(count_logs(t, "new module closed conn") == 2, "not logged");
    ft_free(t);
    free(refuses.data);
}

static void test_swap_50_times_no_leak(void)
{
    /* ASan's leak check at exit fails the run if a swap leaks a runtime, an announce or a URL. */
    blob mods[2] = { copy_blob(g_hub.data ? g_hub : g_fixture), copy_blob(g_hub.data ? g_hub : g_fixture) };
    fake_transport *t = start(mods[0], NULL);
    if (!t) { CHECK(0, "module refused"); free(mods[0].data); free(mods[1].data); return; }
    ph_bridge_start(t->bridge, 3000);
    int32_t a, b;
    if (g_hub.data) {
        a = hub_join(t, peer_a, "demo");
        b = hub_join(t, peer_b, "demo");
    } else {
        a = open_conn(t, "/");
        b = open_conn(t, "/");
    }
    seen_totals before = totals(t);
    for (int i = 0; i < 50; i++) {
        char err[256] = "";
        ph_result rc = ph_bridge_swap(t->bridge, mods[(i + 1) % 2].data, mods[(i + 1) % 2].len, err, sizeof err);
        CHECK(rc == PH_OK, "swap %d: %s", i, err);
        if (rc != PH_OK) break;
        /* a failed swap in between must not leak either */
        rc = ph_bridge_swap(t->bridge, mods[0].data, mods[0].len / 2, err, sizeof err);
        CHECK(rc == PH_ERR_LOAD, "truncated swap %d: %d", i, rc);
    }
    pump(t);
    CHECK(totals(t).frames == before.frames, "clients saw frames during 100 swaps");
    if (g_hub.data) {
        CHECK(ph_bridge_peer_count(t->bridge) == 2, "peers %d", ph_bridge_peer_count(t->bridge));
        char *o = offer(peer_a, 200);
        frame(t, b, o);
        free(o);
        CHECK(received(t, a, "\"type\":\"offer\"", "\"fromPeerId\":\"b2b2"), "relay after 50 swaps");
    } else {
        frame(t, a, "Eafter 50");
        CHECK(strcmp(last_frame(t, a), "Eafter 50") == 0, "echo after 50 swaps");
        (void)b;
    }
    ft_free(t);
    free(mods[0].data);
    free(mods[1].data);
}


/* ------------------------------------------------------------------------------------------------ */
/* Hub links (ABI 2): ws_connect, on_link_open, get_bootstrap_hub                                    */

/* The fixture's 4-byte little-endian reply (K, G). */
static int32_t reply_i32(fake_transport *t, int32_t conn)
{
    fake_conn *c = conn_rec(t, conn);
    if (!c->frame_count || c->frame_count > MAX_FRAMES || c->frame_len[c->frame_count - 1] < 4) return -999;
    const uint8_t *p = (const uint8_t *)c->frames[c->frame_count - 1];
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

/* Ask the fixture (through accepted connection `via`) to dial url; returns ws_connect's result. */
static int32_t dial(fake_transport *t, int32_t via, const char *url)
{
    char text[700];
    snprintf(text, sizeof text, "K%s", url);
    frame(t, via, text);
    return reply_i32(t, via);
}

static bool stats_has(fake_transport *t, const char *needle)
{
    char *stats = malloc(ph_bridge_stats_capacity(t->bridge));
    int n = ph_bridge_stats_json(t->bridge, stats, ph_bridge_stats_capacity(t->bridge));
    bool found = n > 0 && strstr(stats, needle) != NULL;
    if (!found) printf("    stats: %s\n", n > 0 ? stats : "(failed)");
    free(stats);
    return found;
}

static void test_link_lifecycle(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/?peerId=aaaa");
    const char *url = "ws://hub.example:3000/?peerId=0123456789abcdef0123456789abcdef01234567";
    int32_t l = dial(t, a, url);
    CHECK(l >= 0 && l != a, "ws_connect -> %d", l);
    CHECK(t->connects == 1 && t->connect_ids[0] == l && strcmp(t->connect_urls[0], url) == 0,
          "transport asked to dial %d %s", t->connect_ids[0], t->connect_urls[0]);
    CHECK(ph_bridge_link_count(t->bridge) == 1 && ph_bridge_connection_count(t->bridge) == 1, "counts");
    CHECK(stats_has(t, "\"links\":[{\"conn\":"), "links in stats");
    CHECK(stats_has(t, "\"state\":\"connecting\""), "dialing link shows connecting");

    /* Nothing flows before the handshake: frames are refused, the module cannot send to it. */
    CHECK(!ph_bridge_accepts_frame(t->bridge, l, 3), "frame accepted on a dialing link");
    frame(t, a, "Bbroadcast 1");
    CHECK(conn_rec(t, l)->frame_count == 0, "broadcast reached a dialing link");
    CHECK(!conn_rec(t, l)->close_requested, "a dialing link must not be closed by a refused frame");

    ph_bridge_on_link_open(t->bridge, l);
    pump(t);
    CHECK(count_logs(t, "I link open") == 1, "on_link_open not called once");
    CHECK(strcmp(last_frame(t, l), "link-up") == 0, "module's first frame on the link \"%s\"", last_frame(t, l));
    CHECK(count_logs(t, "hello") == 0 && ph_bridge_peer_count(t->bridge) == 1,
          "on_peer_connected must not run for a link");
    ph_bridge_on_link_open(t->bridge, l);   /* a repeated report changes nothing */
    CHECK(count_logs(t, "I link open") == 1, "on_link_open ran twice");

    frame(t, l, "U");
    CHECK(strcmp(last_frame(t, l), url) == 0, "ws_get_request_url on a link \"%s\"", last_frame(t, l));
    frame(t, l, "Eover the link");
    CHECK(strcmp(last_frame(t, l), "Eover the link") == 0, "echo on link \"%s\"", last_frame(t, l));
    frame(t, a, "Bbroadcast 2");
    CHECK(strcmp(last_frame(t, l), "Bbroadcast 2") == 0, "broadcast must reach open links");
    frame(t, l, "P");
    CHECK(conn_rec(t, l)->pings == 1, "ping on a link");
    CHECK(stats_has(t, "\"state\":\"open\",\"framesIn\":3,\"framesOut\":4}"), "link frame counters");
    CHECK(stats_has(t, url + 5), "link URL in stats");

    int gone = count_logs(t, "D gone");
    ph_bridge_on_close(t->bridge, l);
    ph_bridge_on_close(t->bridge, l);
    CHECK(count_logs(t, "D gone") == gone + 1, "on_peer_disconnected %d times", count_logs(t, "D gone") - gone);
    CHECK(ph_bridge_link_count(t->bridge) == 0, "link slot not freed");
    CHECK(stats_has(t, "\"links\":[]}}"), "closed link still in stats");
    frame(t, a, "Ealive");
    CHECK(strcmp(last_frame(t, a), "Ealive") == 0, "client after the link closed");

    /* The module closes a link itself: the transport is asked, the module hears once. */
    int32_t l2 = dial(t, a, "wss://hub.example/");
    ph_bridge_on_link_open(t->bridge, l2);
    pump(t);
    frame(t, l2, "C");
    CHECK(conn_rec(t, l2)->close_requested && conn_rec(t, l2)->close_code == 4000, "module close of a link");
    CHECK(count_logs(t, "D gone") == gone + 2, "on_peer_disconnected after module close");
    ft_free(t);
}

static void test_link_connect_failures(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/?peerId=aaaa");

    /* Refused / DNS / timeout: reported as a close before any open: one on_peer_disconnected. */
    int32_t l = dial(t, a, "ws://127.0.0.1:1/");
    CHECK(l >= 0, "ws_connect -> %d", l);
    int gone = count_logs(t, "D gone");
    ph_bridge_on_close(t->bridge, l);
    CHECK(count_logs(t, "D gone") == gone + 1, "failed dial: on_peer_disconnected %d times",
          count_logs(t, "D gone") - gone);
    ph_bridge_on_link_open(t->bridge, l);   /* a late report for a dead id is ignored */
    CHECK(count_logs(t, "I link open") == 0, "on_link_open after the close");
    CHECK(ph_bridge_link_count(t->bridge) == 0, "slot kept");

    /* The module closes a link still dialing: the transport aborts it and reports the close. */
    l = dial(t, a, "ws://slow.example/");
    frame(t, l, "C");   /* dropped: no frames before the handshake */
    CHECK(!conn_rec(t, l)->close_requested, "frame delivered to a dialing link");

    /* The transport cannot dial at all: ws_connect fails, the module never holds an id. */
    t->connect_fails = true;
    int32_t bad = dial(t, a, "ws://unresolvable.invalid/");
    CHECK(bad < 0, "ws_connect -> %d when the transport cannot dial", bad);
    CHECK(count_logs(t, "transport could not dial ws://unresolvable.invalid/") == 1, "no log line");
    CHECK(ph_bridge_link_count(t->bridge) == 1, "failed dial took a slot");
    t->connect_fails = false;

    /* Not a WebSocket URL, or too long: refused with a reason. */
    CHECK(dial(t, a, "http://hub.example/") < 0, "http:// accepted");
    CHECK(count_logs(t, "not a ws:// or wss:// URL") == 1, "no reason for a bad scheme");
    char longurl[600] = "ws://";
    memset(longurl + 5, 'x', 560);
    longurl[565] = '\0';
    CHECK(dial(t, a, longurl) < 0, "over-long URL accepted");
    CHECK(count_logs(t, "URL longer than 512 bytes") == 1, "no reason for a long URL");
    CHECK(stats_has(t, "\"linksRefused\":3"), "refusals not counted");
    ft_free(t);

    /* A transport without outgoing links (connect == NULL). */
    t = calloc(1, sizeof *t);
    ph_transport_ops ops = *ft_ops(t);
    ops.connect = NULL;
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    ph_result rc;
    char err[256];
    t->bridge = ph_bridge_create(g_fixture.data, g_fixture.len, &ops, &config, &rc, err, sizeof err);
    CHECK(t->bridge != NULL, "%s", err);
    a = open_conn(t, "/?peerId=aaaa");
    CHECK(dial(t, a, "ws://hub.example/") < 0 && dial(t, a, "ws://hub.example/") < 0, "dialed without connect()");
    CHECK(count_logs(t, "W bridge: this transport has no outgoing links") == 1 &&
          count_logs(t, "D bridge: this transport has no outgoing links") == 1,
          "the missing connect() is logged once as a warning, then at debug level");
    ft_free(t);
}

static void test_link_hostile_pointers(void)
{
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    const char *urls[] = { "ws://a.example/" };
    config.bootstrap_urls = urls;
    config.bootstrap_count = 1;
    fake_transport *t = start(g_fixture, &config);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/?peerId=aaaa");
    frame(t, a, "J");
    CHECK(strcmp(last_frame(t, a), "33133311") == 0, "hostile ws_connect/get_bootstrap_hub results \"%s\"",
          last_frame(t, a));
    CHECK(t->connects == 0 && ph_bridge_link_count(t->bridge) == 0, "a hostile call dialed");
    CHECK(ph_bridge_connection_count(t->bridge) == 1, "the caller was dropped");
    frame(t, a, "Estill here");
    CHECK(strcmp(last_frame(t, a), "Estill here") == 0, "hub stopped serving after hostile calls");
    ft_free(t);
}

/* ABI 3: the json_string_end import validates strings for the module, and refuses pointers and
 * lengths outside linear memory with a result instead of reading there. */
static void test_json_string_end_import(void)
{
    fake_transport *t = start(g_fixture, NULL);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/");
    static const struct { const char *text; int32_t expect; } cases[] = {
        { "Z\"ab\\n\"tail", 6 },                  /* "ab\n" then bytes after the string   */
        { "Z\"\xC3\xA9\\u00e9\"", 10 },         /* UTF-8 and a \u escape                 */
        { "Z\"unterminated", PH_JSON_STRING_SYNTAX },
        { "Z\"bad \\x escape\"", PH_JSON_STRING_SYNTAX },
        { "Z\"\xED\xA0\x80\"", PH_JSON_STRING_UTF8 },   /* a UTF-16 surrogate in UTF-8 */
        { "Zno quote", PH_JSON_STRING_SYNTAX },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        frame(t, a, cases[i].text);
        CHECK(reply_i32(t, a) == cases[i].expect, "json_string_end(%s) = %d, expected %d",
              cases[i].text + 1, (int)reply_i32(t, a), (int)cases[i].expect);
        /* wrapped address, past the end, negative length: PH_JSON_STRING_BAD_ARGS (-3) each */
        CHECK(strcmp(last_frame(t, a) + 4, "333") == 0, "hostile json_string_end results \"%s\"",
              last_frame(t, a) + 4);
    }
    CHECK(!conn_rec(t, a)->close_requested, "bad pointers with a result do not cost the connection");
    ft_free(t);
}

static void test_link_slots_reserved(void)
{
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    config.max_connections = 2;
    config.max_links = 1;
    fake_transport *t = start(g_fixture, &config);
    if (!t) { CHECK(0, "fixture refused"); return; }
    int32_t a = open_conn(t, "/?peerId=aaaa");
    int32_t b = open_conn(t, "/?peerId=bbbb");
    CHECK(a >= 0 && b >= 0, "clients");
    CHECK(ph_bridge_on_open(t->bridge, "/?peerId=cccc", 13) == PH_ERR_FULL, "third client admitted");
    int32_t l = dial(t, a, "ws://hub.example/");
    CHECK(l >= 0, "no link slot left for the bootstrap hub while clients are full: %d", l);
    CHECK(dial(t, a, "ws://hub2.example/") < 0, "more links than max_links");
    CHECK(count_logs(t, "all 1 hub link slots are in use") == 1, "no reason logged");
    ph_bridge_on_close(t->bridge, b);
    CHECK(dial(t, a, "ws://hub2.example/") < 0, "a client's slot was used for a link");
    int32_t c = open_conn(t, "/?peerId=cccc");
    CHECK(c >= 0, "a freed client slot must go to a client");
    ph_bridge_on_close(t->bridge, l);
    CHECK(dial(t, a, "ws://hub2.example/") >= 0, "freed link slot not reusable");
    CHECK(stats_has(t, "\"connections\":2,\"maxConnections\":2,"), "links counted as connections");
    CHECK(stats_has(t, "\"maxLinks\":1,"), "maxLinks");
    ft_free(t);

    /* max_links 0: no links at all. */
    config.max_links = 0;
    t = start(g_fixture, &config);
    a = open_conn(t, "/?peerId=aaaa");
    CHECK(dial(t, a, "ws://hub.example/") < 0 && t->connects == 0, "dialed with max_links 0");
    ft_free(t);
}

static void test_bootstrap_list(void)
{
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    char first[] = "ws://a.example:3000/";   /* the caller's storage: the bridge must copy it */
    const char *urls[] = { first, "", "wss://b.example/path" };
    config.bootstrap_urls = urls;
    config.bootstrap_count = 3;
    fake_transport *t = start(g_fixture, &config);
    if (!t) { CHECK(0, "fixture refused"); return; }
    memset(first, 'z', sizeof first - 1);
    CHECK(ph_bridge_start(t->bridge, 3000) == 0, "start");
    /* The fixture, like hub.wasm, dials every non-empty entry from start_server. */
    CHECK(t->connects == 2, "%d dials", t->connects);
    CHECK(strcmp(t->connect_urls[0], "ws://a.example:3000/") == 0, "copied? %s", t->connect_urls[0]);
    CHECK(strcmp(t->connect_urls[1], "wss://b.example/path") == 0, "%s", t->connect_urls[1]);
    CHECK(stats_has(t, "\"bootstrapHubs\":3,"), "bootstrapHubs");
    int32_t a = open_conn(t, "/?peerId=aaaa");

    struct { const char *req; int32_t result; const char *buf; size_t buflen; } cases[] = {
        { "G0A", 20, "", 0 },                                  /* len 0: only the length        */
        { "G0F", 20, "ws:/\0", 5 },                           /* cut: len - 1 bytes and a NUL  */
        { "G0U", 20, "ws://a.example:3000\0", 20 },           /* one short: still cut          */
        { "G0V", 20, "ws://a.example:3000/\0", 21 },          /* fits exactly                  */
        { "G0W", 20, "ws://a.example:3000/\0#", 22 },         /* the rest is left untouched    */
        { "G1E", 0, "\0###", 4 },                             /* empty entry: ""               */
        { "G2Z", 20, "wss://b.example/path\0####", 25 },
        { "G3E", -1, "####", 4 },                              /* past the end: -1, no write    */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        frame(t, a, cases[i].req);
        fake_conn *c = conn_rec(t, a);
        const char *got = c->frames[c->frame_count - 1];
        CHECK(reply_i32(t, a) == cases[i].result, "%s -> %d", cases[i].req, reply_i32(t, a));
        CHECK(c->frame_len[c->frame_count - 1] == 4 + cases[i].buflen &&
              memcmp(got + 4, cases[i].buf, cases[i].buflen) == 0, "%s wrote \"%.*s\"", cases[i].req,
              (int)cases[i].buflen, got + 4);
    }
    ft_free(t);

    /* A bad list is refused at create, with the reason. */
    const char *with_null[] = { "ws://a.example/", NULL };
    config.bootstrap_urls = with_null;
    config.bootstrap_count = 2;
    ph_result rc = PH_OK;
    char err[256] = "";
    ph_bridge *b = ph_bridge_create(g_fixture.data, g_fixture.len, NULL, &config, &rc, err, sizeof err);
    CHECK(!b && rc == PH_ERR_CONFIG && strstr(err, "bootstrap hub 1 is NULL"), "%d %s", rc, err);
    char huge[1000];
    memset(huge, 'x', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    const char *too_long[] = { huge };
    config.bootstrap_urls = too_long;
    config.bootstrap_count = 1;
    b = ph_bridge_create(g_fixture.data, g_fixture.len, NULL, &config, &rc, err, sizeof err);
    CHECK(!b && rc == PH_ERR_CONFIG && strstr(err, "bootstrap hub 0 is 999 bytes long; at most 448"),
          "%d %s", rc, err);
}

static void test_swap_keeps_links(void)
{
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    const char *urls[] = { "ws://a.example/", "ws://b.example/" };
    config.bootstrap_urls = urls;
    config.bootstrap_count = 2;
    config.max_links = 3;
    fake_transport *t = start(g_fixture, &config);
    if (!t) { CHECK(0, "fixture refused"); return; }
    ph_bridge_start(t->bridge, 3000);
    CHECK(t->connects == 2, "%d dials", t->connects);
    int32_t la = t->connect_ids[0], lb = t->connect_ids[1];
    ph_bridge_on_link_open(t->bridge, la);   /* a open, b still dialing */
    pump(t);
    int32_t a = open_conn(t, "/?peerId=aaaa");
    int32_t extra = dial(t, a, "ws://c.example/");   /* not in the list: the new module won't dial it */
    ph_bridge_on_link_open(t->bridge, extra);
    pump(t);
    int la_frames = conn_rec(t, la)->frame_count, gone = count_logs(t, "D gone");

    char err[256] = "";
    CHECK(ph_bridge_swap(t->bridge, g_fixture.data, g_fixture.len, err, sizeof err) == PH_OK, "%s", err);
    pump(t);
    /* a and b were dialed again by the new module's start_server: handed over, not re-dialed. */
    CHECK(t->connects == 3, "swap dialed again: %d dials", t->connects);
    CHECK(count_logs(t, "I link open") == 3, "open link not replayed with on_link_open (%d)",
          count_logs(t, "I link open"));
    CHECK(conn_rec(t, la)->frame_count == la_frames, "the replayed on_link_open's frames reached the far hub");
    CHECK(count_logs(t, "1 hub links") == 1, "swap log line");
    /* The link nobody dialed again is closed; the new module owes it nothing. */
    CHECK(conn_rec(t, extra)->close_requested && conn_rec(t, extra)->close_code == 1001 &&
          strcmp(conn_rec(t, extra)->close_reason, "Module replaced") == 0, "orphan link not closed");
    CHECK(count_logs(t, "D gone") == gone, "on_peer_disconnected for a link the new module never knew");

    /* The new module serves the links: frames, the late open of b, and the close. */
    frame(t, la, "Eafter swap");
    CHECK(strcmp(last_frame(t, la), "Eafter swap") == 0, "link after swap \"%s\"", last_frame(t, la));
    ph_bridge_on_link_open(t->bridge, lb);
    pump(t);
    CHECK(strcmp(last_frame(t, lb), "link-up") == 0, "late open after swap \"%s\"", last_frame(t, lb));
    ph_bridge_on_close(t->bridge, la);
    CHECK(count_logs(t, "D gone") == gone + 1, "link close after swap");

    /* a is gone: the next swap's module dials it anew, after the swap succeeded. */
    CHECK(ph_bridge_swap(t->bridge, g_fixture.data, g_fixture.len, err, sizeof err) == PH_OK, "%s", err);
    CHECK(t->connects == 4 && strcmp(t->connect_urls[3], "ws://a.example/") == 0, "re-dial after swap: %d",
          t->connects);

    /* A swap that fails drops what the new module dialed and leaves the links as they were. */
    ph_bridge_on_close(t->bridge, t->connect_ids[3]);
    uint32_t links = ph_bridge_link_count(t->bridge);
    blob traps = fixture("connect_traps");
    CHECK(ph_bridge_swap(t->bridge, traps.data, traps.len, err, sizeof err) != PH_OK, "swap should fail");
    CHECK(ph_bridge_link_count(t->bridge) == links && t->connects == 4, "failed swap left links %u->%u",
          links, ph_bridge_link_count(t->bridge));
    frame(t, lb, "Estill");
    CHECK(strcmp(last_frame(t, lb), "Estill") == 0, "link after failed swap");
    free(traps.data);
    ft_free(t);
}

/* ------------------------------------------------------------------------------------------------ */

typedef struct { const char *name; void (*fn)(void); } test_case;

/* A test that hangs (a module call that never returns) fails the run instead of blocking it. */
#define TEST_TIMEOUT_SECONDS 120
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
static const char *volatile g_running;

static void on_watchdog(int sig)
{
    (void)sig;
    static const char head[] = "FAIL ";
    static const char tail[] = ": still running after " STRINGIFY(TEST_TIMEOUT_SECONDS) " s (a call that never returns?)\n";
    const char *name = g_running ? g_running : "?";
    if (write(STDOUT_FILENO, head, sizeof head - 1) < 0 || write(STDOUT_FILENO, name, strlen(name)) < 0 ||
        write(STDOUT_FILENO, tail, sizeof tail - 1) < 0) {
        /* nothing more to be done */
    }
    _exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR [HUB_WASM]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);   /* keep the log complete if a sanitizer aborts */
    g_fixtures = argv[1];
    g_hub_path = argc > 2 && argv[2][0] ? argv[2] : NULL;
    g_fixture = fixture("fixture_hub");
    if (g_hub_path) {
        g_hub = read_file(g_hub_path);
        if (!g_hub.data) {
            fprintf(stderr, "cannot read HUB_WASM=%s\n", g_hub_path);
            return 2;
        }
    }
    static const test_case tests[] = {
        { "refuses_non_wasm", test_refuses_non_wasm },
        { "refuses_truncated", test_refuses_truncated },
        { "refuses_each_broken_variant", test_refuses_each_broken_variant },
        { "refuses_module_larger_than_memory_limit", test_refuses_module_larger_than_memory_limit },
        { "accepts_fixture", test_accepts_fixture },
        { "connect_echo_url_device", test_connect_echo_url_device },
        { "ids_never_reused_and_close_once", test_ids_never_reused_and_close_once },
        { "full", test_full },
        { "oversized_frame_1009", test_oversized_frame_1009 },
        { "outbox_overflow_1013_only_slow", test_outbox_overflow_1013_only_slow },
        { "trap_closes_only_that_conn_1011", test_trap_closes_only_that_conn_1011 },
        { "budget_refuses_init_that_never_returns", test_budget_refuses_init_that_never_returns },
        { "budget_ends_runaway_on_message_1011", test_budget_ends_runaway_on_message_1011 },
        { "budget_ends_runaway_tick", test_budget_ends_runaway_tick },
        { "budget_peak_of_real_calls", test_budget_peak_of_real_calls },
        { "stack_pointer_restored_after_traps", test_stack_pointer_restored_after_traps },
        { "hostile_pointers", test_hostile_pointers },
        { "memory_limit_applies_to_host_pointers", test_memory_limit_applies_to_host_pointers },
        { "module_close_and_invalid_code", test_module_close_and_invalid_code },
        { "close_reported_inside_callback_is_deferred", test_close_reported_inside_callback_is_deferred },
        { "on_sent_from_another_thread", test_on_sent_from_another_thread },
        { "link_lifecycle", test_link_lifecycle },
        { "link_connect_failures", test_link_connect_failures },
        { "link_hostile_pointers", test_link_hostile_pointers },
        { "json_string_end_import", test_json_string_end_import },
        { "link_slots_reserved", test_link_slots_reserved },
        { "bootstrap_list", test_bootstrap_list },
        { "swap_keeps_links", test_swap_keeps_links },
        { "hub_connect_announce_relay", test_hub_connect_announce_relay },
        { "hub_oversized_1009", test_hub_oversized_1009 },
        { "hub_outbox_overflow_1013", test_hub_outbox_overflow_1013 },
        { "hub_frame_over_the_outbox_limit_reaches_an_idle_reader",
          test_hub_frame_over_the_outbox_limit_reaches_an_idle_reader },
        { "hub_trap_1011_and_stack", test_hub_trap_1011_and_stack },
        { "hub_full", test_hub_full },
        { "hub_swap_keeps_peers_silently", test_hub_swap_keeps_peers_silently },
        { "hub_swap_forgets_announce_after_goodbye", test_hub_swap_forgets_announce_after_goodbye },
        { "hub_peers_json", test_hub_peers_json },
        { "swap_refusals_leave_old_module_serving", test_swap_refusals_leave_old_module_serving },
        { "swap_new_module_refusing_a_conn_closes_it_after", test_swap_new_module_refusing_a_conn_closes_it_after },
        { "swap_50_times_no_leak", test_swap_50_times_no_leak },
    };
    int passed = 0, failed = 0, skipped = 0;
    signal(SIGALRM, on_watchdog);
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        g_failures_in_test = 0;
        g_skip_reason = NULL;
        g_running = tests[i].name;
        alarm(TEST_TIMEOUT_SECONDS);
        tests[i].fn();
        alarm(0);
        if (g_failures_in_test) {
            printf("FAIL %s\n", tests[i].name);
            failed++;
        } else if (g_skip_reason) {
            printf("SKIP %s (%s)\n", tests[i].name, g_skip_reason);
            skipped++;
        } else {
            printf("PASS %s\n", tests[i].name);
            passed++;
        }
    }
    free(g_fixture.data);
    free(g_hub.data);
    printf("bridge tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}

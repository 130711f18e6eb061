/*
 * test_module.c — native host for the hub module (the wasm/ sources built with gcc + ASan/UBSan).
 *
 * It defines the eleven imports of pigeonhub_abi.h like a bridge would, checks everything the
 * module hands out (every frame it sends must be valid JSON and valid UTF-8, close codes and
 * reasons must be the ABI's), then feeds the parser and on_message hostile input: a table of known
 * cases, then random mutations of frames captured on the wire (fixed seed, bounded loop).
 * Frames are placed at the END of the module's input buffer, so reading one byte past `len` is
 * an out-of-bounds read of a global that AddressSanitizer reports.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "ph_json_string.h"
#include "ph_port.h"

/* The module's parser used the way a test reads a document: validate, or look a member up. */
static int json_validate(const char *s, uint32_t n) { return json_scan(s, n, 0); }

typedef struct {
    const char *key;
    json_val found;
} json_get_ctx;

static void get_member(json_top *top, const json_val *key, const json_val *val)
{
    json_get_ctx *c = top->ctx;
    if (json_str_equals(key, c->key)) c->found = *val;
}

/* The LAST member named `key` of validated object text (JSON.parse keeps the last duplicate);
 * kind JV_NONE if absent. Keys are compared after decoding escapes, as JSON.parse would. */
static json_val json_get(const json_val *obj, const char *key)
{
    json_get_ctx c = {key, {0, 0, JV_NONE}};
    json_top top;
    top.each = get_member;
    top.ctx = &c;
    if (obj->kind == JV_OBJECT) json_scan(obj->p, obj->n, &top);
    return c.found;
}

static int failures;
#define CHECK(cond, ...)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);        \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            if (++failures > 20) exit(1);                                          \
        }                                                                          \
    } while (0)

/* --- the host (imports) ---------------------------------------------------------------------- */

#define MAX_CONN 64
#define NP (MAX_PEERS < 5 ? MAX_PEERS : 5)   /* peers the scenarios connect */
static const char *h_url[MAX_CONN];
static int h_open[MAX_CONN], h_closing[MAX_CONN];
static uint32_t h_now;
static int64_t h_wall = 1795721113692LL;
static unsigned long h_frames, h_closes, h_pings, h_logs;
static char h_last[MAX_MESSAGE_SIZE + 1024];
static int h_last_len, h_last_conn;

static void check_frame(const char *data, int32_t len)
{
    CHECK(len > 0 && len <= MAX_MESSAGE_SIZE + 512, "frame length %d", len);
    if (len <= 0) return;
    int rc = json_validate(data, (uint32_t)len);
    CHECK(rc == PH_JSON_OK, "module sent invalid JSON (%d): %.*s", rc, len > 300 ? 300 : len, data);
    memcpy(h_last, data, (size_t)len);
    h_last[len] = '\0';
    h_last_len = len;
}

int32_t ws_server_start(int32_t port) { return port > 0 ? 0 : -1; }
void ws_server_stop(void) {}

int32_t ws_send_to_peer(int32_t conn, const char *data, int32_t len)
{
    check_frame(data, len);
    CHECK(conn >= 0 && conn < MAX_CONN, "send to conn %d", conn);
    if (conn < 0 || conn >= MAX_CONN || !h_open[conn] || h_closing[conn]) return PH_SEND_NO_CONN;
    h_last_conn = conn;
    h_frames++;
    return PH_SEND_OK;
}

int32_t ws_broadcast(const char *data, int32_t len, int32_t exclude)
{
    check_frame(data, len);
    int32_t n = 0;
    for (int c = 0; c < MAX_CONN; c++) n += c != exclude && h_open[c] && !h_closing[c];
    h_frames += (unsigned long)n;
    return n;
}

void log_message(const char *msg, int32_t len)
{
    CHECK(len >= 2 && len < 256, "log length %d", len);
    CHECK(strchr("EWIDV", msg[0]) && msg[1] == ' ', "log level prefix: %.*s", len, msg);
    h_logs++;
}

void get_device_id(char *buf, int32_t len)
{
    snprintf(buf, (size_t)len, "%s", "24:0a:c4:12:34:56");
}

uint32_t millis(void) { return h_now; }

int32_t ws_get_request_url(int32_t conn, char *buf, int32_t len)
{
    if (conn < 0 || conn >= MAX_CONN || !h_url[conn]) return -1;
    return (int32_t)snprintf(buf, (size_t)len, "%s", h_url[conn]);   /* the bridge's contract */
}

void ws_close_peer(int32_t conn, int32_t code, const char *reason, int32_t len)
{
    CHECK(code == PH_CLOSE_GOING_AWAY || code == PH_CLOSE_POLICY, "close code %d", code);
    CHECK(len > 0 && len <= 123 && memchr(reason, 0, (size_t)len) == NULL, "close reason");
    if (conn >= 0 && conn < MAX_CONN) h_closing[conn] = 1;
    h_closes++;
}

int32_t ws_ping_peer(int32_t conn)
{
    (void)conn;
    h_pings++;
    return 0;
}

int64_t wall_clock_ms(void) { return h_wall; }

/* Hub links: bootstrap list and dials. A dialed link gets a connection id from the top of the
 * host's range; the scenarios open it (on_link_open) or fail it (on_peer_disconnected). */
#define LINK_CONN0 60
static const char *h_bootstrap[] = {"ws://127.0.0.1:3000/", "ws://hub.example:8080/x?y=1"};
static int h_bootstrap_n = 2;
static int h_link[MAX_CONN];            /* 1 dialed, 2 open */
static char h_dialed[MAX_CONN][512];
static unsigned long h_dials, h_link_frames;

int32_t ws_connect(const char *url, int32_t len)
{
    CHECK(len > 0 && len < 512, "dial URL length %d", len);
    int conn = LINK_CONN0;
    while (conn < MAX_CONN && (h_open[conn] || h_link[conn])) conn++;   /* ids are reused */
    if (len <= 0 || len >= 512 || conn >= MAX_CONN) return -1;
    h_link[conn] = 1;
    memcpy(h_dialed[conn], url, (size_t)len);
    h_dialed[conn][len] = '\0';
    CHECK(strstr(h_dialed[conn], "peerId=") != NULL, "dial URL without peerId: %s", h_dialed[conn]);
    h_open[conn] = 1;
    h_closing[conn] = 0;
    h_dials++;
    return conn;
}

int32_t get_bootstrap_hub(int32_t index, char *buf, int32_t len)
{
    if (index < 0 || index >= h_bootstrap_n) return -1;
    return (int32_t)snprintf(buf, (size_t)len, "%s", h_bootstrap[index]);
}

/* The bridge's own implementations (lib/pigeonhub_bridge), as on every real host. */
int32_t json_string_end(const char *text, int32_t len)
{
    return ph_json_string_end((const uint8_t *)text, (uint32_t)len);
}

int32_t json_value_end(const char *text, int32_t len)
{
    return ph_json_value_end((const uint8_t *)text, (uint32_t)len);
}

/* --- driving the module ---------------------------------------------------------------------- */

static void host_connect(int conn, const char *url)
{
    h_url[conn] = url;
    h_open[conn] = 1;
    h_closing[conn] = 0;
    on_peer_connected(conn);
}

static void host_disconnect(int conn)
{
    if (!h_open[conn]) return;
    h_open[conn] = 0;
    h_link[conn] = 0;
    h_closing[conn] = 0;
    on_peer_disconnected(conn);
}

/* Copy to the end of the input buffer (see the file comment) and deliver. */
static void deliver(int conn, const char *data, size_t len)
{
    char *in = get_input_buffer();
    size_t cap = (size_t)get_input_buffer_size();
    if (len > cap) len = cap;   /* the bridge would close 1009 instead */
    memcpy(in + cap - len, data, len);
    on_message(conn, in + cap - len, (int32_t)len);
}

static void deliver_str(int conn, const char *s) { deliver(conn, s, strlen(s)); }

static int pong_after(int conn)
{
    unsigned long before = h_frames;
    deliver_str(conn, "{\"type\":\"ping\"}");
    return h_frames == before + 1 && h_last_conn == conn && strncmp(h_last, "{\"type\":\"pong\"", 14) == 0;
}

static const char *ID[] = {
    "/?peerId=f335b63e0123456789abcdef0123456789abccf8",
    "/?peerId=49702745aaaaaaaaaaaaaaaaaaaaaaaaaaaaaf04",
    "?peerId=8781bee0bbbbbbbbbbbbbbbbbbbbbbbbbbbbb3ef",
    "/x/y?a=1&peerId=883f96a5ccccccccccccccccccccccccccccc44d",
    "/?peerId=dd8dda08dddddddddddddddddddddddddddddf51",
};

/* Frames as captured on the wire (docs/PROTOCOL.md §2), client -> server. */
static const char *CORPUS[] = {
    "{\"type\":\"announce\",\"data\":{\"peerId\":\"f335b63e0123456789abcdef0123456789abccf8\"},\"maxPeers\":3,\"networkName\":\"demo\"}",
    "{\"type\":\"announce\",\"networkName\":\"pigeonhub-mesh\",\"data\":{\"isHub\":true,\"port\":39202,\"host\":\"127.0.0.1\",\"capabilities\":[\"signaling\",\"relay\"],\"timestamp\":1795721149153}}",
    "{\"type\":\"offer\",\"data\":{\"type\":\"offer\",\"sdp\":\"v=0\\r\\no=- 3445100876973446344 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\na=group:BUNDLE 0 1 2\\r\\n\"},\"maxPeers\":3,\"networkName\":\"demo\",\"targetPeerId\":\"49702745aaaaaaaaaaaaaaaaaaaaaaaaaaaaaf04\"}",
    "{\"type\":\"ice-candidate\",\"data\":{\"candidate\":\"candidate:3077952869 1 udp 2122265344 fd00::2 45500 typ host generation 0 ufrag wwwZ network-id 2\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0,\"usernameFragment\":\"wwwZ\"},\"maxPeers\":3,\"networkName\":\"demo\",\"targetPeerId\":\"f335b63e0123456789abcdef0123456789abccf8\"}",
    "{\"type\":\"answer\",\"data\":{\"type\":\"answer\",\"sdp\":\"v=0\\r\\n\"},\"networkName\":\"demo\",\"targetPeerId\":\"f335b63e0123456789abcdef0123456789abccf8\"}",
    "{\"type\":\"goodbye\",\"data\":{\"peerId\":\"f335b63e0123456789abcdef0123456789abccf8\",\"timestamp\":1795721123690},\"maxPeers\":3,\"networkName\":\"demo\"}",
    "{\"type\":\"goodbye\",\"data\":{\"peerId\":\"49702745aaaaaaaaaaaaaaaaaaaaaaaaaaaaaf04\",\"timestamp\":1795721123690,\"reason\":\"peer_disconnect\"}}",
    "{\"type\":\"connection-rejected\",\"data\":{\"reason\":\"max_peers_reached\"},\"networkName\":\"demo\",\"targetPeerId\":\"49702745aaaaaaaaaaaaaaaaaaaaaaaaaaaaaf04\"}",
    "{\"type\":\"peer-discovered\",\"data\":{\"peerId\":\"319dd499eeeeeeeeeeeeeeeeeeeeeeeeeeeeea7f\",\"isHub\":false},\"networkName\":\"demo\",\"fromPeerId\":\"system\",\"timestamp\":1795721212736}",
    "{\"type\":\"ping\",\"data\":{\"peerId\":\"f335b63e0123456789abcdef0123456789abccf8\"}}",
    "{\"type\":\"cleanup\",\"data\":{}}",
    "{\"type\":\"renegotiation-offer\",\"data\":{\"sdp\":\"\\u00e9\\ud83d\\ude00 \xc3\xa9 \xf0\x9f\x98\x80\"},\"targetPeerId\":\"8781bee0bbbbbbbbbbbbbbbbbbbbbbbbbbbbb3ef\"}",
    "{\"type\":\"unknown-\xe2\x82\xac\\\"\\u0000\",\"data\":[1,-2.5e+10,true,false,null]}",
    /* what hubs send on hub connections (docs/PROTOCOL.md §7) */
    "{\"type\":\"peer-disconnected\",\"data\":{\"peerId\":\"319dd499eeeeeeeeeeeeeeeeeeeeeeeeeeeeea7f\",\"isHub\":false,\"reason\":\"Client disconnect\",\"timestamp\":1795721040011},\"fromPeerId\":\"system\",\"timestamp\":1795721040011}",
    "{\"type\":\"offer\",\"data\":{\"type\":\"offer\",\"sdp\":\"v=0\\r\\n\"},\"fromPeerId\":\"319dd499eeeeeeeeeeeeeeeeeeeeeeeeeeeeea7f\",\"targetPeerId\":\"f335b63e0123456789abcdef0123456789abccf8\",\"networkName\":\"demo\",\"timestamp\":1795721114727}",
    "{\"type\":\"answer\",\"data\":{\"sdp\":\"x\"},\"fromPeerId\":\"319dd499eeeeeeeeeeeeeeeeeeeeeeeeeeeeea7f\",\"targetPeerId\":\"aaaa0000eeeeeeeeeeeeeeeeeeeeeeeeeeeeea7f\",\"networkName\":\"demo\"}",
    "{\"type\":\"offer\",\"data\":{},\"fromPeerId\":\"319dd499eeeeeeeeeeeeeeeeeeeeeeeeeeeeea7f\",\"targetPeerId\":\"4610c1e4eeeeeeeeeeeeeeeeeeeeeeeeeeeeeb1e\",\"networkName\":\"pigeonhub-mesh\"}",
    "{\"type\":\"peer-discovered\",\"data\":{\"peerId\":\"4610c1e4eeeeeeeeeeeeeeeeeeeeeeeeeeeeeb1e\",\"isHub\":true},\"networkName\":\"pigeonhub-mesh\",\"fromPeerId\":\"system\",\"timestamp\":1795721149153}",
    "{\"type\":\"connected\",\"data\":{\"peerId\":\"f335b63e0123456789abcdef0123456789abccf8\"},\"fromPeerId\":\"system\",\"timestamp\":1795721113692}",
    "{\"type\":\"pong\",\"data\":{\"timestamp\":1795721039408},\"fromPeerId\":\"system\",\"timestamp\":1795721039408}",
};
#define NCORPUS (sizeof CORPUS / sizeof CORPUS[0])

/* --- an independent lookup, the oracle for json_scan's member spans ------------------------------ */

/* A second, simple reader of validated text (the module's own earlier design): json_scan's
 * recorded spans and json_get (which uses json_scan) must agree with it. */
static int o_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static const char *o_skip(const char *p, const char *end)
{
    if (*p == '"') {
        p++;
        while (*p != '"') p += (*p == '\\') ? 2 : 1;
        return p + 1;
    }
    if (*p == '{' || *p == '[') {
        unsigned depth = 0;
        while (p < end) {
            char c = *p;
            if (c == '"') {
                p = o_skip(p, end);
                continue;
            }
            if (c == '{' || c == '[') depth++;
            if ((c == '}' || c == ']') && --depth == 0) return p + 1;
            p++;
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && !o_ws(*p)) p++;
    return p;
}

static json_val oracle_get(const json_val *obj, const char *key)
{
    json_val found = {0, 0, JV_NONE};
    const char *p = obj->p, *end = obj->p + obj->n;
    while (p < end && *p != '{') p++;
    p++;
    for (;;) {
        while (p < end && (o_ws(*p) || *p == ',')) p++;
        if (p >= end || *p != '"') return found;
        json_val k = {p, 0, JV_STRING};
        p = o_skip(p, end);
        k.n = (uint32_t)(p - k.p);
        while (p < end && (o_ws(*p) || *p == ':')) p++;
        json_val v = {p, 0, JV_NONE};
        char c = *p;
        v.kind = c == '"' ? JV_STRING : c == '{' ? JV_OBJECT : c == '[' ? JV_ARRAY : c == 't' ? JV_TRUE
               : c == 'f' ? JV_FALSE : c == 'n' ? JV_NULL : JV_NUMBER;
        p = o_skip(p, end);
        v.n = (uint32_t)(p - v.p);
        if (json_str_equals(&k, key)) found = v;
    }
}

/* --- tests ---------------------------------------------------------------------------------- */

static void test_json_table(void)
{
    static const struct { const char *s; int rc; } cases[] = {
        {"{}", PH_JSON_OK}, {" {\"a\" : [ 1 , {\"b\":null} ] } \n", PH_JSON_OK},
        {"{\"a\":\"\\u0000\\ud800\\\"\\\\\\/\\b\\f\\n\\r\\t\"}", PH_JSON_OK},
        {"{\"n\":[0,-0,1.5,-1e10,1E+2,2e-3,123456789012345678901234567890e999999]}", PH_JSON_OK},
        {"[]", PH_JSON_NOT_OBJECT}, {"\"x\"", PH_JSON_NOT_OBJECT}, {"1", PH_JSON_NOT_OBJECT},
        {"null", PH_JSON_NOT_OBJECT}, {"", PH_JSON_SYNTAX}, {" ", PH_JSON_SYNTAX},
        {"{", PH_JSON_SYNTAX}, {"{\"a\"", PH_JSON_SYNTAX}, {"{\"a\":", PH_JSON_SYNTAX},
        {"{\"a\":1", PH_JSON_SYNTAX}, {"{\"a\":1,}", PH_JSON_SYNTAX}, {"{,}", PH_JSON_SYNTAX},
        {"{\"a\":[1,]}", PH_JSON_SYNTAX}, {"{\"a\":01}", PH_JSON_SYNTAX}, {"{\"a\":1.}", PH_JSON_SYNTAX},
        {"{\"a\":.5}", PH_JSON_SYNTAX}, {"{\"a\":-}", PH_JSON_SYNTAX}, {"{\"a\":1e}", PH_JSON_SYNTAX},
        {"{\"a\":+1}", PH_JSON_SYNTAX}, {"{\"a\":tru}", PH_JSON_SYNTAX}, {"{\"a\":nul}", PH_JSON_SYNTAX},
        {"{\"a\":\"\\x\"}", PH_JSON_SYNTAX}, {"{\"a\":\"\\u12\"}", PH_JSON_SYNTAX},
        {"{\"a\":\"\t\"}", PH_JSON_SYNTAX}, {"{\"a\":1}}", PH_JSON_SYNTAX}, {"{\"a\":1} 2", PH_JSON_SYNTAX},
        {"{'a':1}", PH_JSON_SYNTAX}, {"{a:1}", PH_JSON_SYNTAX}, {"{\"a\" 1}", PH_JSON_SYNTAX},
        {"{\"a\":[}", PH_JSON_SYNTAX}, {"{\"a\":]}", PH_JSON_SYNTAX}, {"{\"a\":\"x}", PH_JSON_SYNTAX},
        {"{\"a\":\"\xff\"}", PH_JSON_UTF8}, {"{\"a\":\"\xc0\x80\"}", PH_JSON_UTF8},
        {"{\"a\":\"\xed\xa0\x80\"}", PH_JSON_UTF8}, {"{\"a\":\"\xf4\x90\x80\x80\"}", PH_JSON_UTF8},
        {"{\"a\":\"\xe2\x82\"}", PH_JSON_UTF8}, {"{\"a\":\"\x80\"}", PH_JSON_UTF8},
        {"{\"a\":\"\xf0\x9f\x98\"}", PH_JSON_UTF8}, {"{\"\xfe\":1}", PH_JSON_UTF8},
        {"{\"a\":\"\xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}", PH_JSON_OK},
        {"\xef\xbb\xbf{}", PH_JSON_SYNTAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = json_validate(cases[i].s, (uint32_t)strlen(cases[i].s));
        CHECK(rc == cases[i].rc, "case %zu '%s': got %d want %d", i, cases[i].s, rc, cases[i].rc);
    }
    /* Embedded NUL outside a string, and \u0000 inside one. */
    CHECK(json_validate("{\"a\":1}\0", 8) == PH_JSON_SYNTAX, "trailing NUL");
    /* Depth: 32 levels pass, 33 do not, 6000 cost nothing (iterative). */
    char deep[12100];
    for (int depth = 31; depth <= 32; depth++) {
        size_t n = 0;
        n += (size_t)sprintf(deep, "{\"a\":");
        for (int i = 0; i < depth; i++) deep[n++] = '[';
        for (int i = 0; i < depth; i++) deep[n++] = ']';
        deep[n++] = '}';
        int rc = json_validate(deep, (uint32_t)n);
        CHECK(rc == (depth == 31 ? PH_JSON_OK : PH_JSON_DEPTH), "depth %d -> %d", depth + 1, rc);
    }
    memset(deep, '[', 6000);
    CHECK(json_validate(deep, 6000) == PH_JSON_NOT_OBJECT || json_validate(deep, 6000) == PH_JSON_DEPTH,
          "deep array");
}

static void test_json_lookup(void)
{
    const char *s = "{ \"type\" : \"a\", \"t\\u0079pe\":\"b\\\"c\", \"data\":{\"x\":[1,{\"y\":\"}\"}]},\"z\":-1e5 }";
    CHECK(json_validate(s, (uint32_t)strlen(s)) == PH_JSON_OK, "lookup doc");
    json_val doc = {s, (uint32_t)strlen(s), JV_OBJECT};
    json_val type = json_get(&doc, "type");   /* the last duplicate, escaped key */
    CHECK(type.kind == JV_STRING && type.n == 6 && memcmp(type.p, "\"b\\\"c\"", 6) == 0, "last dup");
    CHECK(json_str_equals(&type, "b\"c"), "decoded compare");
    json_val data = json_get(&doc, "data");
    CHECK(data.kind == JV_OBJECT && data.n == strlen("{\"x\":[1,{\"y\":\"}\"}]}"), "object span");
    json_val z = json_get(&doc, "z");
    CHECK(z.kind == JV_NUMBER && z.n == 4, "number span");
    CHECK(json_get(&doc, "missing").kind == JV_NONE, "missing key");
    json_val nul = {"\"a\\u0000\"", 9, JV_STRING};
    CHECK(!json_str_equals(&nul, "a"), "\\u0000 never equals a shorter literal");
    CHECK(json_safe_prefix("ab\\u00e9cd", 10, 4) == 2, "escape not split");
    CHECK(json_safe_prefix("a\xe2\x82\xac", 4, 3) == 1, "utf-8 not split");
    CHECK(json_safe_prefix("a\\\"b", 4, 2) == 1, "two-byte escape not split");
}

static void test_protocol_smoke(void)
{
    CHECK(init() == 0, "init");
    CHECK(strlen(get_hub_id()) == 40, "hub id");
    CHECK(start_server(3000) == 0 && is_running() == 1, "start");
    for (int c = 0; c < NP; c++) host_connect(c, ID[c]);
    CHECK(get_peer_count() == NP, "%d peers: %d", NP, get_peer_count());
    host_connect(5, "/?peerId=zz");
    CHECK(h_closing[5], "invalid id closed");
    host_disconnect(5);
    if (NP < 5) {   /* the small build: one more is over capacity */
        host_connect(NP, ID[NP]);
        CHECK(h_closing[NP], "over capacity closed");
        host_disconnect(NP);
    }
    unsigned long before = h_frames;
    deliver_str(0, CORPUS[0]);
    deliver_str(1, "{\"type\":\"announce\",\"networkName\":\"demo\",\"data\":{}}");
    CHECK(h_frames == before + 2, "two discoveries: %lu", h_frames - before);
    before = h_frames;
    deliver_str(1, "{\"type\":\"offer\",\"data\":{\"sdp\":\"x\"},\"networkName\":\"demo\",\"targetPeerId\":\"f335b63e0123456789abcdef0123456789abccf8\"}");
    CHECK(h_frames == before + 1 && h_last_conn == 0, "relayed");
    CHECK(strstr(h_last, "\"fromPeerId\":\"49702745aaaaaaaaaaaaaaaaaaaaaaaaaaaaaf04\"") != NULL, "%s", h_last);
    CHECK(pong_after(2), "pong");
    char stats[1024];
    get_stats(stats, sizeof stats);
    CHECK(json_validate(stats, (uint32_t)strlen(stats)) == PH_JSON_OK, "stats JSON: %s", stats);
    for (int size = 1; size < 40; size++) {
        memset(stats, 'Z', sizeof stats);
        get_stats(stats, size);
        CHECK(stats[0] == '\0' && stats[size] == 'Z', "small stats buffer %d", size);
    }
    stop_server();
    for (int c = 0; c < NP; c++) host_disconnect(c);
    CHECK(get_peer_count() == 0 && is_running() == 0, "stopped");
}

/* Known-hostile frames: none may crash, and the connection must keep working. */
static void test_hostile_cases(void)
{
    init();
    host_connect(0, ID[0]);
    host_connect(1, ID[1]);
    deliver_str(0, CORPUS[0]);
    static char big[MAX_MESSAGE_SIZE + 8];
    const size_t cap = (size_t)get_input_buffer_size();

    /* every prefix of every captured frame (truncation) */
    for (size_t f = 0; f < NCORPUS; f++) {
        for (size_t n = 0; n < strlen(CORPUS[f]); n++) deliver(1, CORPUS[f], n);
    }
    CHECK(pong_after(1), "after truncations");

    /* nesting as deep as the buffer allows, objects and arrays */
    size_t n = (size_t)sprintf(big, "{\"type\":\"offer\",\"targetPeerId\":\"f335b63e0123456789abcdef0123456789abccf8\",\"data\":");
    while (n < cap - 1) big[n++] = '[';
    deliver(1, big, n);
    for (size_t i = 0; i + 5 < cap; i += 5) memcpy(big + i, "{\"a\":", 5);
    deliver(1, big, cap);
    CHECK(pong_after(1), "after deep nesting");

    /* huge numbers and long strings fill the whole buffer */
    n = (size_t)sprintf(big, "{\"type\":\"ping\",\"n\":-");
    while (n < cap - 8) big[n++] = '9';
    n += (size_t)sprintf(big + n, "e-99999}");
    deliver(1, big, n);
    CHECK(h_last_len > 0 && strncmp(h_last, "{\"type\":\"pong\"", 14) == 0, "huge number is still JSON");

    /* unknown type of maximum length made of escapes and multi-byte characters */
    n = (size_t)sprintf(big, "{\"type\":\"");
    while (n < cap - 20) n += (size_t)sprintf(big + n, (n % 3) ? "\\ud83d" : "\xe2\x82\xac");
    n += (size_t)sprintf(big + n, "\"}");
    deliver(1, big, n);
    CHECK(strncmp(h_last, "{\"type\":\"error\"", 15) == 0, "error frame: %.60s", h_last);

    static const char *cases[] = {
        "{\"type\":\"offer\"}", "{\"type\":\"offer\",\"targetPeerId\":null}",
        "{\"type\":\"offer\",\"targetPeerId\":\"\"}", "{\"type\":\"offer\",\"targetPeerId\":{}}",
        "{\"type\":\"offer\",\"targetPeerId\":\"f335b63e0123456789abcdef0123456789abccf8\",\"networkName\":[\"demo\"]}",
        "{\"type\":\"announce\",\"networkName\":{\"a\":1}}", "{\"type\":\"announce\",\"data\":null}",
        "{\"type\":\"announce\",\"networkName\":\"\\u0000\\ud800\"}",
        "{\"type\":\"goodbye\",\"data\":\"\\u0000\"}", "{\"type\":\"peer-discovered\",\"data\":{}}",
        "{\"type\":\"\"}", "{\"type\":\"\\u0000\"}", "{\"type\":\"\\ud800\"}", "{\"\":\"\"}",
        "{\"type\":\"ping\",\"type\":5}", "{\"type\":\"ping\"}\0", "\0\0\0", "{\"type\":\"ping\"\xff}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) deliver_str(1, cases[i]);
    deliver(1, "{\"type\":\"ping\"}\0", 16);
    CHECK(pong_after(1), "after field cases");
    CHECK(pong_after(0), "sender 0 too");
    host_disconnect(0);
    host_disconnect(1);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;   /* fixed seed: failures reproduce */
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static void test_mutations(long iterations)
{
    static const char interesting[] = "{}[]\":,\\u0\xff\xc3\xa9\xed\xa0\x80\xf0\x9f-+.eE0 \t\n";
    static char buf[MAX_MESSAGE_SIZE];
    const size_t cap = (size_t)get_input_buffer_size();
    init();
    CHECK(start_server(3000) == 0, "start with links");
    for (int c = LINK_CONN0; c < MAX_CONN; c++) {
        if (h_link[c] == 1) { h_link[c] = 2; on_link_open(c); }
    }
    for (int c = 0; c < NP; c++) host_connect(c, ID[c]);
    deliver_str(1, "{\"type\":\"announce\",\"networkName\":\"pigeonhub-mesh\",\"data\":{\"isHub\":true}}");
    for (long it = 0; it < iterations; it++) {
        const char *src = CORPUS[rnd() % NCORPUS];
        size_t n = strlen(src);
        if (n > cap) n = cap;
        memcpy(buf, src, n);
        int edits = 1 + (int)(rnd() % 8);
        for (int e = 0; e < edits && n > 0; e++) {
            size_t at = rnd() % n;
            switch (rnd() % 6) {
            case 0: buf[at] = (char)rnd(); break;                                  /* random byte  */
            case 1: buf[at] = interesting[rnd() % (sizeof interesting - 1)]; break; /* JSON-ish    */
            case 2: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;       /* delete       */
            case 3: if (n < cap) { memmove(buf + at + 1, buf + at, n - at); n++;   /* insert       */
                        buf[at] = interesting[rnd() % (sizeof interesting - 1)]; } break;
            case 4: n = at; break;                                                 /* truncate     */
            default: { size_t len = 1 + rnd() % 32;                                /* duplicate    */
                if (at + len <= n && n + len <= cap) {
                    memmove(buf + at + len, buf + at, n - at);
                    n += len;
                } } break;
            }
        }
        /* Also parse an exact-size heap copy: a read past `n` hits ASan's redzone. */
        char *exact = malloc(n ? n : 1);
        memcpy(exact, buf, n);
        json_top top = {0};
        int rc = json_scan(exact, (uint32_t)n, &top);
        CHECK(rc == json_validate(exact, (uint32_t)n), "json_scan and json_validate disagree");
        if (rc == PH_JSON_OK) {
            json_val doc = {exact, (uint32_t)n, JV_OBJECT};
            json_val t = oracle_get(&doc, "type");
            if (t.kind == JV_STRING) (void)json_safe_prefix(json_str_p(&t), json_str_n(&t), 64);
            /* the one-pass capture must find exactly what a separate lookup finds */
            static const char *const names[] = {"type", "data", "networkName", "targetPeerId",
                                                "fromPeerId", "peerId", "isHub"};
            for (int k = 0; k < 7; k++) {
                json_val want = oracle_get(&doc, names[k]), got = (&top.type)[k], get = json_get(&doc, names[k]);
                CHECK(want.kind == got.kind && want.n == got.n && want.p == got.p,
                      "json_scan span of %s differs from the oracle", names[k]);
                CHECK(get.kind == want.kind && get.n == want.n && get.p == want.p, "json_get %s", names[k]);
            }
            json_val d = top.data;   /* a nested object scanned again, as the hub does with data */
            if (d.kind == JV_OBJECT) {
                json_top sub = {0};
                CHECK(json_scan(d.p, d.n, &sub) == PH_JSON_OK, "data object rescans");
                json_val want = oracle_get(&d, "peerId");
                CHECK(want.p == sub.peerId.p && want.n == sub.peerId.n, "data.peerId span");
            }
        }
        free(exact);

        /* clients, a connection never accepted (NP), and hub links (their ids from LINK_CONN0) */
        int conn = (int)(rnd() % (NP + 3));
        if (conn > NP) conn = LINK_CONN0 + (int)(rnd() % (MAX_CONN - LINK_CONN0));
        if (conn >= LINK_CONN0) h_link_frames += h_link[conn] == 2;
        deliver(conn, buf, n);
        int link = LINK_CONN0 + (int)(rnd() % (MAX_CONN - LINK_CONN0));
        switch (rnd() % 64) {               /* churn: reconnects, time, heartbeats, links */
        case 0: host_disconnect(conn % NP); host_connect(conn % NP, ID[conn % NP]); break;
        case 1: h_now += rnd() % 40000; loop(); break;
        case 2: on_pong(conn); break;
        case 3: { char s[2048]; get_stats(s, (int32_t)(1 + rnd() % sizeof s)); } break;
        case 4: host_disconnect(link); break;                                   /* a link drops */
        case 5: if (h_link[link] == 1) { h_link[link] = 2; on_link_open(link); } break;
        case 6: on_link_open(link); break;                                      /* a stray report */
        case 7: if (rnd() % 8 == 0) { stop_server(); start_server(3000); } break;
        default: break;
        }
        for (int c = 0; c < NP; c++) {      /* a peer the hub closed comes back */
            if (h_closing[c]) { host_disconnect(c); host_connect(c, ID[c]); }
        }
        for (int c = LINK_CONN0; c < MAX_CONN; c++) {   /* a link the hub closed goes away */
            if (h_closing[c]) host_disconnect(c);
        }
    }
    for (int c = 0; c < NP; c++) CHECK(pong_after(c), "conn %d after fuzzing", c);
    char stats[2048];
    get_stats(stats, sizeof stats);
    CHECK(json_validate(stats, (uint32_t)strlen(stats)) == PH_JSON_OK, "stats after fuzzing: %s", stats);
    CHECK(h_dials > 2 && h_link_frames > 100, "links exercised: %lu dials, %lu frames", h_dials,
          h_link_frames);
    printf("mutations: %ld frames (%lu on open links), %lu sent, %lu closes, %lu pings, %lu dials, "
           "%lu log lines\n", iterations, h_link_frames, h_frames, h_closes, h_pings, h_dials, h_logs);
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 200000;
    test_json_table();
    test_json_lookup();
    test_protocol_smoke();
    test_hostile_cases();
    test_mutations(iterations);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("native module tests passed (MAX_PEERS=%d, MAX_MESSAGE_SIZE=%d)\n", MAX_PEERS, MAX_MESSAGE_SIZE);
    return 0;
}

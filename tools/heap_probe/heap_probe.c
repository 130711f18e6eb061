/*
 * heap_probe.c — device figures of the hub that do not depend on machine noise.
 *
 * Runs hub.wasm in WASM3 through the real bridge core (lib/pigeonhub_bridge) with an in-memory
 * transport, and counts the heap WASM3 and the bridge ask for. Built with `gcc -m32` so pointers,
 * size_t and WASM3's structures have the ESP32's 4-byte layout. Instruction counts come from running
 * this program under `valgrind --tool=callgrind` (src/pigeonhub/bench/device.py does both).
 *
 *   heap_probe HUB.WASM [--peers N] [--relay offer|ice --count K] [--memory-limit BYTES]
 *              [--wasm-stack BYTES] [--verbose] [--trace]
 *
 * The bridge runs with PH_BRIDGE_CONFIG_DEFAULT (what the firmware's Kconfig defaults match) unless
 * --memory-limit / --wasm-stack change it.
 *
 * Prints key=value lines (heap.*, relay.*). Exit status 0, or 1 with an "E (probe) ..." line when
 * the module fails to load, a peer is refused or a relayed frame does not arrive.
 *
 * Heap accounting: the link wraps malloc/calloc/realloc/free (-Wl,--wrap=...), so every allocation
 * made by WASM3 (it allocates through calloc/realloc/free in m3_core.c) and by the bridge core is
 * counted with its requested size. The module bytes are not counted: the firmware maps them from
 * flash. Allocator overhead per block (about 8-16 bytes in ESP-IDF's heap) is not included; the
 * number of live blocks is printed so it can be estimated.
 *
 * Build (what src/pigeonhub/bench/device.py runs):
 *   gcc -m32 -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Ilib/wasm3/src -Ilib/pigeonhub_bridge/src
 *       -Iwasm tools/heap_probe/heap_probe.c <lib/pigeonhub_bridge/src C files> <lib/wasm3/src C files>
 *       -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free -lm -o heap_probe
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ph_bridge.h"

/* ---- counting allocator ------------------------------------------------------------------------ */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *ptr, size_t size);
void __real_free(void *ptr);

/* Each block carries its requested size in a header; 16 bytes keep the caller's pointer aligned as
 * malloc's own result is (max_align_t is 16 bytes on i386 glibc). */
#define HDR 16u

static size_t heap_current, heap_peak, heap_blocks;
static int trace_allocations; /* --trace: print every block of 1 KiB or more (what uses the heap) */

static void *account(unsigned char *raw, size_t size)
{
    if (raw == NULL) {
        return NULL;
    }
    memcpy(raw, &size, sizeof size);
    if (trace_allocations && size >= 1024) {
        fprintf(stderr, "D (probe) block of %zu bytes (%zu current before)\n", size, heap_current);
    }
    heap_current += size;
    heap_blocks++;
    if (heap_current > heap_peak) {
        heap_peak = heap_current;
    }
    return raw + HDR;
}

static size_t unaccount(void *ptr)
{
    size_t size;
    memcpy(&size, (unsigned char *)ptr - HDR, sizeof size);
    heap_current -= size;
    heap_blocks--;
    return size;
}

void *__wrap_malloc(size_t size)
{
    return account(__real_malloc(size + HDR), size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (size != 0 && n > (SIZE_MAX - HDR) / size) {
        errno = ENOMEM;
        return NULL;
    }
    unsigned char *raw = __real_calloc(1, n * size + HDR);
    return account(raw, n * size);
}

void __wrap_free(void *ptr)
{
    if (ptr != NULL) {
        unaccount(ptr);
        __real_free((unsigned char *)ptr - HDR);
    }
}

void *__wrap_realloc(void *ptr, size_t size)
{
    if (ptr == NULL) {
        return __wrap_malloc(size);
    }
    size_t old = unaccount(ptr);
    unsigned char *raw = __real_realloc((unsigned char *)ptr - HDR, size + HDR);
    if (raw == NULL) {
        /* the old block is still live: count it again */
        heap_current += old;
        heap_blocks++;
        return NULL;
    }
    return account(raw, size);
}

/* ---- in-memory transport ----------------------------------------------------------------------- */

#define PROBE_MAX_CONNS 64

typedef struct {
    uint32_t frames[PROBE_MAX_CONNS];   /* frames the hub sent to each connection           */
    uint64_t bytes[PROBE_MAX_CONNS];
    size_t unsent[PROBE_MAX_CONNS];     /* bytes to acknowledge with ph_bridge_on_sent      */
    int closed[PROBE_MAX_CONNS];        /* close code the hub asked for, 0 = open           */
    char last[PROBE_MAX_CONNS][200];    /* start of the last frame, for error messages      */
    int verbose;
} probe_transport;

static probe_transport T;

/* Only O(1) work per frame here, so the instruction counts measure the bridge and the module. */
static int t_send(void *ctx, int32_t conn, const uint8_t *frame, size_t len)
{
    (void)ctx;
    if (conn < 0 || conn >= PROBE_MAX_CONNS || T.closed[conn]) {
        return -1;
    }
    T.frames[conn]++;
    T.bytes[conn] += len;
    T.unsent[conn] += len;
    size_t n = len < sizeof T.last[0] - 1 ? len : sizeof T.last[0] - 1;
    memcpy(T.last[conn], frame, n);
    T.last[conn][n] = '\0';
    return 0;
}

static void t_close(void *ctx, int32_t conn, uint16_t code, const char *reason, size_t reason_len)
{
    (void)ctx;
    if (conn >= 0 && conn < PROBE_MAX_CONNS) {
        T.closed[conn] = code ? code : 1005;
    }
    fprintf(stderr, "W (probe) hub closes conn %d: %u %.*s\n", (int)conn, code, (int)reason_len,
            reason);
}

static int t_ping(void *ctx, int32_t conn)
{
    (void)ctx;
    (void)conn;
    return 0;
}

static void t_log(void *ctx, char level, const char *msg, size_t len)
{
    (void)ctx;
    if (T.verbose || level == 'E') {
        fprintf(stderr, "%c (hub) %.*s\n", level, (int)len, msg);
    }
}

static uint32_t t_millis(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)(ts.tv_sec * 1000u + ts.tv_nsec / 1000000u);
}

static int64_t t_wall(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void t_device_id(void *ctx, char *buf, size_t cap)
{
    (void)ctx;
    snprintf(buf, cap, "24:0a:c4:00:be:7c");
}

/* A real socket layer acknowledges sent bytes after the write completes, i.e. outside the
 * bridge call that queued them; do the same after every call. */
static void flush_sent(ph_bridge *bridge)
{
    for (int c = 0; c < PROBE_MAX_CONNS; c++) {
        if (T.unsent[c]) {
            size_t n = T.unsent[c];
            T.unsent[c] = 0;
            ph_bridge_on_sent(bridge, c, n);
        }
    }
}

/* ---- frames (same shapes as src/pigeonhub/bench/load.py: docs/PROTOCOL.md §5) ------------------ */

static char *frame_buf;

static size_t make_offer(char *out, size_t cap, unsigned seq, const char *target)
{
    /* SDP of the size Node/Chrome WebRTC produce (audio + video + data channel, about 4.5 KB of
     * frame): fixed head, then video codec blocks until the target size. */
    static const char head[] =
        "v=0\\r\\no=- %u 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\na=group:BUNDLE 0 1 2\\r\\n"
        "a=extmap-allow-mixed\\r\\na=msid-semantic: WMS\\r\\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\\r\\nc=IN IP4 0.0.0.0\\r\\n"
        "a=rtcp:9 IN IP4 0.0.0.0\\r\\na=ice-ufrag:wwwZ\\r\\na=ice-pwd:Ntj0dvu4WFg8zIRYpCmnyt3Y\\r\\n"
        "a=ice-options:trickle\\r\\na=fingerprint:sha-256 6B:8B:5E:3A:13:6E:04:4F:B0:9C:C8:B1:"
        "5B:8C:29:E9:2B:0A:11:4D:3C:0B:77:8E:AF:75:F2:5F:3E:21:F7:9A\\r\\na=setup:actpass\\r\\n"
        "a=mid:0\\r\\na=rtcp-mux\\r\\na=rtpmap:111 opus/48000/2\\r\\na=fmtp:111 minptime=10;"
        "useinbandfec=1\\r\\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103\\r\\n"
        "c=IN IP4 0.0.0.0\\r\\na=mid:1\\r\\na=sendrecv\\r\\na=rtcp-mux\\r\\na=rtcp-rsize\\r\\n";
    static const char codec[] =
        "a=rtpmap:%d VP8/90000\\r\\na=rtcp-fb:%d goog-remb\\r\\na=rtcp-fb:%d transport-cc\\r\\n"
        "a=rtcp-fb:%d ccm fir\\r\\na=rtcp-fb:%d nack\\r\\na=rtcp-fb:%d nack pli\\r\\n"
        "a=rtpmap:%d rtx/90000\\r\\na=fmtp:%d apt=%d\\r\\n";
    static const char tail[] =
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\\r\\nc=IN IP4 0.0.0.0\\r\\na=mid:2\\r\\n"
        "a=sctp-port:5000\\r\\na=max-message-size:262144\\r\\n\"},\"maxPeers\":3,"
        "\"networkName\":\"bench\",\"targetPeerId\":\"%s\"}";
    size_t n = (size_t)snprintf(out, cap, "{\"type\":\"offer\",\"data\":{\"type\":\"offer\",\"sdp\":\"");
    n += (size_t)snprintf(out + n, cap - n, head, seq);
    const size_t tail_len = sizeof tail - 1 - 2 + strlen(target);
    for (int pt = 96; n + 260 + tail_len < 4500 && n < cap; pt += 2) {
        n += (size_t)snprintf(out + n, cap - n, codec, pt, pt, pt, pt, pt, pt, pt + 1, pt + 1, pt);
    }
    /* top up to 4500 bytes with the video track's cname line */
    n += (size_t)snprintf(out + n, cap - n, "a=ssrc:2002 cname:");
    while (n + 4 + tail_len < 4500 && n < cap - 1) {
        out[n++] = 'Q';
    }
    n += (size_t)snprintf(out + n, cap - n, "\\r\\n");
    n += (size_t)snprintf(out + n, cap - n, tail, target);
    return n;
}

static size_t make_candidate(char *out, size_t cap, unsigned seq, const char *target)
{
    return (size_t)snprintf(out, cap,
        "{\"type\":\"ice-candidate\",\"data\":{\"candidate\":\"candidate:%u 1 udp 1686052607 "
        "2001:db8:85a3:8d3:1319:8a2e:370:7348 54400 typ srflx raddr fd00::2 rport 45500 "
        "generation 0 ufrag wwwZ network-id 2 network-cost 10\",\"sdpMid\":\"0\","
        "\"sdpMLineIndex\":0,\"usernameFragment\":\"wwwZ\"},\"maxPeers\":3,"
        "\"networkName\":\"bench\",\"targetPeerId\":\"%s\"}", seq, target);
}

/* ---- main -------------------------------------------------------------------------------------- */

static void report_heap(const char *label)
{
    printf("heap.%s.current=%zu\nheap.%s.peak=%zu\nheap.%s.blocks=%zu\n", label, heap_current,
           label, heap_peak, label, heap_blocks);
}

static int usage(void)
{
    fprintf(stderr, "usage: heap_probe HUB.WASM [--peers N] [--relay offer|ice --count K] "
                    "[--memory-limit BYTES] [--wasm-stack BYTES] [--verbose] [--trace]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        return usage();
    }
    const char *path = argv[1];
    int peers = 20;
    long count = 0;
    const char *relay = NULL;
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--peers") && i + 1 < argc) {
            peers = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--relay") && i + 1 < argc) {
            relay = argv[++i];
        } else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
            count = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--verbose")) {
            T.verbose = 1;
        } else if (!strcmp(argv[i], "--memory-limit") && i + 1 < argc) {
            config.memory_limit_bytes = (uint32_t)strtoul(argv[++i], NULL, 0);
        } else if (!strcmp(argv[i], "--wasm-stack") && i + 1 < argc) {
            config.wasm_stack_bytes = (uint32_t)strtoul(argv[++i], NULL, 0);
        } else if (!strcmp(argv[i], "--trace")) {
            trace_allocations = 1;
        } else {
            return usage();
        }
    }
    if (peers < 0 || peers > PROBE_MAX_CONNS - 1 || count < 0 ||
        (relay && strcmp(relay, "offer") && strcmp(relay, "ice")) || (relay && peers < 2)) {
        return usage();
    }

    /* Module bytes: not part of the heap figure (flash-mapped on the board), so the real
     * allocator, not the counting one. */
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "E (probe) cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long wasm_len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *wasm = __real_malloc((size_t)wasm_len);
    if (wasm == NULL || fread(wasm, 1, (size_t)wasm_len, f) != (size_t)wasm_len) {
        fprintf(stderr, "E (probe) cannot read %s\n", path);
        return 1;
    }
    fclose(f);
    frame_buf = __real_malloc(8192);
    printf("module.bytes=%ld\nconfig.memory_limit=%u\nconfig.wasm_stack=%u\n", wasm_len,
           (unsigned)config.memory_limit_bytes, (unsigned)config.wasm_stack_bytes);
    report_heap("start");

    ph_transport_ops ops = {
        .ctx = NULL, .send = t_send, .close = t_close, .ping = t_ping, .log = t_log,
        .millis = t_millis, .wall_clock_ms = t_wall, .device_id = t_device_id,
        .server_start = NULL, .server_stop = NULL,
    };
    ph_result result = PH_OK;
    char err[200] = "";
    ph_bridge *bridge = ph_bridge_create(wasm, (size_t)wasm_len, &ops, &config, &result, err,
                                         sizeof err);
    if (bridge == NULL) {
        fprintf(stderr, "E (probe) ph_bridge_create failed (%d): %s\n", (int)result, err);
        return 1;
    }
    if (ph_bridge_start(bridge, 3000) < 0) {
        fprintf(stderr, "E (probe) ph_bridge_start failed\n");
        return 1;
    }
    flush_sent(bridge);
    report_heap("loaded");

    char ids[PROBE_MAX_CONNS][41];
    int32_t conns[PROBE_MAX_CONNS];
    for (int p = 0; p < peers; p++) {
        /* deterministic ids: runs with K and 2K frames must do identical work apart from the K */
        for (int k = 0; k < 40; k++) {
            ids[p][k] = "0123456789abcdef"[(p * 7 + k * 13 + (k * p) % 5) & 15];
        }
        ids[p][39] = "0123456789abcdef"[p & 15];
        ids[p][38] = "0123456789abcdef"[(p >> 4) & 15];
        ids[p][40] = '\0';
        char url[80];
        int url_len = snprintf(url, sizeof url, "/?peerId=%s", ids[p]);
        conns[p] = ph_bridge_on_open(bridge, url, (size_t)url_len);
        flush_sent(bridge);
        if (conns[p] < 0 || conns[p] >= PROBE_MAX_CONNS || T.closed[conns[p]]) {
            fprintf(stderr, "E (probe) peer %d refused (%d)\n", p, (int)conns[p]);
            return 1;
        }
        int n = snprintf(frame_buf, 8192, "{\"type\":\"announce\",\"data\":{\"peerId\":\"%s\"},"
                         "\"maxPeers\":3,\"networkName\":\"bench\"}", ids[p]);
        ph_bridge_on_frame(bridge, conns[p], (const uint8_t *)frame_buf, (size_t)n);
        flush_sent(bridge);
    }
    /* every peer got `connected` and one peer-discovered per other peer */
    uint64_t received = 0;
    for (int p = 0; p < peers; p++) {
        received += T.frames[conns[p]];
        if (T.closed[conns[p]]) {
            fprintf(stderr, "E (probe) hub closed peer %d (%d)\n", p, T.closed[conns[p]]);
            return 1;
        }
    }
    if (received < (uint64_t)peers * (uint64_t)peers) {
        fprintf(stderr, "E (probe) %d peers got %llu frames, expected >= %d (connected + "
                "peer-discovered)\n", peers, (unsigned long long)received, peers * peers);
        return 1;
    }
    printf("peers=%d\nhub.peer_count=%d\n", peers, ph_bridge_peer_count(bridge));
    char label[32];
    snprintf(label, sizeof label, "peers%d", peers);
    report_heap(label);

    if (relay) {
        int offer = !strcmp(relay, "offer");
        uint32_t before[PROBE_MAX_CONNS];
        memcpy(before, T.frames, sizeof before);
        size_t frame_len = 0;
        for (long seq = 0; seq < count; seq++) {
            int src = (int)(seq % peers);
            int dst = (int)((src + 1 + (seq / peers) % (peers - 1)) % peers);
            frame_len = offer ? make_offer(frame_buf, 8192, (unsigned)(10000000 + seq), ids[dst])
                              : make_candidate(frame_buf, 8192, (unsigned)(10000000 + seq),
                                               ids[dst]);
            ph_bridge_on_frame(bridge, conns[src], (const uint8_t *)frame_buf, frame_len);
            flush_sent(bridge);
        }
        uint64_t delivered = 0;
        for (int p = 0; p < peers; p++) {
            delivered += T.frames[conns[p]] - before[conns[p]];
        }
        printf("relay.kind=%s\nrelay.frame_bytes=%zu\nrelay.sent=%ld\nrelay.delivered=%llu\n",
               relay, frame_len, count, (unsigned long long)delivered);
        if (delivered != (uint64_t)count) {
            fprintf(stderr, "E (probe) %ld %s frames sent, %llu delivered; last frame to peer 1: "
                    "%s\n", count, relay, (unsigned long long)delivered, T.last[conns[1]]);
            return 1;
        }
        snprintf(label, sizeof label, "relay_%s", relay);
        report_heap(label);
    }

    ph_bridge_destroy(bridge);
    report_heap("destroyed");
    __real_free(frame_buf);
    __real_free(wasm);
    return 0;
}

/*
 * _bridge.c — CPython extension: the bridge core (lib/pigeonhub_bridge) for the PC hub.
 *
 * The same C code the firmware runs; only the transport differs: here it is any Python object
 * with send/close/ping/log/millis/wall_clock_ms/device_id methods (hub/server.py's asyncio
 * WebSocket server), and optionally connect(conn, url) for outgoing hub links (ABI 2): without it
 * the module's ws_connect fails and the bridge logs that this transport has no outgoing links.
 * All calls happen with the GIL held, on the thread that owns the Bridge.
 * A transport whose millis or wall_clock_ms attribute is None gets the extension's own clocks
 * (monotonic ms since the Bridge was created; Unix time in ms), with no call into Python.
 *
 *   from pigeonhub._bridge import Bridge, BridgeError, check_module, ABI_VERSION
 *
 * transport.send(conn, frame) returns 1 when it wrote the frame at once (the bridge then releases
 * its bytes from the outbox itself), None/0 when it queued it (it calls sent(conn, len(frame))
 * once written or dropped), or < 0 when the connection is gone.
 *
 * A transport method that raises is reported through sys.unraisablehook (PyErr_WriteUnraisable)
 * and treated as a failed operation: an exception can never unwind through WASM3's C frames.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <windows.h>   /* GetTickCount64 */
#endif

#include "_bridge_store.h"
#include "_bridge_ws.h"
#include "ph_bridge.h"
#include "ph_json_string.h"
#include "ph_module_sig.h"
#include "pigeonhub_abi.h"

static PyObject *BridgeError;   /* pigeonhub._bridge.BridgeError, .code = ph_result */

typedef struct {
    PyObject_HEAD
    ph_bridge *bridge;
    PyObject *wasm;         /* bytes: WASM3 reads the module in place for the bridge's lifetime */
    PyObject *transport;
    /* Bound methods, looked up once: the hot path (send) avoids a getattr per frame. */
    PyObject *send, *close, *ping, *log, *millis, *wall_clock_ms, *device_id;
    PyObject *connect;      /* optional: NULL when the transport has no outgoing links */
    uint32_t stats_cap;
    uint64_t epoch_ms;      /* monotonic ms at creation: millis() counts from here (millis None) */
} BridgeObject;

static void set_bridge_error(ph_result code, const char *message)
{
    PyObject *exc = PyObject_CallFunction(BridgeError, "s", message);
    if (!exc) return;
    PyObject *value = PyLong_FromLong(code);
    if (value && PyObject_SetAttrString(exc, "code", value) == 0)
        PyErr_SetObject(BridgeError, exc);
    Py_XDECREF(value);
    Py_DECREF(exc);
}

/* ------------------------------------------------------------------------------------------------ */
/* Transport callbacks: C -> Python                                                                 */

/* Call a transport method; on an exception report it and return NULL (no error left set). */
static PyObject *call_transport(PyObject *method, const char *format, ...)
{
    if (!method) return NULL;
    va_list ap;
    va_start(ap, format);
    PyObject *args = Py_VaBuildValue(format, ap);
    va_end(ap);
    PyObject *result = NULL;
    if (args) {
        result = PyObject_CallObject(method, args);
        Py_DECREF(args);
    }
    if (!result) PyErr_WriteUnraisable(method);
    return result;
}

/* send(conn, frame: bytes) -> 1: written already (the bridge releases the bytes from the outbox at
 * once, no sent() call follows), 0/None: queued (sent(conn, n) follows once written or dropped),
 * < 0: the connection is gone. Vectorcall without an argument tuple: this runs once per relayed
 * frame. */
static int cb_send(void *ctx, int32_t conn, const uint8_t *frame, size_t len)
{
    BridgeObject *self = ctx;
    if (!self->send) return -1;
    PyObject *args[2] = { PyLong_FromLong((long)conn),
                          PyBytes_FromStringAndSize((const char *)frame, (Py_ssize_t)len) };
    PyObject *r = NULL;
    if (args[0] && args[1]) r = PyObject_Vectorcall(self->send, args, 2, NULL);
    Py_XDECREF(args[0]);
    Py_XDECREF(args[1]);
    if (!r) {
        PyErr_WriteUnraisable(self->send);
        return -1;
    }
    int rc = 0;
    if (PyLong_Check(r)) {
        long v = PyLong_AsLong(r);
        if (v == -1 && PyErr_Occurred()) PyErr_Clear();
        rc = v < 0 ? -1 : 0;
        /* ph_queue_frame counted the bytes before this call, so releasing them here is exact. */
        if (v > 0 && PyLong_CheckExact(r) && self->bridge) ph_bridge_on_sent(self->bridge, conn, len);
    }
    Py_DECREF(r);
    return rc;
}

static void cb_close(void *ctx, int32_t conn, uint16_t code, const char *reason, size_t len)
{
    BridgeObject *self = ctx;
    PyObject *text = PyUnicode_DecodeUTF8(reason, (Py_ssize_t)len, "replace");
    if (!text) {
        PyErr_WriteUnraisable(self->close);
        return;
    }
    Py_XDECREF(call_transport(self->close, "(iiO)", (int)conn, (int)code, text));
    Py_DECREF(text);
}

static int cb_ping(void *ctx, int32_t conn)
{
    BridgeObject *self = ctx;
    PyObject *r = call_transport(self->ping, "(i)", (int)conn);
    if (!r) return -1;
    int rc = 0;
    if (PyLong_Check(r) && PyLong_AsLong(r) < 0) rc = -1;
    if (PyErr_Occurred()) PyErr_Clear();
    Py_DECREF(r);
    return rc;
}

static int cb_connect(void *ctx, int32_t conn, const char *url, size_t len)
{
    BridgeObject *self = ctx;
    PyObject *text = PyUnicode_DecodeUTF8(url, (Py_ssize_t)len, "replace");
    if (!text) {
        PyErr_WriteUnraisable(self->connect);
        return -1;
    }
    PyObject *r = call_transport(self->connect, "(iO)", (int)conn, text);
    Py_DECREF(text);
    if (!r) return -1;
    int rc = 0;   /* None (or anything but a negative int) means dialing */
    if (PyLong_Check(r) && PyLong_AsLong(r) < 0) rc = -1;
    if (PyErr_Occurred()) PyErr_Clear();
    Py_DECREF(r);
    return rc;
}

static void cb_log(void *ctx, char level, const char *msg, size_t len)
{
    BridgeObject *self = ctx;
    PyObject *text = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)len, "replace");
    if (!text) {
        PyErr_WriteUnraisable(self->log);
        return;
    }
    Py_XDECREF(call_transport(self->log, "(CO)", (int)(unsigned char)level, text));
    Py_DECREF(text);
}

/* The module asks for both clocks on every frame. A transport whose millis / wall_clock_ms is None
 * gets them from here, without a call into Python each (the PC hub does; tests keep fake clocks). */
static uint64_t monotonic_ms(void)
{
#ifdef _WIN32
    return (uint64_t)GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
#endif
}

static uint32_t cb_millis(void *ctx)
{
    BridgeObject *self = ctx;
    if (self->millis == Py_None) return (uint32_t)(monotonic_ms() - self->epoch_ms);   /* wraps at 2^32 */
    PyObject *r = call_transport(self->millis, "()");
    if (!r) return 0;
    uint32_t ms = (uint32_t)PyLong_AsUnsignedLongLongMask(r);   /* wraps at 2^32, as on a board */
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(self->millis);
        ms = 0;
    }
    Py_DECREF(r);
    return ms;
}

static int64_t cb_wall_clock_ms(void *ctx)
{
    BridgeObject *self = ctx;
    if (self->wall_clock_ms == Py_None) {
        struct timespec ts;
        timespec_get(&ts, TIME_UTC);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    PyObject *r = call_transport(self->wall_clock_ms, "()");
    if (!r) return 0;
    long long ms = PyLong_AsLongLong(r);
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(self->wall_clock_ms);
        ms = 0;
    }
    Py_DECREF(r);
    return ms;
}

static void cb_device_id(void *ctx, char *buf, size_t cap)
{
    BridgeObject *self = ctx;
    buf[0] = '\0';
    PyObject *r = call_transport(self->device_id, "()");
    if (!r) return;
    Py_ssize_t n = 0;
    const char *text = PyUnicode_Check(r) ? PyUnicode_AsUTF8AndSize(r, &n) : NULL;
    if (text) {
        if ((size_t)n >= cap) n = (Py_ssize_t)cap - 1;
        memcpy(buf, text, (size_t)n);
        buf[n] = '\0';
    } else {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "device_id() must return a str");
        PyErr_WriteUnraisable(self->device_id);
    }
    Py_DECREF(r);
}

/* ------------------------------------------------------------------------------------------------ */
/* Bridge type                                                                                      */

static int Bridge_traverse(BridgeObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->transport);
    Py_VISIT(self->send);
    Py_VISIT(self->close);
    Py_VISIT(self->ping);
    Py_VISIT(self->log);
    Py_VISIT(self->millis);
    Py_VISIT(self->wall_clock_ms);
    Py_VISIT(self->device_id);
    Py_VISIT(self->connect);
    return 0;
}

/* Breaks bridge <-> transport cycles. The C bridge stays usable: with no methods left its
 * callbacks do nothing. The module bytes stay referenced until dealloc (WASM3 reads them). */
static int Bridge_clear(BridgeObject *self)
{
    Py_CLEAR(self->transport);
    Py_CLEAR(self->send);
    Py_CLEAR(self->close);
    Py_CLEAR(self->ping);
    Py_CLEAR(self->log);
    Py_CLEAR(self->millis);
    Py_CLEAR(self->wall_clock_ms);
    Py_CLEAR(self->device_id);
    Py_CLEAR(self->connect);
    return 0;
}

static void Bridge_dealloc(BridgeObject *self)
{
    PyObject_GC_UnTrack(self);
    ph_bridge_destroy(self->bridge);   /* never calls back into Python */
    self->bridge = NULL;
    Bridge_clear(self);
    Py_CLEAR(self->wasm);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Bridge_init(BridgeObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = { "wasm", "transport", "max_connections", "outbox_limit", "memory_limit",
                              "bootstrap", "max_links", NULL };
    PyObject *wasm, *transport, *bootstrap = NULL;
    unsigned int max_connections = PH_BRIDGE_DEFAULT_MAX_CONNECTIONS;
    unsigned int outbox_limit = PH_BRIDGE_DEFAULT_OUTBOX_LIMIT, memory_limit = PH_BRIDGE_DEFAULT_MEMORY_LIMIT;
    unsigned int max_links = PH_BRIDGE_DEFAULT_MAX_LINKS;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$IIIOI:Bridge", kwlist, &wasm, &transport,
                                     &max_connections, &outbox_limit, &memory_limit, &bootstrap,
                                     &max_links))
        return -1;
    if (self->bridge) {
        PyErr_SetString(PyExc_RuntimeError, "Bridge is already initialised");
        return -1;
    }
    if (max_connections < 1 || max_connections > 1024 - PH_BRIDGE_MAX_LINKS) {
        PyErr_Format(PyExc_ValueError, "max_connections must be 1..%d, not %u",
                     1024 - PH_BRIDGE_MAX_LINKS, max_connections);
        return -1;
    }
    if (max_links > PH_BRIDGE_MAX_LINKS) {
        PyErr_Format(PyExc_ValueError, "max_links must be 0..%d, not %u", PH_BRIDGE_MAX_LINKS, max_links);
        return -1;
    }
    /* bootstrap: a sequence of str URLs; the bridge copies them during ph_bridge_create. */
    PyObject *urls = NULL;
    if (bootstrap && bootstrap != Py_None) {
        if (PyUnicode_Check(bootstrap)) {
            PyErr_SetString(PyExc_TypeError, "bootstrap must be a list of URLs, not a str");
            return -1;
        }
        urls = PySequence_Fast(bootstrap, "bootstrap must be a list of URLs");
        if (!urls) return -1;
    }
    Py_ssize_t url_count = urls ? PySequence_Fast_GET_SIZE(urls) : 0;
    const char **url_ptrs = url_count ? PyMem_Calloc((size_t)url_count, sizeof *url_ptrs) : NULL;
    if (url_count && !url_ptrs) {
        Py_DECREF(urls);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < url_count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(urls, i);
        url_ptrs[i] = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
        if (!url_ptrs[i]) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "bootstrap[%zd] must be a str, not %.80s", i,
                             Py_TYPE(item)->tp_name);
            PyMem_Free(url_ptrs);
            Py_DECREF(urls);
            return -1;
        }
    }
    /* bytes are immutable, so the module cannot change under WASM3; other buffers are copied. */
    PyObject *bytes = PyBytes_Check(wasm) ? Py_NewRef(wasm) : PyBytes_FromObject(wasm);
    if (!bytes) return -1;
    Py_XSETREF(self->wasm, bytes);
    Py_XSETREF(self->transport, Py_NewRef(transport));

    struct { PyObject **slot; const char *name; } methods[] = {
        { &self->send, "send" }, { &self->close, "close" }, { &self->ping, "ping" },
        { &self->log, "log" }, { &self->millis, "millis" }, { &self->wall_clock_ms, "wall_clock_ms" },
        { &self->device_id, "device_id" },
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        PyObject *m = PyObject_GetAttrString(transport, methods[i].name);
        if (!m) {
            PyErr_Format(PyExc_TypeError, "transport has no method %s()", methods[i].name);
            PyMem_Free(url_ptrs);
            Py_XDECREF(urls);
            return -1;
        }
        Py_XSETREF(*methods[i].slot, m);
    }
    self->epoch_ms = monotonic_ms();
    PyObject *connect = PyObject_GetAttrString(transport, "connect");   /* optional */
    if (!connect) PyErr_Clear();
    Py_XSETREF(self->connect, connect);

    ph_transport_ops ops = {
        .ctx = self, .send = cb_send, .close = cb_close, .ping = cb_ping, .log = cb_log,
        .millis = cb_millis, .wall_clock_ms = cb_wall_clock_ms, .device_id = cb_device_id,
        .server_start = NULL, .server_stop = NULL,   /* the asyncio server is already listening */
        .connect = self->connect ? cb_connect : NULL,
    };
    ph_bridge_config config = PH_BRIDGE_CONFIG_DEFAULT;
    config.max_connections = max_connections;
    config.outbox_limit_bytes = outbox_limit;
    config.memory_limit_bytes = memory_limit;
    config.max_links = max_links;
    config.bootstrap_urls = url_ptrs;
    config.bootstrap_count = (uint32_t)url_count;

    ph_result rc = PH_OK;
    char err[256];
    self->bridge = ph_bridge_create((const uint8_t *)PyBytes_AS_STRING(bytes),
                                    (size_t)PyBytes_GET_SIZE(bytes), &ops, &config, &rc, err, sizeof err);
    PyMem_Free(url_ptrs);
    Py_XDECREF(urls);
    if (!self->bridge) {
        set_bridge_error(rc, err);
        return -1;
    }
    self->stats_cap = (uint32_t)ph_bridge_stats_capacity(self->bridge);
    return 0;
}

static ph_bridge *live(BridgeObject *self)
{
    if (!self->bridge) PyErr_SetString(PyExc_RuntimeError, "Bridge is not initialised");
    return self->bridge;
}

static PyObject *Bridge_start(BridgeObject *self, PyObject *args)
{
    int port;
    if (!PyArg_ParseTuple(args, "i:start", &port) || !live(self)) return NULL;
    return PyLong_FromLong(ph_bridge_start(self->bridge, port));
}

static PyObject *Bridge_stop(BridgeObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!live(self)) return NULL;
    ph_bridge_stop(self->bridge);
    Py_RETURN_NONE;
}

static PyObject *Bridge_open(BridgeObject *self, PyObject *args)
{
    const char *url;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "s#:open", &url, &len) || !live(self)) return NULL;
    int32_t conn = ph_bridge_on_open(self->bridge, url, (size_t)len);
    return PyLong_FromLong(conn < 0 ? -1 : conn);
}

static PyObject *Bridge_accepts(BridgeObject *self, PyObject *args)
{
    int conn;
    Py_ssize_t length;
    if (!PyArg_ParseTuple(args, "in:accepts", &conn, &length) || !live(self)) return NULL;
    if (length < 0) {
        PyErr_SetString(PyExc_ValueError, "length must be >= 0");
        return NULL;
    }
    return PyBool_FromLong(ph_bridge_accepts_frame(self->bridge, conn, (size_t)length));
}

static PyObject *Bridge_frame(BridgeObject *self, PyObject *args)
{
    int conn;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "iy*:frame", &conn, &data)) return NULL;
    if (!live(self)) {
        PyBuffer_Release(&data);
        return NULL;
    }
    ph_bridge_on_frame(self->bridge, conn, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

#define CONN_METHOD(pyname, call)                                                                   \
    static PyObject *Bridge_##pyname(BridgeObject *self, PyObject *args)                            \
    {                                                                                               \
        int conn;                                                                                   \
        if (!PyArg_ParseTuple(args, "i:" #pyname, &conn) || !live(self)) return NULL;                \
        call(self->bridge, conn);                                                                   \
        Py_RETURN_NONE;                                                                             \
    }
CONN_METHOD(pong, ph_bridge_on_pong)
CONN_METHOD(closed, ph_bridge_on_close)
CONN_METHOD(link_open, ph_bridge_on_link_open)
#undef CONN_METHOD

static PyObject *Bridge_tick(BridgeObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!live(self)) return NULL;
    ph_bridge_tick(self->bridge);
    Py_RETURN_NONE;
}

static PyObject *Bridge_sent(BridgeObject *self, PyObject *args)
{
    int conn;
    Py_ssize_t nbytes;
    if (!PyArg_ParseTuple(args, "in:sent", &conn, &nbytes) || !live(self)) return NULL;
    if (nbytes > 0) ph_bridge_on_sent(self->bridge, conn, (size_t)nbytes);
    Py_RETURN_NONE;
}

static PyObject *Bridge_stats(BridgeObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!live(self)) return NULL;
    char *buf = PyMem_Malloc(self->stats_cap);
    if (!buf) return PyErr_NoMemory();
    int n = ph_bridge_stats_json(self->bridge, buf, self->stats_cap);
    PyObject *result = n < 0 ? (PyErr_SetString(PyExc_RuntimeError, "stats JSON does not fit"), NULL)
                             : PyUnicode_DecodeUTF8(buf, n, "replace");
    PyMem_Free(buf);
    return result;
}

static PyObject *Bridge_peers(BridgeObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!live(self)) return NULL;
    size_t cap = ph_bridge_peers_capacity(self->bridge);
    char *buf = PyMem_Malloc(cap);
    if (!buf) return PyErr_NoMemory();
    int n = ph_bridge_peers_json(self->bridge, buf, cap);
    PyObject *result = n < 0 ? (PyErr_SetString(PyExc_RuntimeError, "peers JSON does not fit"), NULL)
                             : PyUnicode_DecodeUTF8(buf, n, "replace");
    PyMem_Free(buf);
    return result;
}

static PyObject *Bridge_swap(BridgeObject *self, PyObject *arg)
{
    if (!live(self)) return NULL;
    /* Our own immutable bytes: WASM3 reads them in place for as long as the new module runs. */
    PyObject *bytes = PyBytes_Check(arg) ? Py_NewRef(arg) : PyBytes_FromObject(arg);
    if (!bytes) return NULL;
    char err[256];
    ph_result rc = ph_bridge_swap(self->bridge, (const uint8_t *)PyBytes_AS_STRING(bytes),
                                  (size_t)PyBytes_GET_SIZE(bytes), err, sizeof err);
    if (rc != PH_OK) {
        Py_DECREF(bytes);   /* the old module and its bytes keep running */
        set_bridge_error(rc, err);
        return NULL;
    }
    Py_SETREF(self->wasm, bytes);   /* the old runtime is gone: its bytes may go too */
    self->stats_cap = (uint32_t)ph_bridge_stats_capacity(self->bridge);
    return PyLong_FromUnsignedLong(ph_bridge_last_swap_replayed(self->bridge));
}

static PyObject *Bridge_get_module_sha256(BridgeObject *self, void *Py_UNUSED(closure))
{
    if (!live(self)) return NULL;
    PyObject *hashlib = PyImport_ImportModule("hashlib");
    if (!hashlib) return NULL;
    PyObject *h = PyObject_CallMethod(hashlib, "sha256", "O", self->wasm);
    Py_DECREF(hashlib);
    if (!h) return NULL;
    PyObject *hex = PyObject_CallMethod(h, "hexdigest", NULL);
    Py_DECREF(h);
    return hex;
}

static PyObject *Bridge_get_module_size(BridgeObject *self, void *Py_UNUSED(closure))
{
    return live(self) ? PyLong_FromSsize_t(PyBytes_GET_SIZE(self->wasm)) : NULL;
}

static PyObject *Bridge_get_hub_id(BridgeObject *self, void *Py_UNUSED(closure))
{
    return live(self) ? PyUnicode_FromString(ph_bridge_hub_id(self->bridge)) : NULL;
}

static PyObject *Bridge_get_peer_count(BridgeObject *self, void *Py_UNUSED(closure))
{
    return live(self) ? PyLong_FromLong(ph_bridge_peer_count(self->bridge)) : NULL;
}

static PyObject *Bridge_get_connection_count(BridgeObject *self, void *Py_UNUSED(closure))
{
    return live(self) ? PyLong_FromUnsignedLong(ph_bridge_connection_count(self->bridge)) : NULL;
}

static PyObject *Bridge_get_link_count(BridgeObject *self, void *Py_UNUSED(closure))
{
    return live(self) ? PyLong_FromUnsignedLong(ph_bridge_link_count(self->bridge)) : NULL;
}

static PyObject *Bridge_get_traps(BridgeObject *self, void *Py_UNUSED(closure))
{
    return live(self) ? PyLong_FromUnsignedLong(ph_bridge_trap_count(self->bridge)) : NULL;
}

static PyObject *Bridge_get_input_buffer_size(BridgeObject *self, void *Py_UNUSED(closure))
{
    return live(self) ? PyLong_FromUnsignedLong(ph_bridge_input_buffer_size(self->bridge)) : NULL;
}

static PyMethodDef Bridge_methods[] = {
    { "start", (PyCFunction)Bridge_start, METH_VARARGS,
      "start(port) -> int: the module's start_server(port) (0 ok)" },
    { "stop", (PyCFunction)Bridge_stop, METH_NOARGS,
      "stop(): the module's stop_server() (closes every connection 1001)" },
    { "open", (PyCFunction)Bridge_open, METH_VARARGS,
      "open(url) -> conn id, or -1 when full (then close it 1008 \"Maximum connections reached\").\n"
      "The module greets the connection from inside this call: transport.send()/close() may be\n"
      "called for the new id before open() returns it." },
    { "accepts", (PyCFunction)Bridge_accepts, METH_VARARGS,
      "accepts(conn, length) -> bool: False when the frame is too big (the bridge closed it 1009)" },
    { "frame", (PyCFunction)Bridge_frame, METH_VARARGS, "frame(conn, data): a complete frame" },
    { "pong", (PyCFunction)Bridge_pong, METH_VARARGS, "pong(conn): a WebSocket pong arrived" },
    { "closed", (PyCFunction)Bridge_closed, METH_VARARGS,
      "closed(conn): the socket is closed, or the hub link conn could not be opened" },
    { "link_open", (PyCFunction)Bridge_link_open, METH_VARARGS,
      "link_open(conn): the hub link transport.connect(conn, url) dialed is open (the module\n"
      "sends its hub announce from inside this call)" },
    { "tick", (PyCFunction)Bridge_tick, METH_NOARGS, "tick(): run the module's loop() (>= once a second)" },
    { "sent", (PyCFunction)Bridge_sent, METH_VARARGS,
      "sent(conn, nbytes): nbytes given to transport.send() were written or dropped" },
    { "stats", (PyCFunction)Bridge_stats, METH_NOARGS, "stats() -> JSON {\"module\":...,\"bridge\":...}" },
    { "peers", (PyCFunction)Bridge_peers, METH_NOARGS,
      "peers() -> JSON [{\"conn\",\"peerId\",\"network\",\"connectedMs\",\"framesIn\",\"framesOut\"}]:\n"
      "the open accepted connections (/stats \"peers\")" },
    { "swap", (PyCFunction)Bridge_swap, METH_O,
      "swap(wasm) -> int: replace the running module in place (over-the-air update); returns how\n"
      "many open connections were replayed into the new one. Connection ids, outboxes and peers\n"
      "stay; clients see nothing. Raises BridgeError (.code, reason) and keeps the old module\n"
      "running when the new one is refused. The bridge keeps a reference to the new bytes." },
    { NULL, NULL, 0, NULL },
};

static PyGetSetDef Bridge_getset[] = {
    { "hub_id", (getter)Bridge_get_hub_id, NULL, "the module's 40-hex hub id", NULL },
    { "peer_count", (getter)Bridge_get_peer_count, NULL, "the module's get_peer_count()", NULL },
    { "connection_count", (getter)Bridge_get_connection_count, NULL, "open accepted connections", NULL },
    { "link_count", (getter)Bridge_get_link_count, NULL, "hub links dialing or open", NULL },
    { "input_buffer_size", (getter)Bridge_get_input_buffer_size, NULL, "largest accepted frame", NULL },
    { "traps", (getter)Bridge_get_traps, NULL, "traps caught in module calls since creation", NULL },
    { "module_sha256", (getter)Bridge_get_module_sha256, NULL, "SHA-256 (hex) of the running module", NULL },
    { "module_size", (getter)Bridge_get_module_size, NULL, "bytes of the running module", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyTypeObject BridgeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pigeonhub._bridge.Bridge",
    .tp_doc = PyDoc_STR("Bridge(wasm, transport, *, max_connections, outbox_limit, memory_limit, "
                        "bootstrap=None, max_links)\n\nRuns hub.wasm in WASM3 for one transport; the "
                        "limits default to DEFAULTS, the board's. Raises BridgeError (.code, message) "
                        "when the module is refused."),
    .tp_basicsize = sizeof(BridgeObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Bridge_init,
    .tp_dealloc = (destructor)Bridge_dealloc,
    .tp_traverse = (traverseproc)Bridge_traverse,
    .tp_clear = (inquiry)Bridge_clear,
    .tp_methods = Bridge_methods,
    .tp_getset = Bridge_getset,
};

/* ------------------------------------------------------------------------------------------------ */

static PyObject *check_module(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer wasm;
    if (PyObject_GetBuffer(arg, &wasm, PyBUF_SIMPLE) < 0) return NULL;
    char err[256];
    ph_result rc = ph_bridge_check_module(wasm.buf, (size_t)wasm.len, err, sizeof err);
    PyBuffer_Release(&wasm);
    if (rc != PH_OK) {
        set_bridge_error(rc, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* check_signature(wasm, key_id, verify): the decision a hub with a module key makes
 * (ph_module_sig_check), with the host's ECDSA verify in Python: verify(data, sig) -> bool over the
 * signed bytes (a memoryview) and r||s. Raises BridgeError(.code: SIG_*) with the reason. */
typedef struct {
    PyObject *verify;
    PyObject *wasm;
    int raised;   /* the verify callable raised: its exception propagates */
} sig_verify_ctx;

static int py_verify(void *ctx, const uint8_t *data, size_t len, const uint8_t sig[PH_SIG_BYTES],
                     char *err, size_t err_cap)
{
    sig_verify_ctx *c = ctx;
    PyObject *view = PyMemoryView_FromMemory((char *)data, (Py_ssize_t)len, PyBUF_READ);
    PyObject *r = view ? PyObject_CallFunction(c->verify, "Oy#", view, sig, (Py_ssize_t)PH_SIG_BYTES)
                       : NULL;
    Py_XDECREF(view);
    if (r == NULL) {
        c->raised = 1;
        snprintf(err, err_cap, "the verify function raised");
        return -1;
    }
    int ok = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (ok < 0) {
        c->raised = 1;
        return -1;
    }
    return ok;
}

static PyObject *check_signature(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer wasm, kid;
    PyObject *verify;
    if (!PyArg_ParseTuple(args, "y*y*O:check_signature", &wasm, &kid, &verify)) return NULL;
    PyObject *result = NULL;
    if (kid.len != PH_SIG_KEY_ID_BYTES) {
        PyErr_Format(PyExc_ValueError, "key_id must be %d bytes", PH_SIG_KEY_ID_BYTES);
        goto cleanup;
    }
    sig_verify_ctx ctx = { .verify = verify };
    char reason[320];
    ph_sig_check_result rc = ph_module_sig_check(wasm.buf, (size_t)wasm.len, kid.buf, py_verify,
                                                 &ctx, reason, sizeof reason);
    if (ctx.raised) goto cleanup;
    if (rc != PH_SIG_OK) {
        set_bridge_error((ph_result)rc, reason);
        goto cleanup;
    }
    result = Py_NewRef(Py_None);
cleanup:
    PyBuffer_Release(&wasm);
    PyBuffer_Release(&kid);
    return result;
}

/* For hosts written in Python (the module tests' engines, tools/wasm_profile.py): the bridge's own
 * implementations of the json_string_end and json_value_end imports, so every host validates
 * frames alike. */
static PyObject *json_token_end(PyObject *arg, int32_t (*end)(const uint8_t *, uint32_t))
{
    Py_buffer text;
    if (PyObject_GetBuffer(arg, &text, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t n = text.len > UINT32_MAX ? UINT32_MAX : (uint32_t)text.len;
    int32_t r = end(text.buf, n);
    PyBuffer_Release(&text);
    return PyLong_FromLong(r);
}

static PyObject *json_string_end(PyObject *Py_UNUSED(module), PyObject *arg)
{
    return json_token_end(arg, ph_json_string_end);
}

static PyObject *json_value_end(PyObject *Py_UNUSED(module), PyObject *arg)
{
    return json_token_end(arg, ph_json_value_end);
}

static PyMethodDef module_methods[] = {
    { "check_module", check_module, METH_O,
      "check_module(wasm) -> None; raises BridgeError with the reason the module is refused" },
    { "check_signature", check_signature, METH_VARARGS,
      "check_signature(wasm, key_id, verify) -> None; raises BridgeError (.code SIG_*) with the reason a\n"
      "hub whose module key has this 8-byte id refuses wasm. verify(data, sig) -> bool is the ECDSA\n"
      "P-256 check of sig (r||s, 64 bytes) over data" },
    { "json_string_end", json_string_end, METH_O,
      "json_string_end(text) -> the json_string_end import on bytes: the length of the JSON string\n"
      "token at text[0] (its opening quote) through the closing quote, or -1 (syntax), -2 (UTF-8)" },
    { "json_value_end", json_value_end, METH_O,
      "json_value_end(text) -> the json_value_end import on bytes: the length of the JSON value at\n"
      "text[0], or -1 (syntax), -2 (UTF-8), -4 (nested deeper than the frame's limit allows)" },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef bridge_module = {
    PyModuleDef_HEAD_INIT, "pigeonhub._bridge",
    "hub.wasm on WASM3 through the portable bridge core (the same C code as the ESP32 firmware).",
    -1, module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bridge(void)
{
    if (PyType_Ready(&BridgeType) < 0) return NULL;
    PyObject *m = PyModule_Create(&bridge_module);
    if (!m) return NULL;
    BridgeError = PyErr_NewExceptionWithDoc("pigeonhub._bridge.BridgeError",
                                            "A module was refused; .code is the bridge's ph_result.",
                                            NULL, NULL);
    if (!BridgeError || PyModule_AddObject(m, "BridgeError", Py_NewRef(BridgeError)) < 0) goto fail;
    if (PyModule_AddObject(m, "Bridge", Py_NewRef((PyObject *)&BridgeType)) < 0) goto fail;
    if (PyModule_AddIntConstant(m, "ABI_VERSION", PH_ABI_VERSION) < 0) goto fail;
    if (PyModule_AddIntConstant(m, "MAX_LINKS", PH_BRIDGE_MAX_LINKS) < 0) goto fail;
    if (PyModule_AddIntConstant(m, "MAX_BOOTSTRAP_URL", PH_BRIDGE_MAX_BOOTSTRAP_URL) < 0) goto fail;
    /* The stock module's limits and the close the hub sends when it is full (pigeonhub_abi.h) */
    if (PyModule_AddIntConstant(m, "MAX_PEERS", MAX_PEERS) < 0) goto fail;
    if (PyModule_AddIntConstant(m, "PEER_TIMEOUT_MS", PEER_TIMEOUT) < 0) goto fail;
    if (PyModule_AddIntConstant(m, "CLOSE_POLICY", PH_CLOSE_POLICY) < 0) goto fail;
    if (PyModule_AddStringConstant(m, "REASON_FULL", PH_REASON_FULL) < 0) goto fail;
    /* PH_BRIDGE_CONFIG_DEFAULT: the board's limits, which the PC hub runs with too */
    PyObject *defaults = Py_BuildValue("{sIsIsIsIsIsI}",
                                       "max_connections", PH_BRIDGE_DEFAULT_MAX_CONNECTIONS,
                                       "outbox_limit", PH_BRIDGE_DEFAULT_OUTBOX_LIMIT,
                                       "memory_limit", PH_BRIDGE_DEFAULT_MEMORY_LIMIT,
                                       "wasm_stack", PH_BRIDGE_DEFAULT_WASM_STACK,
                                       "max_links", PH_BRIDGE_DEFAULT_MAX_LINKS,
                                       "call_budget", PH_BRIDGE_DEFAULT_CALL_BUDGET);
    if (!defaults || PyModule_AddObject(m, "DEFAULTS", defaults) < 0) {
        Py_XDECREF(defaults);
        goto fail;
    }
    static const struct { const char *name; int value; } codes[] = {
        { "ERR_NOT_WASM", PH_ERR_NOT_WASM }, { "ERR_ABI_VERSION", PH_ERR_ABI_VERSION },
        { "ERR_MISSING_EXPORT", PH_ERR_MISSING_EXPORT }, { "ERR_MEMORY", PH_ERR_MEMORY },
        { "ERR_LOAD", PH_ERR_LOAD }, { "ERR_INIT", PH_ERR_INIT }, { "ERR_NO_MEMORY", PH_ERR_NO_MEMORY },
        { "ERR_FULL", PH_ERR_FULL }, { "ERR_CONFIG", PH_ERR_CONFIG },
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (PyModule_AddIntConstant(m, codes[i].name, codes[i].value) < 0) goto fail;
    /* Signed modules (ph_module_sig.h): the section's format and check_signature's codes */
    static const struct { const char *name; int value; } sig_consts[] = {
        { "SIG_SECTION_BYTES", (int)PH_SIG_SECTION_BYTES }, { "SIG_FORMAT", PH_SIG_FORMAT },
        { "SIG_KEY_ID_BYTES", PH_SIG_KEY_ID_BYTES }, { "SIG_BYTES", PH_SIG_BYTES },
        { "SIG_UNSIGNED", PH_SIG_UNSIGNED }, { "SIG_BAD_FORMAT", PH_SIG_BAD_FORMAT },
        { "SIG_OTHER_KEY", PH_SIG_OTHER_KEY }, { "SIG_MISMATCH", PH_SIG_MISMATCH },
        { "SIG_ERROR", PH_SIG_ERROR },
    };
    for (size_t i = 0; i < sizeof sig_consts / sizeof sig_consts[0]; i++)
        if (PyModule_AddIntConstant(m, sig_consts[i].name, sig_consts[i].value) < 0) goto fail;
    if (PyModule_AddStringConstant(m, "SIG_SECTION_NAME", PH_SIG_SECTION_NAME) < 0) goto fail;
    if (bridge_store_register(m) < 0) goto fail;
    if (bridge_ws_register(m) < 0) goto fail;   /* ws.py's optional framing speedups */
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}

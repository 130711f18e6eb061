/*
 * _bridge_ws.c — optional C speedups of pigeonhub/hub/ws.py's per-frame work (RFC 6455 §5), each
 * the twin of a pure-Python function there that stays the fallback and the reference:
 *
 *   unmask(payload, key) -> bytes                     ws.unmask_python
 *   text_frames(payloads, keys=None) -> bytes         ws.text_frames_python
 *   cut_frames(data, pos, masked, max_size)
 *       -> ([(payload, is_text, end), ...], pos, stop) ws.cut_frames_python
 *
 * They hold no state and never call back into Python: ws.py decides what a frame means.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "_bridge_ws.h"

/* Why cut_frames stopped: the same values as ws.py's CUT_* (the fallback defines its own). */
enum { CUT_MORE = 0, CUT_OTHER = 1, CUT_TOO_BIG = 2 };

/* dst = src XOR the 4-byte key repeated (RFC 6455 §5.3); dst may be src. */
static void xor_mask(uint8_t *dst, const uint8_t *src, Py_ssize_t n, const uint8_t key[4])
{
    uint32_t k32;
    memcpy(&k32, key, 4);
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4) {   /* four bytes at a time: the key repeats every 4 */
        uint32_t w;
        memcpy(&w, src + i, 4);
        w ^= k32;
        memcpy(dst + i, &w, 4);
    }
    for (; i < n; i++) dst[i] = src[i] ^ key[i & 3];
}

static PyObject *ws_unmask(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "unmask(payload, key) takes 2 arguments");
        return NULL;
    }
    Py_buffer data, key;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    PyObject *out = NULL;
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "a WebSocket masking key is 4 bytes");
        goto cleanup;
    }
    out = PyBytes_FromStringAndSize(NULL, data.len);
    if (out) xor_mask((uint8_t *)PyBytes_AS_STRING(out), data.buf, data.len, key.buf);
cleanup:
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return out;
}

/* Bytes of a frame header for an n-byte payload, the masking key not included. */
static Py_ssize_t header_size(Py_ssize_t n)
{
    return n < 126 ? 2 : n < 65536 ? 4 : 10;
}

/* Writes one final text frame's header; returns the bytes written. */
static Py_ssize_t put_header(uint8_t *out, uint64_t n, bool masked)
{
    uint8_t mask_bit = masked ? 0x80 : 0;
    out[0] = 0x81;
    if (n < 126) {
        out[1] = mask_bit | (uint8_t)n;
        return 2;
    }
    if (n < 65536) {
        out[1] = mask_bit | 126;
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)n;
        return 4;
    }
    out[1] = mask_bit | 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(n >> (56 - 8 * i));
    return 10;
}

/* All the frames one socket sends in one loop turn, as one bytes object: one write for them all.
 * keys: None for a server's frames (unmasked), else 4 bytes per payload (a client's masks). */
static PyObject *ws_text_frames(PyObject *Py_UNUSED(module), PyObject *const *args,
                                Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "text_frames(payloads, keys=None) takes 1 or 2 arguments");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "text_frames: payloads must be a sequence of bytes");
    if (!seq) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *out = NULL;
    Py_buffer keys = { 0 };
    bool masked = nargs == 2 && args[1] != Py_None;
    if (masked) {
        if (PyObject_GetBuffer(args[1], &keys, PyBUF_SIMPLE) < 0) goto done;
        if (keys.len != 4 * count) {
            PyErr_Format(PyExc_ValueError, "text_frames: %zd keys bytes for %zd payloads (4 each)",
                         keys.len, count);
            goto done;
        }
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyBytes_Check(items[i])) {
            PyErr_Format(PyExc_TypeError, "text_frames: payload %zd is %.80s, not bytes", i,
                         Py_TYPE(items[i])->tp_name);
            goto done;
        }
        Py_ssize_t n = PyBytes_GET_SIZE(items[i]);
        Py_ssize_t size = header_size(n) + (masked ? 4 : 0) + n;
        if (size > PY_SSIZE_T_MAX - total) {
            PyErr_NoMemory();
            goto done;
        }
        total += size;
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (!out) goto done;
    uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < count; i++) {
        const uint8_t *payload = (const uint8_t *)PyBytes_AS_STRING(items[i]);
        Py_ssize_t n = PyBytes_GET_SIZE(items[i]);
        dst += put_header(dst, (uint64_t)n, masked);
        if (masked) {
            const uint8_t *key = (const uint8_t *)keys.buf + 4 * i;
            memcpy(dst, key, 4);
            xor_mask(dst + 4, payload, n, key);
            dst += 4 + n;
        } else {
            memcpy(dst, payload, (size_t)n);
            dst += n;
        }
    }
done:
    if (keys.obj) PyBuffer_Release(&keys);
    Py_DECREF(seq);
    return out;
}

/* The complete, final, unfragmented text and binary frames at data[pos:], unmasked, each with the
 * offset just after it; stops before the first frame that is not one (CUT_OTHER: a control frame,
 * a fragment, RSV bits, a mask that is wrong for this side), is longer than max_size (CUT_TOO_BIG:
 * judged from its header alone) or has not fully arrived (CUT_MORE, also at the end of data). */
static PyObject *ws_cut_frames(PyObject *Py_UNUSED(module), PyObject *const *args,
                               Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "cut_frames(data, pos, masked, max_size) takes 4 arguments");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    int masked = PyObject_IsTrue(args[2]);
    if (masked < 0) return NULL;
    unsigned long long max_size = PyLong_AsUnsignedLongLong(args[3]);
    if (max_size == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *frames = PyList_New(0), *result = NULL;
    if (!frames) goto done;
    if (pos < 0) pos = 0;
    const uint8_t *data = view.buf;
    Py_ssize_t end = view.len;
    int stop = CUT_MORE;
    while (end - pos >= 2) {
        uint8_t head1 = data[pos], head2 = data[pos + 1];
        uint8_t opcode = head1 & 0x0F;
        bool mask_bit = (head2 & 0x80) != 0;
        if ((head1 & 0xF0) != 0x80 || (opcode != 1 && opcode != 2) || mask_bit != (bool)masked) {
            stop = CUT_OTHER;
            break;
        }
        uint64_t length = head2 & 0x7F;
        Py_ssize_t start = pos + 2;
        if (length >= 126) {
            Py_ssize_t size = length == 126 ? 2 : 8;
            if (end - start < size) break;
            length = 0;
            for (Py_ssize_t i = 0; i < size; i++) length = (length << 8) | data[start + i];
            start += size;
        }
        if (length > max_size) {
            stop = CUT_TOO_BIG;
            break;
        }
        const uint8_t *key = NULL;
        if (masked) {
            if (end - start < 4) break;
            key = data + start;
            start += 4;
        }
        if (length > (uint64_t)(end - start)) break;
        Py_ssize_t n = (Py_ssize_t)length;
        PyObject *payload = PyBytes_FromStringAndSize(NULL, n);
        if (!payload) goto done;
        if (key)
            xor_mask((uint8_t *)PyBytes_AS_STRING(payload), data + start, n, key);
        else
            memcpy(PyBytes_AS_STRING(payload), data + start, (size_t)n);
        pos = start + n;
        PyObject *item = PyTuple_New(3), *offset = PyLong_FromSsize_t(pos);
        if (!item || !offset) {
            Py_XDECREF(item);
            Py_XDECREF(offset);
            Py_DECREF(payload);
            goto done;
        }
        PyTuple_SET_ITEM(item, 0, payload);
        PyTuple_SET_ITEM(item, 1, Py_NewRef(opcode == 1 ? Py_True : Py_False));
        PyTuple_SET_ITEM(item, 2, offset);
        int appended = PyList_Append(frames, item);
        Py_DECREF(item);
        if (appended < 0) goto done;
    }
    result = Py_BuildValue("(Oni)", frames, pos, stop);
done:
    Py_XDECREF(frames);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef ws_functions[] = {
    { "unmask", (PyCFunction)(void (*)(void))ws_unmask, METH_FASTCALL,
      "unmask(payload, key) -> bytes: payload XOR the 4-byte key repeated (RFC 6455 masking)" },
    { "text_frames", (PyCFunction)(void (*)(void))ws_text_frames, METH_FASTCALL,
      "text_frames(payloads, keys=None) -> bytes: each payload as one final text frame, back to\n"
      "back; keys: None (a server's frames, unmasked) or 4 bytes of masking key per payload" },
    { "cut_frames", (PyCFunction)(void (*)(void))ws_cut_frames, METH_FASTCALL,
      "cut_frames(data, pos, masked, max_size) -> ([(payload, is_text, end)], pos, stop):\n"
      "the whole unfragmented data frames from data[pos:], unmasked; pos where it stopped and\n"
      "why (CUT_MORE: not all there, CUT_OTHER: a frame for the library, CUT_TOO_BIG: longer\n"
      "than max_size)" },
    { NULL, NULL, 0, NULL },
};

int bridge_ws_register(PyObject *module)
{
    if (PyModule_AddFunctions(module, ws_functions) < 0) return -1;
    if (PyModule_AddIntConstant(module, "CUT_MORE", CUT_MORE) < 0) return -1;
    if (PyModule_AddIntConstant(module, "CUT_OTHER", CUT_OTHER) < 0) return -1;
    if (PyModule_AddIntConstant(module, "CUT_TOO_BIG", CUT_TOO_BIG) < 0) return -1;
    return 0;
}

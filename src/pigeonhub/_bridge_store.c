/*
 * _bridge_store.c — for the PC hub, the board's module store policy (ph_module_store.c) as
 * pigeonhub._bridge.Store, whose state file and slot files stay in Python
 * (pigeonhub/hub/module_store.py hands its load/save functions in, as the board hands in NVS),
 * and POST /module's checks (ph_upload_check.c) as upload_check().
 *
 *   store = Store(load, save, exists, log, builtin_name="packaged", restart="restart",
 *                 confirm_after=60, fresh_boots=1)
 *   load() -> (active, previous, trial, trial_boots, ((len, sha256) or None, ...)) or None
 *   save(the same tuple); exists(slot) -> bool; log(level, text)
 *
 * A callback that raises makes the method raise that exception (a state file that cannot be
 * written is the hub's error to report, never a silent change of policy).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "_bridge_store.h"
#include "ph_module_store.h"
#include "ph_upload_check.h"

typedef struct {
    PyObject_HEAD
    ph_store store;
    PyObject *load, *save, *exists, *log;
    PyObject *builtin_name, *restart;   /* the strings store.builtin_name/restart point into */
} StoreObject;

static int store_load(void *ctx, ph_store_state *state)
{
    StoreObject *self = ctx;
    if (PyErr_Occurred()) return -1;   /* an earlier callback of this call failed */
    PyObject *r = PyObject_CallNoArgs(self->load);
    if (r == NULL) return -1;
    int rc = -1;
    int active, previous, trial, boots;
    PyObject *slots;
    if (r == Py_None) goto done;
    if (!PyArg_ParseTuple(r, "iiiiO", &active, &previous, &trial, &boots, &slots)) goto done;
    PyObject *seq = PySequence_Fast(slots, "load(): slots must be a sequence");
    if (seq == NULL) goto done;
    if (PySequence_Fast_GET_SIZE(seq) != PH_STORE_SLOTS) {
        PyErr_Format(PyExc_ValueError, "load(): %d slots expected", PH_STORE_SLOTS);
        Py_DECREF(seq);
        goto done;
    }
    for (int i = 0; i < PH_STORE_SLOTS; i++) {
        PyObject *rec = PySequence_Fast_GET_ITEM(seq, i);
        unsigned int len = 0;
        Py_buffer sha = { 0 };
        if (rec == Py_None) continue;
        if (!PyArg_ParseTuple(rec, "Iy*", &len, &sha)) {
            Py_DECREF(seq);
            goto done;
        }
        if (sha.len == 32) {
            state->slot[i].len = len;
            memcpy(state->slot[i].sha256, sha.buf, 32);
        }
        PyBuffer_Release(&sha);
    }
    Py_DECREF(seq);
    state->active = (int8_t)(active < -128 || active > 127 ? PH_STORE_BUILTIN : active);
    state->previous = (int8_t)(previous < -128 || previous > 127 ? PH_STORE_BUILTIN : previous);
    state->trial = trial != 0;
    state->trial_boots = (uint8_t)(boots < 0 ? 0 : boots > 255 ? 255 : boots);
    rc = 0;
done:
    Py_DECREF(r);
    return rc;
}

static int store_save(void *ctx, const ph_store_state *state)
{
    StoreObject *self = ctx;
    if (PyErr_Occurred()) return -1;
    PyObject *slots = PyTuple_New(PH_STORE_SLOTS);
    if (slots == NULL) return -1;
    for (int i = 0; i < PH_STORE_SLOTS; i++) {
        PyObject *rec = state->slot[i].len == 0
            ? Py_NewRef(Py_None)
            : Py_BuildValue("(Iy#)", (unsigned int)state->slot[i].len, state->slot[i].sha256,
                            (Py_ssize_t)32);
        if (rec == NULL) {
            Py_DECREF(slots);
            return -1;
        }
        PyTuple_SET_ITEM(slots, i, rec);
    }
    PyObject *r = PyObject_CallFunction(self->save, "((iiiiN))", state->active, state->previous,
                                        state->trial, state->trial_boots, slots);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

static bool store_slot_exists(void *ctx, int slot)
{
    StoreObject *self = ctx;
    if (PyErr_Occurred()) return false;
    PyObject *r = PyObject_CallFunction(self->exists, "(i)", slot);
    if (r == NULL) return false;
    int yes = PyObject_IsTrue(r);
    Py_DECREF(r);
    return yes > 0;
}

static void store_log(void *ctx, char level, const char *msg, size_t len)
{
    StoreObject *self = ctx;
    if (PyErr_Occurred()) return;
    PyObject *r = PyObject_CallFunction(self->log, "(Cs#)", level, msg, (Py_ssize_t)len);
    Py_XDECREF(r);
}

static int Store_init(StoreObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "load", "save", "exists", "log", "builtin_name", "restart", "confirm_after",
                              "fresh_boots", NULL };
    PyObject *load, *save, *exists, *log, *builtin, *restart;
    unsigned int confirm_after = 60, fresh_boots = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO$UUII", kwlist, &load, &save, &exists, &log,
                                     &builtin, &restart, &confirm_after, &fresh_boots))
        return -1;
    if (fresh_boots > 255) {
        PyErr_SetString(PyExc_ValueError, "fresh_boots must be 0..255");
        return -1;
    }
    Py_XSETREF(self->load, Py_NewRef(load));
    Py_XSETREF(self->save, Py_NewRef(save));
    Py_XSETREF(self->exists, Py_NewRef(exists));
    Py_XSETREF(self->log, Py_NewRef(log));
    Py_XSETREF(self->builtin_name, Py_NewRef(builtin));
    Py_XSETREF(self->restart, Py_NewRef(restart));
    const char *builtin_utf8 = PyUnicode_AsUTF8(builtin), *restart_utf8 = PyUnicode_AsUTF8(restart);
    if (builtin_utf8 == NULL || restart_utf8 == NULL) return -1;
    const ph_store_ops ops = { self, store_load, store_save, store_slot_exists, store_log };
    ph_store_init(&self->store, &ops, builtin_utf8, restart_utf8, confirm_after,
                  (uint8_t)fresh_boots);
    return 0;
}

static int Store_traverse(StoreObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->load);
    Py_VISIT(self->save);
    Py_VISIT(self->exists);
    Py_VISIT(self->log);
    return 0;
}

static int Store_clear(StoreObject *self)
{
    Py_CLEAR(self->load);
    Py_CLEAR(self->save);
    Py_CLEAR(self->exists);
    Py_CLEAR(self->log);
    Py_CLEAR(self->builtin_name);
    Py_CLEAR(self->restart);
    return 0;
}

static void Store_dealloc(StoreObject *self)
{
    PyObject_GC_UnTrack(self);
    Store_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(StoreObject *self)
{
    if (self->load == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Store.__init__ was not called");
        return 0;
    }
    return 1;
}

/* The callbacks' exception, if one was raised during the call, else `result`. */
static PyObject *finish(PyObject *result)
{
    if (PyErr_Occurred()) {
        Py_XDECREF(result);
        return NULL;
    }
    return result;
}

static int slot_arg(PyObject *arg, int *slot)
{
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) return 0;
    *slot = v < -1000 || v > 1000 ? 1000 : (int)v;   /* out of range: not a slot */
    return 1;
}

static PyObject *Store_boot_order(StoreObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self)) return NULL;
    int order[PH_STORE_SLOTS + 1];
    int n = ph_store_boot_order(&self->store, order);
    if (PyErr_Occurred()) return NULL;
    PyObject *list = PyList_New(n);
    for (int i = 0; list != NULL && i < n; i++) PyList_SET_ITEM(list, i, PyLong_FromLong(order[i]));
    return list;
}

#define SLOT_METHOD(name, call)                                                            \
    static PyObject *Store_##name(StoreObject *self, PyObject *arg)                        \
    {                                                                                      \
        int slot;                                                                          \
        if (!ready(self) || !slot_arg(arg, &slot)) return NULL;                            \
        call;                                                                              \
        return finish(Py_NewRef(Py_None));                                                 \
    }
SLOT_METHOD(note_boot, ph_store_note_boot(&self->store, slot))
SLOT_METHOD(mark_bad, ph_store_mark_bad(&self->store, slot))

static PyObject *Store_activate(StoreObject *self, PyObject *arg)
{
    int slot;
    if (!ready(self) || !slot_arg(arg, &slot)) return NULL;
    int rc = ph_store_activate(&self->store, slot);
    if (PyErr_Occurred()) return NULL;
    if (rc < 0) return PyErr_Format(PyExc_ValueError, "%d is not a module slot", slot);
    Py_RETURN_NONE;
}

static PyObject *Store_record_upload(StoreObject *self, PyObject *args)
{
    int slot;
    unsigned int len;
    Py_buffer sha;
    if (!ready(self) || !PyArg_ParseTuple(args, "iIy*", &slot, &len, &sha)) return NULL;
    int rc = -1;
    if (sha.len == 32) rc = ph_store_record_upload(&self->store, slot, len, sha.buf);
    PyBuffer_Release(&sha);
    if (PyErr_Occurred()) return NULL;
    if (rc < 0) return PyErr_Format(PyExc_ValueError, "cannot record %u bytes in slot %d", len, slot);
    Py_RETURN_NONE;
}

static PyObject *Store_verify(StoreObject *self, PyObject *args)
{
    int slot;
    Py_ssize_t len;
    Py_buffer sha;
    if (!ready(self) || !PyArg_ParseTuple(args, "iny*", &slot, &len, &sha)) return NULL;
    char err[160] = "";
    bool ok = sha.len == 32 && ph_store_verify(&self->store, slot, (size_t)len, sha.buf, err, sizeof err);
    PyBuffer_Release(&sha);
    if (PyErr_Occurred()) return NULL;
    if (!ok) return PyErr_Format(PyExc_ValueError, "%s", err[0] ? err : "a SHA-256 is 32 bytes");
    Py_RETURN_NONE;
}

static PyObject *Store_recorded_len(StoreObject *self, PyObject *arg)
{
    int slot;
    if (!ready(self) || !slot_arg(arg, &slot)) return NULL;
    return finish(PyLong_FromUnsignedLong(ph_store_recorded_len(&self->store, slot)));
}

static PyObject *Store_free_slot(StoreObject *self, PyObject *Py_UNUSED(ignored))
{
    return ready(self) ? PyLong_FromLong(ph_store_free_slot(&self->store)) : NULL;
}

static PyObject *Store_needs_confirm(StoreObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self)) return NULL;
    return finish(PyBool_FromLong(ph_store_needs_confirm(&self->store)));
}

static PyObject *Store_confirm(StoreObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self)) return NULL;
    ph_store_confirm(&self->store);
    return finish(Py_NewRef(Py_None));
}

static PyObject *Store_clean_shutdown(StoreObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self)) return NULL;
    ph_store_clean_shutdown(&self->store);
    return finish(Py_NewRef(Py_None));
}

static PyObject *Store_trial_trapped(StoreObject *self, PyObject *arg)
{
    if (!ready(self)) return NULL;
    unsigned long traps = PyLong_AsUnsignedLong(arg);
    if (traps == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    int failed = ph_store_trial_trapped(&self->store, traps > UINT32_MAX ? UINT32_MAX : (uint32_t)traps);
    if (PyErr_Occurred()) return NULL;
    if (failed == PH_STORE_NONE) Py_RETURN_NONE;
    return PyLong_FromLong(failed);
}

static PyObject *Store_note_fallback(StoreObject *self, PyObject *args)
{
    int failed, now;
    unsigned int traps;
    if (!ready(self) || !PyArg_ParseTuple(args, "iIi", &failed, &traps, &now)) return NULL;
    ph_store_note_fallback(&self->store, failed, traps, now);
    return finish(Py_NewRef(Py_None));
}

static PyObject *Store_get_trial_failure(StoreObject *self, void *Py_UNUSED(closure))
{
    if (self->store.trial_failed == PH_STORE_NONE) Py_RETURN_NONE;
    return Py_BuildValue("(iki)", self->store.trial_failed,
                         (unsigned long)self->store.trial_failed_traps, self->store.trial_failed_then);
}

static PyObject *Store_slot_name(StoreObject *self, PyObject *arg)
{
    int slot;
    if (!ready(self) || !slot_arg(arg, &slot)) return NULL;
    return PyUnicode_FromString(ph_store_slot_name(&self->store, slot));
}

static PyObject *Store_get_running(StoreObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->store.running);
}

static PyMethodDef Store_methods[] = {
    { "boot_order", (PyCFunction)Store_boot_order, METH_NOARGS,
      "boot_order() -> [slot, ...]: the slots to try at boot, best first; BUILTIN last" },
    { "note_boot", (PyCFunction)Store_note_boot, METH_O, "note_boot(slot): the hub booted it" },
    { "mark_bad", (PyCFunction)Store_mark_bad, METH_O,
      "mark_bad(slot): forget its record; the previous module becomes active if it was" },
    { "free_slot", (PyCFunction)Store_free_slot, METH_NOARGS,
      "free_slot() -> the slot an upload may overwrite (never the running one)" },
    { "record_upload", (PyCFunction)Store_record_upload, METH_VARARGS,
      "record_upload(slot, length, sha256_bytes): an upload was written there and checked" },
    { "activate", (PyCFunction)Store_activate, METH_O,
      "activate(slot): the hub runs it now, on trial; the old active module is the previous" },
    { "needs_confirm", (PyCFunction)Store_needs_confirm, METH_NOARGS, "the active module is on trial" },
    { "confirm", (PyCFunction)Store_confirm, METH_NOARGS, "confirm(): it stays across restarts" },
    { "clean_shutdown", (PyCFunction)Store_clean_shutdown, METH_NOARGS,
      "clean_shutdown(): stopped on purpose; a module on trial gets its fresh boots again" },
    { "verify", (PyCFunction)Store_verify, METH_VARARGS,
      "verify(slot, length, sha256_bytes): raises ValueError with the reason on a mismatch" },
    { "recorded_len", (PyCFunction)Store_recorded_len, METH_O,
      "recorded_len(slot) -> bytes recorded for its module, 0 when empty" },
    { "slot_name", (PyCFunction)Store_slot_name, METH_O, "slot_name(slot) -> 'hubmod0', ..." },
    { "trial_trapped", (PyCFunction)Store_trial_trapped, METH_O,
      "trial_trapped(traps) -> slot or None: the running module on trial trapped; give it up" },
    { "note_fallback", (PyCFunction)Store_note_fallback, METH_VARARGS,
      "note_fallback(failed, traps, now): `now` runs instead of the module given up (logs why)" },
    { NULL, NULL, 0, NULL },
};

static PyGetSetDef Store_getset[] = {
    { "running", (getter)Store_get_running, NULL, "the slot the hub runs now", NULL },
    { "trial_failure", (getter)Store_get_trial_failure, NULL,
      "(slot, traps, slot run instead) of the last module given up on trial, or None", NULL },
    { NULL, NULL, NULL, NULL, NULL },
};

static PyTypeObject StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pigeonhub._bridge.Store",
    .tp_doc = PyDoc_STR("Store(load, save, exists, log, *, builtin_name, restart, confirm_after, "
                        "fresh_boots)\n\nThe module store's policy (ph_module_store.c) over a "
                        "state the caller keeps."),
    .tp_basicsize = sizeof(StoreObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Store_init,
    .tp_dealloc = (destructor)Store_dealloc,
    .tp_traverse = (traverseproc)Store_traverse,
    .tp_clear = (inquiry)Store_clear,
    .tp_methods = Store_methods,
    .tp_getset = Store_getset,
};

/* upload_check(token, token_hint, authorization, sha256_hex, content_length, slot_bytes)
 *   -> None, or (status, reason): ph_upload_check() for POST /module on the PC hub. */
static PyObject *upload_check(PyObject *Py_UNUSED(module), PyObject *args)
{
    ph_upload_request rq = { 0 };
    Py_ssize_t slot_bytes;
    if (!PyArg_ParseTuple(args, "zszzzn", &rq.token, &rq.token_hint, &rq.authorization,
                          &rq.sha256_hex, &rq.content_length, &slot_bytes))
        return NULL;
    rq.slot_bytes = slot_bytes < 0 ? 0 : (size_t)slot_bytes;
    size_t length;
    uint8_t sha[32];
    char reason[200];
    int status = ph_upload_check(&rq, &length, sha, reason, sizeof reason);
    if (status == 0) Py_RETURN_NONE;
    PyObject *text = PyUnicode_DecodeUTF8(reason, (Py_ssize_t)strlen(reason), "replace");
    return text ? Py_BuildValue("(iN)", status, text) : NULL;
}

static PyMethodDef store_functions[] = {
    { "upload_check", upload_check, METH_VARARGS,
      "upload_check(token, token_hint, authorization, sha256_hex, content_length, slot_bytes)\n"
      "-> None, or (status, reason): POST /module's checks before the body (ph_upload_check.c)" },
    { NULL, NULL, 0, NULL },
};

int bridge_store_register(PyObject *module)
{
    if (PyModule_AddFunctions(module, store_functions) < 0) return -1;
    if (PyType_Ready(&StoreType) < 0) return -1;
    if (PyModule_AddObject(module, "Store", Py_NewRef((PyObject *)&StoreType)) < 0) return -1;
    static const char *const names[PH_STORE_SLOTS] = PH_STORE_SLOT_NAMES;
    PyObject *tuple = PyTuple_New(PH_STORE_SLOTS);
    for (int i = 0; tuple != NULL && i < PH_STORE_SLOTS; i++)
        PyTuple_SET_ITEM(tuple, i, PyUnicode_FromString(names[i]));
    if (tuple == NULL || PyModule_AddObject(module, "STORE_SLOT_NAMES", tuple) < 0) {
        Py_XDECREF(tuple);
        return -1;
    }
    static const struct { const char *name; int value; } constants[] = {
        { "STORE_BUILTIN", PH_STORE_BUILTIN }, { "STORE_SLOT_BYTES", PH_STORE_SLOT_BYTES },
        { "STORE_CONFIRM_SECONDS", PH_STORE_CONFIRM_S_DEFAULT },
        { "UPLOAD_TOKEN_MIN", PH_UPLOAD_TOKEN_MIN }, { "UPLOAD_TOKEN_MAX", PH_UPLOAD_TOKEN_MAX },
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (PyModule_AddIntConstant(module, constants[i].name, constants[i].value) < 0) return -1;
    return 0;
}

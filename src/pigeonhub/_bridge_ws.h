/* _bridge_ws.h — the WebSocket framing speedups (_bridge_ws.c), added to the module by _bridge.c. */
#ifndef PIGEONHUB_BRIDGE_WS_H
#define PIGEONHUB_BRIDGE_WS_H

#include <Python.h>

/* Adds unmask, text_frames, cut_frames and the CUT_* constants to the module; 0 or -1. */
int bridge_ws_register(PyObject *module);

#endif

/* _bridge_store.h — pigeonhub._bridge.Store (_bridge_store.c), added to the module by _bridge.c. */
#ifndef PIGEONHUB_BRIDGE_STORE_H
#define PIGEONHUB_BRIDGE_STORE_H

#include <Python.h>

/* Adds Store, upload_check and their constants (STORE_*, UPLOAD_TOKEN_*) to the module; 0 or -1. */
int bridge_store_register(PyObject *module);

#endif

"""pre: build, check and place hub.wasm (and the WASM3 sources) before anything compiles.

Thin shim; the logic and its tests: scripts/pio_support.py, test/firmware/test_pio_support.py.
"""
import os
import sys

Import("env")  # noqa: F821  (SCons injects it)

# repository tooling (scripts/pio_support.py); it imports the pigeonhub package from src/
sys.path.insert(0, os.path.join(env.subst("$PROJECT_DIR"), "scripts"))  # noqa: F821
import pio_support  # noqa: E402

pio_support.pre_build(env)  # noqa: F821

"""pre: build, check and place hub.wasm (and the WASM3 sources) before anything compiles.

Thin shim; the logic and its tests: pigeonhub/pio_support.py, test/firmware/test_pio_support.py.
"""
import sys

Import("env")  # noqa: F821  (SCons injects it)

sys.path.insert(0, env.subst("$PROJECT_DIR"))  # noqa: F821  (this checkout's pigeonhub package)
from pigeonhub import pio_support  # noqa: E402

pio_support.pre_build(env)  # noqa: F821

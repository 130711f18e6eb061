"""Custom targets: `pio run -t upload_module` and `pio run -t module_info`.

Thin shim; the logic and its tests: scripts/pio_support.py, test/firmware/test_pio_support.py.
"""
import os
import sys

Import("env")  # noqa: F821  (SCons injects it)

sys.path.insert(0, os.path.join(env.subst("$PROJECT_DIR"), "scripts"))  # noqa: F821
import pio_support  # noqa: E402

pio_support.add_custom_targets(env)  # noqa: F821

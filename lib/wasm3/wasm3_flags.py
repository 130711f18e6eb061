"""PlatformIO library script for WASM3: per-platform flags a static library.json cannot express.

On ESP32 chips, -DESP32 makes WASM3 mark its opcode handlers IRAM_ATTR (m3_config_platforms.h), so
the interpreter runs from internal RAM instead of flash cache. Upstream's ESP-IDF example adds
-DM3_IN_IRAM instead, but that relies on a linker fragment placing the whole library in IRAM, which
ESP-IDF's ldgen applies only to CMake components, not to PlatformIO libraries; with it the
interpreter would silently run from flash. -O3 -freorder-blocks are upstream's ESP32 speed flags.

-fwrapv everywhere: WASM3 implements i32.add & co. with C signed arithmetic and WebAssembly requires
them to wrap (the bridge's host Makefile uses it for the same reason).
"""

Import("env")  # noqa: F821  (SCons injects it)

env.Append(CCFLAGS=["-fwrapv"])  # noqa: F821

if env.get("PIOPLATFORM") == "espressif32":  # noqa: F821
    env.Append(CPPDEFINES=["ESP32"], CCFLAGS=["-O3", "-freorder-blocks"])  # noqa: F821
else:
    # Host: strict C11 plus the POSIX clock WASM3 uses; matches the bridge's plain host build.
    env.Append(CPPDEFINES=[("_POSIX_C_SOURCE", "200809L")], CCFLAGS=["-O2"])  # noqa: F821

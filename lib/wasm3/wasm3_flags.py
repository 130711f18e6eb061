"""PlatformIO library script for WASM3 in the host (`native`) env: flags a static library.json
cannot express. On the ESP32 envs WASM3 is an ESP-IDF component instead (CMakeLists.txt here holds
its ESP32 configuration) and PlatformIO's library finder ignores this folder (platformio.ini).

-fwrapv: WASM3 implements i32.add & co. with C signed arithmetic and WebAssembly requires them to
wrap (the bridge's host Makefile uses it for the same reason).
"""

Import("env")  # noqa: F821  (SCons injects it)

# Host: strict C11 plus the POSIX clock WASM3 uses; matches the bridge's plain host build.
env.Append(CCFLAGS=["-fwrapv", "-O2"], CPPDEFINES=[("_POSIX_C_SOURCE", "200809L")])  # noqa: F821

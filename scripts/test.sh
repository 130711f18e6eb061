#!/usr/bin/env bash
# The whole test suite: `make test` (README) and .ci/run (CI) end here, after scripts/setup.sh test.
# Stages run in dependency order; the first failure stops the run with its own message.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p build

started=$SECONDS
# each stage line says how long the run has taken so far: the whole of it must stay under CI's limit
stage() { printf '\n=== [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"; }

stage "hub.wasm: build from source, check budgets and ABI"
pigeonhub build --out build/hub.wasm
pigeonhub build --test-hooks --out build/hub-test-hooks.wasm >/dev/null

# The firmware builds (minutes each) run from here in the background, at low priority, beside the
# fuzzers (bounded in time, not in work) and the PC suites; the board stages wait for them.
firmware_pid=
if python3 scripts/emulator.py present; then
    (for target in esp32 esp32c3; do
        nice -n 19 python3 scripts/emulator.py build --target "$target" || exit 1
    done) > build/emulator-firmware.log 2>&1 &
    firmware_pid=$!
fi

stage "C unit tests under ASan/UBSan: hub module (native build)"
make -s -C test/native/module

stage "C unit tests under ASan/UBSan: bridge core with WASM3"
# the bridge suite needs the test hooks (its trap tests send "__test_trap")
HUB_WASM="$PWD/build/hub-test-hooks.wasm" make -s -C test/native/bridge

stage "libFuzzer: every target (module, bridge, check_module, upload_check, upload_body, frames, upload) 30 s on its corpus, every committed input replayed (fuzz/)"
make -s -C fuzz run FUZZ_SECONDS=30
make -s -C fuzz regress

stage "PlatformIO native env offline: bridge suite built and run by pio test (real pre-build step)"
python3 scripts/pio_offline.py test

stage "pytest-embedded against the PC twin, test/embedded/pc_twin.py (on a board: --embedded-services esp --port /dev/ttyUSB0)"
HUB_WASM="$PWD/build/hub.wasm" pytest test/embedded --embedded-services serial

stage "pytest: module under WASM3 and wasmtime, bridge, PC hub conformance, interop, firmware config, budgets"
# test/embedded ran in its own stage above (it needs --embedded-services)
# SOAK_SECONDS: test/soak's `pigeonhub soak` run against a PC hub lasts a minute in CI
SOAK_SECONDS=60 HUB_WASM="$PWD/build/hub.wasm" HUB_TEST_WASM="$PWD/build/hub-test-hooks.wasm" \
    pytest --ignore=test/embedded "$@"

stage "emulated board: the firmware built with ESP-IDF (esp32, esp32c3) and booted in QEMU"
if [ -n "$firmware_pid" ] && ! wait "$firmware_pid"; then
    tail -40 build/emulator-firmware.log
    echo "E (test) the firmware build failed: build/emulator-firmware.log has its whole output"
    exit 1
fi
if python3 scripts/emulator.py present; then
    for target in esp32 esp32c3; do
        stage "emulated $target: conformance, real peerpigeon clients, OTA and power cut, hub link, memory"
        pytest test/board test/conformance test/interop --emulated-board "$target"
        stage "emulated $target: pytest-embedded suites (QEMU's serial port on a pty)"
        pytest test/embedded --embedded-services serial --emulated-board "$target"
    done
else
    python3 scripts/emulator.py present --explain
fi
stage "all passed"

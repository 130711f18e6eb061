# The two commands of the README. Both set up everything they need first (scripts/setup.sh).
.PHONY: hub test bench emulator fuzz

# Run the hub on this PC: hub.wasm on WASM3 through the same bridge core as the firmware.
hub:
	@scripts/setup.sh hub
	.venv/bin/pigeonhub serve $(ARGS)

# Build the firmware for QEMU and boot it: serial log here, hub on ws://127.0.0.1:$(PORT).
# TARGET=esp32|esp32c3 (default esp32); the esp32-qemu kit is $(ESP32_QEMU_KIT), default ../shared/esp32-qemu.
# ICOUNT=N: QEMU's -icount shift=N, so the board's cycle counters count instructions (docs/PERFORMANCE.md).
TARGET ?= esp32
PORT ?= 3000
emulator:
	@scripts/setup.sh hub
	.venv/bin/python scripts/emulator.py run --target $(TARGET) --port $(PORT) $(if $(ICOUNT),--icount $(ICOUNT))

# Run the whole test suite (the same command CI runs).
test:
	@scripts/setup.sh test
	@scripts/test.sh

# PC hub vs the reference server side by side, plus the device figures; writes reports/bench/.
bench:
	@scripts/setup.sh test
	@.venv/bin/python -c "import matplotlib, orjson" 2>/dev/null || .venv/bin/pip install -q "matplotlib>=3.7" "orjson>=3.9"
	.venv/bin/pigeonhub bench --all --peers 5,10,20 --report reports/bench $(ARGS)

# Every fuzz target for FUZZ_SECONDS (default 60) each on its corpus, then every committed input
# replayed (fuzz/README.md; CI runs 30 s each).
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/setup.sh test
	@$(MAKE) -s -C fuzz run regress FUZZ_SECONDS=$(FUZZ_SECONDS)

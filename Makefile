# The two commands of the README. Both set up everything they need first (scripts/setup.sh).
.PHONY: hub test

# Run the hub on this PC: hub.wasm on WASM3 through the same bridge core as the firmware.
hub:
	@scripts/setup.sh hub
	.venv/bin/pigeonhub serve $(ARGS)

# Run the whole test suite (the same command CI runs).
test:
	@scripts/setup.sh test
	@scripts/test.sh

/*
 * `pio test -e native` entry for the bridge core's C suite, test/native/bridge/test_bridge.c.
 *
 * The suite is written for its Makefile (make -C test/native/bridge), which passes the fixture
 * folder and hub.wasm on the command line. PlatformIO runs the program without arguments, so this
 * file compiles the same suite unchanged and supplies them from the defines that the pre-build step
 * (scripts/pio_support.py) sets: PH_TEST_FIXTURES (fixtures built from custom_bridge_fixtures)
 * and PH_TEST_HUB_WASM (this env's hub.wasm, built with test hooks).
 * test/test_custom_runner.py reads the suite's PASS/FAIL/SKIP lines.
 */
#ifndef PH_TEST_FIXTURES
#error "PH_TEST_FIXTURES is not defined: set custom_bridge_fixtures in platformio.ini [env:native]"
#endif
#ifndef PH_TEST_HUB_WASM
#error "PH_TEST_HUB_WASM is not defined: extra_scripts/build_hub_wasm.py must run as a pre: script"
#endif

#define main bridge_suite_main
#include "../bridge/test_bridge.c"
#undef main

int main(void)
{
    char *argv[] = { "test_bridge", PH_TEST_FIXTURES, PH_TEST_HUB_WASM, NULL };
    return bridge_suite_main(3, argv);
}

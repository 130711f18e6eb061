"""Shared fixtures: the hub under test.

    pytest test/conformance                         # starts `pigeonhub serve` (the PC hub) itself
    pytest test/conformance --hub-url ws://IP:PORT  # a board, or any hub already running
    pytest test/conformance --against-reference     # the reference Node server (npm peerpigeon@1.1.3)
    pytest test/conformance --emulated-board esp32  # the firmware booted in QEMU (scripts/emulator.py)

The hub fixture is session-wide; tests isolate themselves with fresh peer ids and networks.
Environment: HUB_WASM (module the PC hub serves), HUB_TEST_WASM (module built with --test-hooks).
"""

import pytest

from hubprocess import RemoteHub, start_emulated_board, start_pc_hub, start_reference_hub

def pytest_addoption(parser):
    group = parser.getgroup("pigeonhub", "PigeonHub-WASM hub under test")
    group.addoption("--hub-url", default=None, metavar="ws://IP:PORT",
                    help="run the conformance suite against this running hub (a board or any PC "
                         "hub) instead of starting `pigeonhub serve`")
    group.addoption("--against-reference", action="store_true",
                    help="run the conformance suite against the reference Node server "
                         "(test/interop/node_modules/peerpigeon, npm peerpigeon@1.1.3) to prove "
                         "the tests; tests of deliberate improvements are expected to fail there")
    group.addoption("--emulated-board", default=None, choices=("esp32", "esp32c3"),
                    help="build the firmware for this chip with the esp32-qemu kit and run the "
                         "suites against it booted in QEMU (scripts/emulator.py)")


def pytest_configure(config):
    chosen = [o for o in ("--hub-url", "--against-reference", "--emulated-board")
              if config.getoption(o)]
    if len(chosen) > 1:
        raise pytest.UsageError(f"{' and '.join(chosen)} are mutually exclusive")


def pytest_collection_modifyitems(config, items):
    kind = hub_kind(config)
    for item in items:
        if kind == "reference" and item.get_closest_marker("improvement"):
            reason = item.get_closest_marker("improvement").kwargs.get(
                "reason", "deliberate improvement over the reference server")
            # strict: the reference must really behave differently, proving the test can fail
            item.add_marker(pytest.mark.xfail(reason=f"reference differs: {reason}", strict=True))
        if kind != "pc" and item.get_closest_marker("pc_hub"):
            item.add_marker(pytest.mark.skip(reason="needs the PC hub started by the suite "
                                                    "(not --hub-url / --against-reference)"))


def hub_kind(config):
    if config.getoption("--hub-url"):
        return "remote"
    if config.getoption("--against-reference"):
        return "reference"
    if config.getoption("--emulated-board"):
        return "board"
    return "pc"


@pytest.fixture(scope="session")
def hub(request, tmp_path_factory):
    """The hub under test: .kind ("pc", "reference", "remote", "board"), .url (ws://IP:PORT), .http."""
    kind = hub_kind(request.config)
    if kind == "remote":
        yield RemoteHub(request.config.getoption("--hub-url"))
        return
    log_path = tmp_path_factory.mktemp("hub") / f"{kind}-hub.log"
    if kind == "board":
        started = start_emulated_board(request.config.getoption("--emulated-board"), log_path)
    elif kind == "reference":
        started = start_reference_hub(log_path)
    else:
        started = start_pc_hub(log_path)
    yield started
    code = started.stop()
    if kind == "pc" and code != 0:
        # a crash or an unclean exit is a finding even when every test passed
        pytest.fail(f"pigeonhub serve exited with {code}; its log:\n{started.log()}",
                    pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used a hub this suite started shows the hub's log (last 80 lines)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed or "hub" not in getattr(item, "fixturenames", ()):
        return
    hub = item.funcargs.get("hub")
    if hub is not None and hub.kind != "remote":
        tail = "\n".join(hub.log().splitlines()[-80:])
        rep.sections.append((f"{hub.kind} hub log (last 80 lines)", tail))

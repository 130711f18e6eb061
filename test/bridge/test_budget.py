"""The call budget (ph_bridge_config.call_budget, lib/wasm3/patches/0006-call-budget.patch): a module
call that never returns traps instead of hanging the PC hub, as on the board.

Modules: the fixture's variants init_loops_forever (init() never returns), message_loops_forever
(on_message never returns for a frame starting with "R": a loop, or "F": 2^40 calls and no loop)
and tick_loops_forever (loop() never returns; byte for byte
fuzz/corpus/check_module/timeout-loop-never-returns).
"""
import faulthandler
import json
import os
import time

import pytest

from bridge_support import RecordingTransport
from test_extension import PEER_A, PEER_B, frames_of, join

# Far above what a budgeted runaway takes here (a few ms per call): a call that never returns
# ends the test run (exit status 1) with the tracebacks of where it hangs, on the real stderr,
# instead of hanging it.
HANG_SECONDS = 120


@pytest.fixture(autouse=True)
def no_hang(capfd):
    with capfd.disabled():
        stderr = os.dup(2)     # pytest's capture would swallow the traceback when the process ends
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=stderr)
    yield
    faulthandler.cancel_dump_traceback_later()
    os.close(stderr)


def budget_of(bridge):
    """The budget the bridge applies (PH_BRIDGE_CONFIG_DEFAULT's, the board's too)."""
    return json.loads(bridge.stats())["bridge"]["callBudget"]


def trap_text(budget):
    return f"[trap] module exceeded its per-call budget of {budget} loop iterations/calls"


def test_check_module_refuses_init_that_never_returns(bridge_mod, make_bridge, fixture_wasm, variant_wasm):
    budget = budget_of(make_bridge(fixture_wasm).bridge)
    assert budget >= 1_000_000
    start = time.monotonic()
    with pytest.raises(bridge_mod.BridgeError) as info:
        bridge_mod.check_module(variant_wasm["init_loops_forever"])
    assert time.monotonic() - start < 10
    assert str(info.value) == f"init() trapped: {trap_text(budget)}"
    assert info.value.code == bridge_mod.ERR_INIT
    # ph_bridge_create refuses it the same way, and logs the trap.
    rec = RecordingTransport()
    with pytest.raises(bridge_mod.BridgeError) as info2:
        bridge_mod.Bridge(variant_wasm["init_loops_forever"], rec)
    assert str(info2.value) == str(info.value) and info2.value.code == bridge_mod.ERR_INIT
    assert f"E hub.wasm init() trapped: {trap_text(budget)}" in rec.logs


def test_runaway_on_message_closes_its_connection_1011_only(make_bridge, variant_wasm):
    t = make_bridge(variant_wasm["message_loops_forever"], max_connections=4)
    budget = budget_of(t.bridge)
    a, b = t.open("/"), t.open("/")
    start = time.monotonic()
    t.frame(a, "R")
    assert time.monotonic() - start < 10
    assert t.closes[a] == (1011, "Hub module error")
    assert f"E hub.wasm on_message() trapped: {trap_text(budget)} (conn {a})" in t.logs
    t.frame(b, "Estill here")
    assert t.last(b) == b"Estill here" and b not in t.closes
    assert t.count_logs("D gone") == 1            # the module heard of the closed connection
    assert t.bridge.connection_count == 1
    # A call tree without any loop (2^40 calls): function entries spend the budget too.
    f = t.open("/")
    t.frame(f, "F")
    assert t.closes[f] == (1011, "Hub module error")
    assert f"E hub.wasm on_message() trapped: {trap_text(budget)} (conn {f})" in t.logs
    assert t.bridge.connection_count == 1
    # No slot leaked: 20 more runaways through the 4 slots, then every slot opens again.
    for _ in range(20):
        c = t.open("/")
        assert c >= 0
        t.frame(c, "R")
        assert t.closes[c][0] == 1011
    assert t.bridge.connection_count == 1 and t.bridge.peer_count == 1
    assert all(t.open("/") >= 0 for _ in range(3))
    assert t.bridge.open("/") == -1
    t.frame(b, "Eafter 22 runaways")
    assert t.last(b) == b"Eafter 22 runaways"
    stats = json.loads(t.bridge.stats())["bridge"]
    assert stats["traps"] == 22 and stats["callBudgetPeak"] == budget


def test_runaway_loop_traps_every_tick(make_bridge, variant_wasm):
    t = make_bridge(variant_wasm["tick_loops_forever"])
    a = t.open("/")
    t.bridge.tick()
    t.bridge.tick()
    assert t.count_logs("E hub.wasm loop() trapped: [trap] module exceeded its per-call budget of ") == 2
    assert a not in t.closes
    t.frame(a, "Eserved")
    assert t.last(a) == b"Eserved"


def test_real_hub_stays_far_below_the_budget(make_bridge, hub_wasm):
    """The heaviest frame the hub accepts: the whole input buffer of tiny members of the frame's
    own object (the module walks those itself; nested values are checked by the host), relayed as
    a goodbye to a network of peers."""
    t = make_bridge(hub_wasm)
    budget = budget_of(t.bridge)
    a, b = join(t, PEER_A), join(t, PEER_B)
    size = t.bridge.input_buffer_size
    head, tail = '{"type":"goodbye","data":0', '}'
    frame = head + ',"":0' * ((size - len(head) - len(tail)) // 5) + tail
    t.frame(a, frame)
    assert a not in t.closes and frames_of(t, b, "goodbye")
    peak = json.loads(t.bridge.stats())["bridge"]["callBudgetPeak"]
    assert 20_000 < peak < budget // 20, f"peak {peak} of a budget of {budget}"

"""A module that traps while on trial is not confirmed: the hub gives it up within a tick, swaps the
previous module back in live (peers stay connected, as in any swap), marks the slot bad, says so in
an ESP-IDF-style error line and in /stats (module.trialFailure). The policy is the bridge core's
(ph_store_trial_trapped, the board's too); the module is the real hub.wasm built with --test-hooks,
which traps on the frame {"type":"__test_trap"}.
"""
import json
import re
import time

import pytest

from ota_support import TOKEN, run_upload
from hubclient import Peer, assert_relays, joined_pair
from hubprocess import http_get, start_pc_hub
from pigeonhub.hub.module_store import ModuleStore

pytestmark = pytest.mark.slow


def stats(hub):
    return json.loads(http_get(hub, "/stats")[2])


def upload(hub, path):
    proc = run_upload("--host", hub.host, "--port", hub.port, "--token", TOKEN, path)
    assert proc.returncode == 0, proc.stderr


def trap(hub):
    """A third peer sends the trapping frame; the bridge closes it 1011."""
    c = Peer(hub.url)
    c.expect("connected")
    c.send({"type": "__test_trap", "data": {}})
    assert c.expect_close() == (1011, "Hub module error")


def wait_for(hub, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while text not in hub.log():
        assert time.monotonic() < deadline, f"not in the log after {timeout} s: {text}"
        time.sleep(0.1)


def test_module_that_traps_on_trial_is_replaced_by_the_previous_one(tmp_path, packaged_wasm,
                                                                     trap_wasm):
    mods = tmp_path / "mods"
    hub = start_pc_hub(tmp_path / "hub.log", "--module-dir", mods, "--upload-token", TOKEN,
                       "--module-confirm-seconds", "60", module=packaged_wasm)
    try:
        packaged_sha = stats(hub)["module"]["sha256"]
        assert stats(hub)["module"]["trialFailure"] is None
        a, b = joined_pair(hub.url)
        upload(hub, trap_wasm)
        assert stats(hub)["module"]["source"] == "hubmod0"
        trap(hub)
        wait_for(hub, "while on trial")
        assert re.search(r"^E \(\d+\) pigeonhub: module hubmod0 trapped 1 time while on trial: not "
                         r"confirmed, slot marked bad; packaged runs now$", hub.log(), re.M), hub.log()
        s = stats(hub)
        assert s["module"]["sha256"] == packaged_sha and s["module"]["source"] == "packaged"
        assert s["module"]["trialFailure"] == {"slot": "hubmod0", "traps": 1, "replacedBy": "packaged"}
        assert s["bridge"]["swaps"] == 2 and s["bridge"]["lastSwapReplayed"] == 2
        # The peers never noticed: still connected, still relayed, no second `connected`.
        assert [m["type"] for m in a.drain() + b.drain()
                if m["type"] not in ("peer-disconnected",)] == []
        assert_relays(a, b, "after-fallback")
        assert_relays(b, a, "back")
        state = ModuleStore(mods).state()
        assert state["active"] is None and not state["trial"] and state["slots"]["0"] is None
        a.close()
        b.close()
    finally:
        assert hub.stop() == 0
    # Restarted, the hub runs the packaged module: the slot given up is not tried again.
    hub = start_pc_hub(tmp_path / "hub2.log", "--module-dir", mods, "--upload-token", TOKEN,
                       module=packaged_wasm)
    try:
        s = stats(hub)
        assert s["module"]["source"] == "packaged" and s["module"]["sha256"] == packaged_sha
    finally:
        assert hub.stop() == 0


def test_a_confirmed_module_that_traps_keeps_running(tmp_path, packaged_wasm, trap_wasm):
    hub = start_pc_hub(tmp_path / "hub.log", "--module-dir", tmp_path / "mods", "--upload-token",
                       TOKEN, "--module-confirm-seconds", "1", module=packaged_wasm)
    try:
        upload(hub, trap_wasm)
        wait_for(hub, "module confirmed: it stays active across restarts")
        trap(hub)
        time.sleep(2.5)   # two ticks: time to give it up, were it still on trial
        s = stats(hub)
        assert s["module"]["source"] == "hubmod0" and s["bridge"]["traps"] == 1
        assert s["module"]["trialFailure"] is None and "while on trial" not in hub.log()
    finally:
        assert hub.stop() == 0

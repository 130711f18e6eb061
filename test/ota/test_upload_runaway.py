"""An uploaded module whose init() never returns is refused (422) with the reason, in bounded time,
and the hub keeps serving: the upload check runs init() under the bridge's call budget
(ph_bridge_config.call_budget, lib/wasm3/patches/0006-call-budget.patch). Before it, the check
never returned and the PC hub (like the board's hub task) stopped serving.
"""
import hashlib
import http.client
import json
import time

import pytest

from ota_support import TOKEN
from hubclient import assert_relays, joined_pair
from hubprocess import http_get, start_pc_hub
from pigeonhub.hub.module_store import ModuleStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def init_loops_wasm(fixture_variants) -> bytes:
    """The bridge fixture whose init() is `(loop $forever (br $forever))` (variants.py)."""
    return fixture_variants["init_loops_forever"].read_bytes()


def post_module(hub, body, timeout=60):
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=timeout)
    conn.request("POST", "/module", body=body, headers={
        "Authorization": f"Bearer {TOKEN}", "X-Module-SHA256": hashlib.sha256(body).hexdigest(),
        "Content-Length": str(len(body))})
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read())
    conn.close()
    return out


def test_upload_of_module_whose_init_never_returns_is_refused_422(tmp_path, packaged_wasm,
                                                                   init_loops_wasm):
    mods = tmp_path / "mods"
    hub = start_pc_hub(tmp_path / "hub.log", "--module-dir", mods, "--upload-token", TOKEN,
                       module=packaged_wasm)
    try:
        a, b = joined_pair(hub.url)
        stats = json.loads(http_get(hub, "/stats")[2])
        budget = stats["bridge"]["callBudget"]
        module_sha = stats["module"]["sha256"]
        reason = (f"module rejected: init() trapped: [trap] module exceeded its per-call budget of "
                  f"{budget} loop iterations/calls")
        start = time.monotonic()
        status, answer = post_module(hub, init_loops_wasm)
        took = time.monotonic() - start
        assert (status, answer) == (422, {"error": reason})
        assert took < 10, f"the upload check took {took:.1f} s"
        assert f"/module 422 Unprocessable Entity: {reason}" in hub.log()
        # The running module is untouched and serves on; nothing of the upload is kept.
        assert_relays(a, b, "after-runaway-upload")
        stats = json.loads(http_get(hub, "/stats")[2])
        assert stats["module"]["sha256"] == module_sha and stats["bridge"]["swaps"] == 0
        state = ModuleStore(mods).state()
        assert state["active"] is None and state["slots"] == {"0": None, "1": None}
        a.close()
        b.close()
    finally:
        assert hub.stop() == 0

"""How much WASM3 value stack hub.wasm needs, and that the bridge default covers it with room.

WASM3's stack (ph_bridge_config.wasm_stack_bytes, PH_BRIDGE_DEFAULT_WASM_STACK) holds the slots of
every active wasm call. json.c validates iteratively, so the deepest JSON the module accepts
(nesting 32, the frame object included) does not deepen the call chain; the deepest chain is a relay/announce building a
frame. These tests run the heaviest scenario on real WASM3 (pywasm3 0.5.0, 32-bit slots as on the
ESP32) with a given stack, and check a too-small stack really traps (so the measurement means
something).
"""

import pytest
import wasm3

from module_harness import ABI, Hub
from pigeonhub.module.build import bridge_defaults

MEASURED_NEED = 1536       # bytes: passes; 1024 traps (see test_too_small_stack_traps)


def bridge_default_wasm_stack():
    return bridge_defaults()["WASM_STACK"]


class StackHub(Hub):
    """Hub on WASM3 with a chosen runtime stack (the harness default is the old 16 KiB)."""

    def __init__(self, wasm, stack_bytes):
        self.stack_bytes = stack_bytes
        super().__init__(wasm, "wasm3")

    def _load(self, wasm):
        impls = {name: getattr(self, "_imp_" + name) for name in ABI.imports}
        self._env = wasm3.Environment()
        self._rt = self._env.new_runtime(self.stack_bytes)
        mod = self._env.parse_module(wasm)
        self._rt.load(mod)
        for name, entry in ABI.imports.items():
            mod.link_function("env", name, entry.signature, self._guard(impls[name]))
        self._mod = mod
        self._funcs = {}


def heaviest_scenario(hub):
    """20 announced peers with nested data, the deepest accepted nesting relayed, one refused,
    an unknown type echoed, goodbye, stats, heartbeat, disconnect, shutdown."""
    ids = [f"{i * 7919 + 1:040x}" for i in range(20)]
    for i, peer in enumerate(ids):
        hub.connect(i, peer)
        hub.send(i, {"type": "announce", "networkName": "n", "data": {"x": [1, {"y": 2}]}})
    # the frame object is level 1: data nested 31 deep is the deepest the module accepts (32)
    deep = (b'{"type":"offer","data":' + b"[" * 31 + b"]" * 31 + b',"targetPeerId":"'
            + ids[1].encode() + b'","networkName":"n"}')
    hub.take()
    hub.send_raw(0, deep)
    assert [conn for conn, _ in hub.take()] == [1], "the 32-deep offer was not relayed"
    hub.send_raw(0, b'{"type":"offer","data":' + b"[" * 32 + b"]" * 32 + b"}")   # refused: depth
    assert hub.stats_json()["dropped"]["invalidJson"] == 1
    hub.send(1, {"type": "zz\u00e9"})
    hub.send(0, {"type": "goodbye"})
    hub.now += 31000
    hub.loop()
    hub.disconnect(3)
    hub.call("stop_server")


def test_bridge_default_wasm_stack_runs_the_heaviest_scenario(wasm_bytes):
    default = bridge_default_wasm_stack()
    assert default >= 2 * MEASURED_NEED, "keep at least 2x the measured need for module updates"
    heaviest_scenario(StackHub(wasm_bytes, default))


def test_measured_need_is_enough(wasm_bytes):
    heaviest_scenario(StackHub(wasm_bytes, MEASURED_NEED))


def test_too_small_stack_traps(wasm_bytes):
    with pytest.raises(RuntimeError, match="stack overflow"):
        heaviest_scenario(StackHub(wasm_bytes, 1024))


@pytest.mark.parametrize("engine", ["wasm3", "wasmtime"])
def test_mvp_build_relays_the_same_bytes(built, tmp_path, engine):
    """`pigeonhub build --mvp` (no bulk memory) is a working fallback: same relay output."""
    from pigeonhub.module import build
    mvp = build.build_module(tmp_path / "mvp.wasm", bulk_memory=False)
    frames = []
    for wasm in (built.path.read_bytes(), mvp.path.read_bytes()):
        hub = Hub(wasm, engine)
        a, b = "a" * 40, "b" * 40
        hub.connect(1, a)
        hub.connect(2, b)
        hub.take()
        sdp = "v=0\\r\\n" + "a=candidate \u00e9\u4e2d\U0001F600 x\\r\\n" * 200
        hub.send(1, {"type": "offer", "data": {"sdp": sdp, "type": "offer"}, "targetPeerId": b})
        frames.append(hub.take_raw())
    assert frames[0] == frames[1] and len(frames[0]) == 1

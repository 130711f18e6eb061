"""Bridge.swap(): replacing the running module in place, as `POST /module` does on the PC hub."""
import hashlib
import json
import sys

import pytest

from bridge_support import variants
from test_extension import PEER_A, PEER_B, PEER_C, frames_of, join, offer


def seen(t):
    """Everything the clients have been sent or asked for so far."""
    return (sum(len(f) for f in t.frames.values()), dict(t.close_calls), list(t.pings))


def test_swap_keeps_peers_and_sends_nothing(make_bridge, hub_wasm):
    t = make_bridge(hub_wasm)
    b = t.bridge
    a, c = join(t, PEER_A), join(t, PEER_B)
    before = seen(t)
    new = bytes(hub_wasm)   # a distinct bytes object, as an upload brings it
    assert b.swap(new) == 2
    t.pump()
    assert seen(t) == before, "clients must not see duplicate connected/peer-discovered frames"
    assert b.peer_count == 2 and b.connection_count == 2
    assert b.module_sha256 == hashlib.sha256(new).hexdigest() and b.module_size == len(new)
    t.frame(a, offer(PEER_B, 300))
    assert [m["fromPeerId"] for m in frames_of(t, c, "offer")] == [PEER_A]
    d = join(t, PEER_C)
    assert [m["data"]["peerId"] for m in frames_of(t, d, "peer-discovered")] == [PEER_A, PEER_B]
    assert len(frames_of(t, a, "connected")) == 1
    stats = json.loads(b.stats())["bridge"]
    assert stats["swaps"] == 1 and stats["lastSwapReplayed"] == 2 and stats["lastSwapAnnounces"] == 2
    assert stats["outboxBytes"] == 0


@pytest.mark.parametrize("name,old,new,code_name,message", variants.VARIANTS,
                         ids=[v[0] for v in variants.VARIANTS])
def test_swap_refused_variant_keeps_old_module(bridge_mod, make_bridge, fixture_wasm, variant_wasm, name,
                                               old, new, code_name, message):
    t = make_bridge(fixture_wasm)
    b = t.bridge
    conn = t.open("/")
    sha, hub_id, before = b.module_sha256, b.hub_id, seen(t)
    with pytest.raises(bridge_mod.BridgeError) as info:
        b.swap(variant_wasm[name])
    assert message in str(info.value)
    assert info.value.code == getattr(bridge_mod, code_name.replace("PH_", ""))
    assert seen(t) == before
    assert (b.module_sha256, b.hub_id) == (sha, hub_id)
    t.frame(conn, "Estill the old one")
    assert t.last(conn) == b"Estill the old one"


@pytest.mark.parametrize("mangle,code_name,message", [
    (lambda w: b"PK\x03\x04 a zip file", "ERR_NOT_WASM", "not a WebAssembly module: starts with 50 4b 03 04"),
    (lambda w: w[:-10], "ERR_LOAD", "module is truncated: its "),
    (lambda w: w[:4] + b"\x02" + w[5:], "ERR_NOT_WASM", "binary version 2, expected 1"),
])
def test_swap_refuses_non_wasm_and_truncated(bridge_mod, make_bridge, fixture_wasm, mangle, code_name,
                                             message):
    t = make_bridge(fixture_wasm)
    conn = t.open("/")
    with pytest.raises(bridge_mod.BridgeError) as info:
        t.bridge.swap(mangle(fixture_wasm))
    assert message in str(info.value) and info.value.code == getattr(bridge_mod, code_name)
    t.frame(conn, "Eok")
    assert t.last(conn) == b"Eok"


def test_swap_failing_during_replay_keeps_old_module(bridge_mod, make_bridge, fixture_wasm, variant_wasm):
    t = make_bridge(fixture_wasm)
    conn = t.open("/")
    with pytest.raises(bridge_mod.BridgeError) as info:
        t.bridge.swap(variant_wasm["connect_traps"])
    assert "on_peer_connected trapped while replaying conn" in str(info.value)
    assert info.value.code == bridge_mod.ERR_INIT
    t.frame(conn, "Eold")
    assert t.last(conn) == b"Eold"


def test_swap_new_module_refusing_closes_after(make_bridge, fixture_wasm, variant_wasm):
    t = make_bridge(fixture_wasm)
    conn = t.open("/")
    assert t.bridge.swap(variant_wasm["connect_refuses"]) == 1
    assert t.closes[conn] == (4000, "bye")
    t.pump()
    assert t.bridge.connection_count == 0 and t.count_logs("D gone") == 1


def test_swap_holds_new_bytes_and_releases_old(bridge_mod, fixture_wasm, make_bridge):
    first, second = bytes(fixture_wasm), bytes(bytearray(fixture_wasm))
    t = make_bridge(first)
    r1, r2 = sys.getrefcount(first), sys.getrefcount(second)
    t.bridge.swap(second)
    assert sys.getrefcount(second) == r2 + 1 and sys.getrefcount(first) == r1 - 1
    with pytest.raises(bridge_mod.BridgeError):
        t.bridge.swap(b"junk")
    assert sys.getrefcount(second) == r2 + 1
    conn = t.open("/")
    t.frame(conn, "Eafter")
    assert t.last(conn) == b"Eafter"


def test_swap_50_times(make_bridge, hub_wasm):
    t = make_bridge(hub_wasm)
    a, c = join(t, PEER_A), join(t, PEER_B)
    for i in range(50):
        assert t.bridge.swap(bytes(hub_wasm)) == 2
    t.frame(c, offer(PEER_A, 100))
    assert len(frames_of(t, a, "offer")) == 1

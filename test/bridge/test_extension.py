"""pigeonhub._bridge: the bridge core as the PC hub uses it, with real WASM3 and real modules."""
import gc
import json
import sys
import time
import weakref

import pytest

from bridge_support import RecordingTransport, variants

PEER_A = "a1" * 20
PEER_B = "b2" * 20
PEER_C = "c3" * 20


# --- load errors: the exact reason each module is refused ------------------------------------------

@pytest.mark.parametrize("name,old,new,code_name,message", variants.VARIANTS, ids=[v[0] for v in variants.VARIANTS])
def test_refuses_broken_variant(bridge_mod, variant_wasm, name, old, new, code_name, message):
    code = getattr(bridge_mod, code_name.replace("PH_", ""))
    with pytest.raises(bridge_mod.BridgeError) as info:
        bridge_mod.Bridge(variant_wasm[name], RecordingTransport())
    assert message in str(info.value)
    assert info.value.code == code
    with pytest.raises(bridge_mod.BridgeError) as info2:
        bridge_mod.check_module(variant_wasm[name])
    assert str(info2.value) == str(info.value) and info2.value.code == code


@pytest.mark.parametrize("data,code_name,message", [
    (b"<html>not a module</html>", "ERR_NOT_WASM",
     'not a WebAssembly module: starts with 3c 68 74 6d, expected 00 61 73 6d ("\\0asm")'),
    (b"", "ERR_NOT_WASM", "not a WebAssembly module: only 0 bytes"),
    (b"\0asm\x02\0\0\0", "ERR_NOT_WASM", "not a WebAssembly 1.0 module: binary version 2, expected 1"),
])
def test_refuses_non_wasm_exactly(bridge_mod, data, code_name, message):
    with pytest.raises(bridge_mod.BridgeError) as info:
        bridge_mod.check_module(data)
    assert str(info.value) == message
    assert info.value.code == getattr(bridge_mod, code_name)


def test_refuses_truncated_module(bridge_mod, fixture_wasm):
    with pytest.raises(bridge_mod.BridgeError) as info:
        bridge_mod.Bridge(fixture_wasm[: len(fixture_wasm) // 2], RecordingTransport())
    assert info.value.code == bridge_mod.ERR_LOAD
    assert str(info.value).startswith("module is truncated: its ")
    assert f"runs past the end of the {len(fixture_wasm) // 2} bytes" in str(info.value)


def test_memory_limit_refuses_module_that_does_not_fit(bridge_mod, fixture_wasm):
    with pytest.raises(bridge_mod.BridgeError) as info:
        bridge_mod.Bridge(fixture_wasm, RecordingTransport(), memory_limit=10000)
    assert info.value.code == bridge_mod.ERR_MEMORY
    assert "module does not fit in the 10000-byte memory limit" in str(info.value)


def test_bad_arguments(bridge_mod, fixture_wasm):
    with pytest.raises(ValueError, match="max_connections must be 1..1008"):
        bridge_mod.Bridge(fixture_wasm, RecordingTransport(), max_connections=0)
    with pytest.raises(TypeError, match="transport has no method send"):
        bridge_mod.Bridge(fixture_wasm, object())
    with pytest.raises(TypeError):
        bridge_mod.Bridge(fixture_wasm, RecordingTransport(), 24)   # options are keyword-only


def test_check_module_accepts_real_hub(bridge_mod, hub_wasm):
    assert bridge_mod.check_module(hub_wasm) is None
    assert bridge_mod.ABI_VERSION == 3


# --- the real hub.wasm through the bridge -----------------------------------------------------------

def join(t, peer, network="demo"):
    conn = t.open(f"/?peerId={peer}")
    t.frame(conn, json.dumps({"type": "announce", "data": {"peerId": peer}, "maxPeers": 3,
                              "networkName": network}))
    return conn


def frames_of(t, conn, type_):
    out = []
    for raw in t.frames.get(conn, []):
        msg = json.loads(raw)
        if msg.get("type") == type_:
            out.append(msg)
    return out


def offer(target, sdp_len=4000):
    return json.dumps({"type": "offer", "data": {"type": "offer", "sdp": "v=0" + "o" * sdp_len},
                       "maxPeers": 3, "networkName": "demo", "targetPeerId": target})


def test_hub_connect_announce_relay(make_bridge, hub_wasm):
    t = make_bridge(hub_wasm)
    b = t.bridge
    assert len(b.hub_id) == 40 and int(b.hub_id, 16) >= 0
    assert b.input_buffer_size >= 8192
    a = join(t, PEER_A)
    assert frames_of(t, a, "connected")[0]["data"]["peerId"] == PEER_A
    c = join(t, PEER_B)
    assert [m["data"]["peerId"] for m in frames_of(t, a, "peer-discovered")] == [PEER_B]
    assert [m["data"]["peerId"] for m in frames_of(t, c, "peer-discovered")] == [PEER_A]
    assert b.peer_count == 2 and b.connection_count == 2
    t.frame(a, offer(PEER_B))
    relayed = frames_of(t, c, "offer")
    assert len(relayed) == 1 and relayed[0]["fromPeerId"] == PEER_A
    assert relayed[0]["data"]["sdp"].startswith("v=0ooo")
    stats = json.loads(b.stats())
    assert stats["bridge"]["connections"] == 2 and stats["bridge"]["framesIn"] == 3
    assert isinstance(stats["module"], dict)
    b.closed(a)
    assert b.peer_count == 1 and b.connection_count == 1


def test_hub_full_returns_minus_one(make_bridge, hub_wasm):
    t = make_bridge(hub_wasm, max_connections=2)
    join(t, PEER_A)
    join(t, PEER_B)
    assert t.bridge.open(f"/?peerId={PEER_C}") == -1
    assert json.loads(t.bridge.stats())["bridge"]["refusedFull"] == 1


def test_hub_oversized_frame_1009(make_bridge, hub_wasm):
    t = make_bridge(hub_wasm)
    a, c = join(t, PEER_A), join(t, PEER_B)
    size = t.bridge.input_buffer_size
    assert t.bridge.accepts(a, size) is True
    assert t.bridge.accepts(a, size + 1) is False
    assert t.closes[a] == (1009, "Message too big")
    big = offer(PEER_A, size)
    t.frame(c, big)
    assert t.closes[c] == (1009, "Message too big")
    assert json.loads(t.bridge.stats())["bridge"]["framesTooBig"] == 2


def test_hub_outbox_overflow_1013_only_for_slow_consumer(make_bridge, hub_wasm):
    t = make_bridge(hub_wasm, outbox_limit=65536)
    a, slow, fast = join(t, PEER_A), join(t, PEER_B), join(t, PEER_C)
    t.slow.add(slow)
    for _ in range(40):
        t.frame(a, offer(PEER_B))
        t.frame(a, offer(PEER_C))
    assert t.closes[slow] == (1013, "Outbox full (slow consumer)")
    assert t.close_calls[slow] == 1
    assert len(frames_of(t, fast, "offer")) == 40
    assert fast not in t.closes and a not in t.closes
    assert json.loads(t.bridge.stats())["bridge"]["outboxOverflows"] == 1


def test_hub_trap_1011_others_served_and_stack_survives(make_bridge, hub_wasm):
    t = make_bridge(hub_wasm)
    a, c = join(t, PEER_A), join(t, PEER_B)
    t.frame(a, '{"type":"__test_trap"}')
    assert t.closes[a] == (1011, "Hub module error")
    assert t.count_logs("trapped: ") == 1 and t.count_logs(f"(conn {a})") == 1
    assert any(line.startswith("E hub.wasm on_message() trapped: ") for line in t.logs)
    for _ in range(300):   # without restoring __stack_pointer the module's stack runs out
        x = t.open(f"/?peerId={'d4' * 20}")
        t.frame(x, '{"type":"__test_trap"}')
        assert t.closes[x][0] == 1011
    d = join(t, PEER_C)
    assert [m["data"]["peerId"] for m in frames_of(t, d, "peer-discovered")] == [PEER_B]
    assert json.loads(t.bridge.stats())["bridge"]["traps"] == 301


# --- the fixture: host-function corner cases --------------------------------------------------------

def test_hostile_pointers_rejected(make_bridge, fixture_wasm):
    t = make_bridge(fixture_wasm)
    a = t.open("/")
    t.frame(a, "H")
    assert t.last(a) == b"33313"   # -3 bad args x4 (send, send, broadcast, negative len), url -1
    t.frame(a, "L")                # void import with a pointer past memory: trap, 1011
    assert t.closes[a] == (1011, "Hub module error")
    assert t.count_logs("[trap] out of bounds memory access") == 1


def test_raising_transport_is_reported_not_fatal(bridge_mod, fixture_wasm, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    t = RecordingTransport()

    def broken_send(conn, frame):
        raise RuntimeError("socket exploded")
    t.send = broken_send
    t.bridge = bridge_mod.Bridge(fixture_wasm, t)
    conn = t.open("/")          # on_peer_connected sends "hello": send() raises
    assert conn >= 0
    assert [str(u.exc_value) for u in seen] == ["socket exploded"]
    t.frame(conn, "Estill alive")  # reported again, no crash, the connection is still served
    assert len(seen) == 2
    assert t.bridge.connection_count == 1 and t.bridge.peer_count == 1


def test_close_reported_from_inside_callback_is_deferred(bridge_mod, fixture_wasm):
    t = RecordingTransport()

    def close_and_report_at_once(conn, code, reason):
        RecordingTransport.close(t, conn, code, reason)
        t.reported.add(conn)
        t.bridge.closed(conn)   # re-entrant: the module must hear of it after on_message returns
    t.close = close_and_report_at_once
    t.bridge = bridge_mod.Bridge(fixture_wasm, t)
    a = t.open("/")
    t.frame(a, "C")
    assert t.closes[a] == (4000, "bye")
    assert t.count_logs("D gone") == 1
    assert t.bridge.connection_count == 0 and t.bridge.peer_count == 0


# --- lifetime: references and GC --------------------------------------------------------------------

def test_create_destroy_200_bridges_no_leaks(bridge_mod, fixture_wasm):
    gc.collect()
    wasm_refs = sys.getrefcount(fixture_wasm)
    transports = []
    for i in range(200):
        t = RecordingTransport()
        t.bridge = bridge_mod.Bridge(fixture_wasm, t)   # a reference cycle, for the GC to break
        conn = t.open("/")
        t.frame(conn, "Eping")
        assert t.last(conn) == b"Eping"
        transports.append(weakref.ref(t))
        if i % 2:
            t.bridge = None                             # plain refcount release
        del t
    gc.collect()
    assert all(ref() is None for ref in transports)
    assert sys.getrefcount(fixture_wasm) == wasm_refs


def test_bridge_keeps_module_bytes_alive(bridge_mod, fixture_wasm):
    data = bytearray(fixture_wasm)              # a mutable buffer is copied
    t = RecordingTransport()
    t.bridge = bridge_mod.Bridge(data, t)
    data[:] = b"\0" * len(data)                 # scribbling on the caller's copy changes nothing
    conn = t.open("/")
    t.frame(conn, "Estill fine")
    assert t.last(conn) == b"Estill fine"
    owned = bytes(fixture_wasm)
    before = sys.getrefcount(owned)
    t2 = RecordingTransport()
    t2.bridge = bridge_mod.Bridge(owned, t2)
    assert sys.getrefcount(owned) == before + 1  # bytes are referenced, not copied
    t2.bridge = None
    assert sys.getrefcount(owned) == before


def test_none_clocks_are_the_extensions_own(bridge_mod, hub_wasm):
    """The PC hub hands millis=None and wall_clock_ms=None: the module then reads a monotonic clock
    from the Bridge's creation and Unix time, with no Python call per frame."""
    class NativeClocks(RecordingTransport):
        millis = None
        wall_clock_ms = None

    t = NativeClocks()
    before = time.time() * 1000
    t.bridge = bridge_mod.Bridge(hub_wasm, t)
    a, c = join(t, PEER_A), join(t, PEER_B)
    time.sleep(0.3)
    t.frame(a, offer(PEER_B))
    after = time.time() * 1000
    relayed = frames_of(t, c, "offer")[0]
    assert before - 1 <= relayed["timestamp"] <= after + 1
    uptime = json.loads(t.bridge.stats())["module"]["uptimeMs"]
    assert 300 <= uptime <= after - before + 1

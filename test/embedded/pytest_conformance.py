"""A focused conformance run against the address the hub printed, then the hub's own account of it in
its log. The full suite (test/conformance, `--hub-url ws://IP:PORT`) covers every rule; this is the
subset a board must pass on every flash: connect, discovery, relay, frame limit, /health.
Raw peers: test/conformance/hubclient.py (websocket-client, exact frames).
"""

import json
import re

from embedded_support import expect_line, http_json, line, peer_log_id
from hubclient import Peer, assert_relays, joined_pair, new_network

FRAME_LIMIT = 16384   # MAX_MESSAGE_SIZE in wasm/pigeonhub_abi.h, when /stats does not say


def padded_ping(size):
    """A valid `ping` frame of exactly `size` bytes (JSON whitespace padding)."""
    head = '{"type":"ping","data":{}'
    frame = head + " " * (size - len(head) - 1) + "}"
    assert len(frame.encode()) == size and json.loads(frame)
    return frame


def test_peers_meet_and_relay_through_the_hub(boot, dut):
    net = new_network()
    a = Peer(boot.ws_url, network=net)
    a.expect("connected")
    b = Peer(boot.ws_url, network=net)
    b.expect("connected")
    try:
        # `connected` is the first frame each peer gets, naming the id it connected with.
        for p in (a, b):
            assert p.received[0]["type"] == "connected"
            assert p.received[0]["data"] == {"peerId": p.id}
            assert p.received[0]["fromPeerId"] == "system"
        # The hub logs each arrival with its slot count (wasm/hub.c log_slots).
        for p in (a, b):
            expect_line(dut, f"peer {p.id[:8]} connected",
                        line(rb"peer " + peer_log_id(p) + rb" connected \((\d+)/(\d+)\)"))

        # Announced one after the other, so the hub's count of who is already there is exact.
        for p, others in ((a, 0), (b, 1)):
            p.announce()
            announced = expect_line(dut, f"peer {p.id[:8]} announced", line(
                rb"peer " + peer_log_id(p) + rb" announced in '" + re.escape(net.encode())
                + rb"' \((\d+) other peers there\)"))
            assert int(announced.group(1)) == others
        # Discovery both ways, each side told the other's id.
        a.expect("peer-discovered", data__peerId=b.id)
        b.expect("peer-discovered", data__peerId=a.id)

        # An offer is relayed to its target only, stamped with the sender's connection id.
        assert_relays(a, b, "embedded")
        assert [m["type"] for m in a.drain()] == []

        # What a user's `curl /health` shows while they are connected.
        health = http_json(boot, "/health")
        assert health["status"] == "healthy"
        assert health["connections"] == 2 and health["peers"] == 2
    finally:
        a.close()
        b.close()
    # Departures are logged too: the slot count falls back.
    for p in (a, b):
        expect_line(dut, f"peer {p.id[:8]} disconnected",
                    line(rb"peer " + peer_log_id(p) + rb" disconnected \((\d+)/(\d+)\)"))


def test_oversized_frame_closes_only_its_sender_1009(boot, dut):
    stats = http_json(boot, "/stats")
    limit = stats.get("bridge", {}).get("inputBufferBytes") or FRAME_LIMIT
    a, b = joined_pair(boot.ws_url)
    try:
        a.send(padded_ping(limit))                 # exactly the limit passes
        a.expect("pong", timeout=10)
        a.send(padded_ping(limit + 1))             # one byte more does not
        code, _reason = a.expect_close(timeout=10)
        assert code == 1009
        # The bridge says why on the console (lib/pigeonhub_bridge/src/ph_bridge.c).
        too_big = expect_line(dut, "frame too big, closing 1009", line(
            rb"conn (\d+) sent a (\d+)-byte frame, the module accepts at most (\d+): closing it 1009"))
        assert (int(too_big.group(2)), int(too_big.group(3))) == (limit + 1, limit)
        # Everyone else is unaffected and told of the departure.
        b.expect("peer-disconnected", data__peerId=a.id)
        b.roundtrip()
        assert http_json(boot, "/stats")["bridge"]["framesTooBig"] >= 1
    finally:
        a.close()
        b.close()

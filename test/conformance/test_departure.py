"""docs/PROTOCOL.md §12 item 6: `goodbye` relay and `peer-disconnected` on close."""

import time

import pytest

from hubclient import new_network, of_type


def collect(peer, seconds):
    """All frames peer receives during `seconds` (a departure's frames may trickle in)."""
    frames, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        frames += peer.drain(0.2)
    return frames


def test_goodbye_relayed_to_same_network(joined):
    net, other = new_network(), new_network()
    a, b, c = joined(net), joined(net), joined(other)
    goodbye = {"peerId": a.id, "timestamp": 1795721123690}
    a.signal("goodbye", goodbye)
    got = b.expect("goodbye", fromPeerId=a.id)
    assert got["data"] == goodbye
    assert got["networkName"] == net
    assert of_type(c.drain(), "goodbye") == []


def test_close_sends_peer_disconnected(joined):
    net = new_network()
    a, b = joined(net), joined(net)
    b.expect("peer-discovered", data__peerId=a.id)
    a.close()
    got = b.expect("peer-disconnected", data__peerId=a.id)
    assert got["fromPeerId"] == "system"
    assert got["targetPeerId"] == b.id


def test_departed_peer_no_longer_reachable(joined):
    net = new_network()
    a, b = joined(net), joined(net)
    a.close()
    b.expect("peer-disconnected", data__peerId=a.id)
    b.signal("offer", {"type": "offer", "sdp": "v=0\r\n" + "x" * 100}, targetPeerId=a.id)
    assert of_type(b.drain(), "error") == []
    b.roundtrip()


@pytest.mark.improvement(reason="the reference sends two or three peer-disconnected per close "
                                "(§4 shapes a and b)")
def test_close_sends_exactly_one_peer_disconnected(joined):
    net = new_network()
    a, b = joined(net), joined(net)
    b.expect("peer-discovered", data__peerId=a.id)
    a.close()
    frames = collect(b, 1.5)
    assert len(of_type(frames, "peer-disconnected", data__peerId=a.id)) == 1


@pytest.mark.improvement(reason="after a goodbye the reference sends one peer-disconnected for "
                                "the goodbye and another for the socket close (§4)")
def test_goodbye_then_close_gives_one_peer_disconnected(joined):
    net = new_network()
    a, b = joined(net), joined(net)
    b.expect("peer-discovered", data__peerId=a.id)
    a.signal("goodbye", {"peerId": a.id, "timestamp": 1})
    b.expect("goodbye", fromPeerId=a.id)
    time.sleep(0.3)
    a.close()
    frames = collect(b, 1.5)
    assert len(of_type(b.received, "peer-disconnected", data__peerId=a.id)) == 1, frames

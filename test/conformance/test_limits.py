"""docs/PROTOCOL.md §12 item 7: frame size limit (1009), SDP-sized frames pass."""

import json

from hubclient import new_network


def padded_ping(size):
    """A valid `ping` frame of exactly `size` bytes (JSON whitespace padding)."""
    head = '{"type":"ping","data":{}'
    frame = head + " " * (size - len(head) - 1) + "}"
    assert len(frame.encode()) == size
    json.loads(frame)
    return frame


def test_largest_accepted_frame_is_processed(joined, frame_limit):
    a = joined(new_network())
    a.send(padded_ping(frame_limit))
    a.expect("pong", timeout=10)


def test_one_byte_over_limit_closed_1009_others_unaffected(joined, frame_limit):
    net = new_network()
    a, b = joined(net), joined(net)
    a.send(padded_ping(frame_limit + 1))
    code, _reason = a.expect_close(timeout=10)
    assert code == 1009
    b.roundtrip()
    b.expect("peer-disconnected", data__peerId=a.id)


def test_1mib_frame_closes_only_its_connection(joined, connect):
    net = new_network()
    big, b, c = joined(net), joined(net), joined(net)
    big.send(padded_ping(1024 * 1024 + 1))   # over every hub's limit (ws: 1 MiB maxPayload)
    code, _reason = big.expect_close(timeout=15)
    assert code == 1009
    for peer in (b, c):
        peer.roundtrip()
    b.signal("offer", {"type": "offer", "sdp": "v=0\r\n" + "x" * 4000}, targetPeerId=c.id)
    c.expect("offer", fromPeerId=b.id)
    newcomer = connect()
    newcomer.expect("connected")

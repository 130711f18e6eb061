"""docs/PROTOCOL.md §12 item 5: ping/pong, unrouted types, non-JSON, binary frames, invalid
UTF-8."""

import json

import pytest
from websocket import ABNF

from hubclient import new_network, of_type


def test_ping_gets_pong(joined):
    a = joined(new_network())
    pong = a.roundtrip()
    assert pong["fromPeerId"] == "system"
    assert pong["targetPeerId"] == a.id
    assert isinstance(pong["timestamp"], int)


def test_unknown_type_gets_error_frame(joined):
    a = joined(new_network())
    a.signal("bogus-type", {"x": 1})
    err = a.expect("error")
    assert isinstance(err["error"], str) and "bogus-type" in err["error"]
    a.roundtrip()  # an error frame is not a close


def test_connection_rejected_answered_with_error_not_relayed(joined):
    """Relaying `connection-rejected` breaks real clients: two fresh 1.1.3 peers both offer
    ("isolation", docs/PROTOCOL.md §5); the larger id rejects the smaller one's offer, and a
    relayed rejection makes the smaller one close the connection it is answering at that moment,
    so the WebRTC connection never opens (observed with test/interop/peer_pair.mjs through a hub
    that relayed it: 1 of 6 runs connected; the reference, which answers `error`: 6 of 6).
    So: `error` back to the sender, nothing to the target."""
    net = new_network()
    a, b = joined(net), joined(net)
    a.signal("connection-rejected", {"reason": "initiator_role_conflict", "shouldInitiate": False},
             targetPeerId=b.id)
    err = a.expect("error")
    assert "connection-rejected" in err["error"]
    assert of_type(b.drain(), "connection-rejected") == []


@pytest.mark.parametrize("junk", ["not json {", "", "{]", '{"type": "ping"'])
def test_non_json_ignored_connection_kept(joined, junk):
    a = joined(new_network())
    a.send(junk)
    assert a.drain() == []  # no reply at all, no close
    a.roundtrip()


@pytest.mark.parametrize("junk", ["[1, 2, 3]", "42", '"a string"', "null", '{"data": {}}'])
def test_json_without_type_does_not_hurt(joined, junk):
    """Valid JSON that is no message: ignored or answered with `error` (the reference), never
    a close or a crash."""
    a = joined(new_network())
    a.send(junk)
    assert [m["type"] for m in a.drain()] in ([], ["error"])
    a.roundtrip()


def test_json_in_binary_frame_accepted(joined):
    net = new_network()
    a, b = joined(net), joined(net)
    a.send({"type": "ping", "data": {}}, binary=True)
    a.expect("pong")
    offer = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
    a.send({"type": "offer", "data": offer, "networkName": net, "targetPeerId": b.id}, binary=True)
    assert b.expect("offer", fromPeerId=a.id)["data"] == offer


def test_fragmented_message_is_reassembled_and_relayed(joined):
    """RFC 6455 §5.4: a message may arrive in fragments (continuation frames), with control frames
    (here a ping) in between; the hub relays the whole message."""
    net = new_network()
    a, b = joined(net), joined(net)
    sdp = "v=0\r\n" + "a=x\r\n" * 800          # ~5 KB: a realistic offer, in three pieces
    body = json.dumps({"type": "offer", "data": {"type": "offer", "sdp": sdp}, "networkName": net,
                       "targetPeerId": b.id}).encode()
    third = len(body) // 3
    a.ws.send_frame(ABNF.create_frame(body[:third], ABNF.OPCODE_TEXT, fin=0))
    a.ws.send_frame(ABNF.create_frame(b"", ABNF.OPCODE_PING))
    a.ws.send_frame(ABNF.create_frame(body[third:2 * third], ABNF.OPCODE_CONT, fin=0))
    a.ws.send_frame(ABNF.create_frame(body[2 * third:], ABNF.OPCODE_CONT, fin=1))
    got = b.expect("offer", fromPeerId=a.id)
    assert got["data"] == {"type": "offer", "sdp": sdp}
    a.roundtrip()


def test_invalid_utf8_text_frame_closed_1007_others_unaffected(joined):
    """RFC 6455 §8.1: invalid UTF-8 in a text frame fails the connection (1007), as `ws` does."""
    net = new_network()
    a, b = joined(net), joined(net)
    a.send(b'{"type":"ping","data":"\xff\xfe\xc3"}')
    code, _reason = a.expect_close()
    assert code == 1007
    b.roundtrip()
    b.expect("peer-disconnected", data__peerId=a.id)


def test_invalid_utf8_in_binary_frame_ignored(joined):
    a = joined(new_network())
    a.send(b'\xff\xfe not json \xc3', binary=True)
    assert of_type(a.drain(), "pong") == []
    a.roundtrip()

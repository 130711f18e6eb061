"""RFC 6455 framing at the byte level: however a client's bytes are cut into TCP segments and
whatever control frames are mixed in, every message arrives whole and in order; frames the
protocol forbids fail the connection with the right code.

The PC hub cuts plain data frames out of the socket's bytes itself (src/pigeonhub/hub/ws.py) and
leaves everything else to websockets' Sans-I/O layer, so these tests aim at the seams between the
two.
They hold for the reference server too (`--against-reference`)."""

import json
import socket
import time

from websocket import ABNF

from hubclient import new_network


def wire(payload, opcode=ABNF.OPCODE_TEXT, fin=1, mask=1):
    """The bytes of one frame as a client sends it (masked unless mask=0)."""
    if isinstance(payload, str):
        payload = payload.encode()
    return ABNF(fin, 0, 0, 0, opcode, mask, payload).format()


def offer(sender, target, net, size):
    """A relayable offer of about `size` bytes; its sdp names the sequence."""
    head = {"type": "offer", "data": {"type": "offer", "sdp": ""}, "networkName": net,
            "targetPeerId": target.id}
    pad = max(0, size - len(json.dumps(head)))
    head["data"]["sdp"] = f"v=0 seq {size}\r\n" + "a" * pad
    return head


def send_cut(peer, data, cuts):
    """Writes data in pieces ending at the given offsets, each its own TCP segment."""
    sock = peer.ws.sock
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = 0
    for cut in sorted(set(c for c in cuts if 0 < c < len(data))) + [len(data)]:
        sock.sendall(data[start:cut])
        start = cut
        time.sleep(0.003)   # let the hub read this piece on its own


def test_frames_cut_inside_header_length_mask_and_payload(joined):
    """Three frames (7-bit, 16-bit and 16-bit lengths), cut after every one of the first 8 bytes
    of each header and in the middle of each payload: all three relayed, in order, intact."""
    net = new_network()
    a, b = joined(net), joined(net)
    msgs = [offer(a, b, net, size) for size in (100, 300, 5000)]
    frames = [wire(json.dumps(m)) for m in msgs]
    cuts, at = [], 0
    for f in frames:
        cuts += [at + k for k in range(1, 9)] + [at + len(f) // 2]
        at += len(f)
    send_cut(a, b"".join(frames), cuts)
    for m in msgs:
        got = b.expect("offer", fromPeerId=a.id)
        assert got["data"] == m["data"]
    a.roundtrip()


def test_many_frames_in_one_segment_with_a_ping_between(joined):
    """Frames coalesced into one write, with a ping among them: every message relayed in order,
    the ping answered, the connection kept."""
    net = new_network()
    a, b = joined(net), joined(net)
    msgs = [offer(a, b, net, 200 + 40 * i) for i in range(6)]
    data = b"".join(wire(json.dumps(m)) for m in msgs[:3]) + wire(b"hi", ABNF.OPCODE_PING) + \
        b"".join(wire(json.dumps(m)) for m in msgs[3:])
    a.ws.sock.sendall(data)
    for m in msgs:
        assert b.expect("offer", fromPeerId=a.id)["data"] == m["data"]
    a.roundtrip()


def test_unmasked_client_frame_fails_with_1002(joined):
    """RFC 6455 §5.1: a server must close on an unmasked frame from a client (protocol error);
    other connections are unaffected."""
    net = new_network()
    a, b = joined(net), joined(net)
    a.ws.sock.sendall(wire(json.dumps({"type": "ping"}), mask=0))
    code, _reason = a.expect_close()
    assert code == 1002
    b.roundtrip()


def test_unknown_opcode_after_good_frames_fails_with_1002(joined):
    """Good frames first, then a reserved opcode (0x3) in the same segment: the good ones are
    relayed, then the connection is failed with 1002."""
    net = new_network()
    a, b = joined(net), joined(net)
    msgs = [offer(a, b, net, 150), offer(a, b, net, 160)]
    reserved = bytes((0x80 | 0x3, 0x80 | 2)) + b"\0\0\0\0" + b"??"   # FIN, opcode 3, zero mask
    data = b"".join(wire(json.dumps(m)) for m in msgs) + reserved
    a.ws.sock.sendall(data)
    for m in msgs:
        assert b.expect("offer", fromPeerId=a.id)["data"] == m["data"]
    code, _reason = a.expect_close()
    assert code == 1002
    b.roundtrip()


def test_invalid_utf8_split_across_segments_fails_with_1007(joined):
    """A text frame whose bad UTF-8 byte arrives in a later segment than its header."""
    net = new_network()
    a, b = joined(net), joined(net)
    frame = wire(b'{"type":"ping","data":"ok \xc3\x28 bad"}')
    send_cut(a, frame, [3, len(frame) - 4])
    code, _reason = a.expect_close()
    assert code == 1007
    b.roundtrip()

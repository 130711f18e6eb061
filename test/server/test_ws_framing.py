"""The C framing speedups in pigeonhub._bridge (text_frames, cut_frames, unmask) against their
pure-Python twins in pigeonhub/hub/ws.py, byte for byte, at the lengths where RFC 6455 changes
the header (125/126, 65535/65536), and both against websockets' own parser."""

import os

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from pigeonhub import _bridge
from pigeonhub.hub import ws

EDGE_LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def payload(n, seed=0):
    return bytes((i * 7 + seed) % 95 + 32 for i in range(n))   # printable ASCII, like JSON


def parsed(stream, masked):
    """(opcode, data) of each frame websockets' parser reads from stream (masked: a client's)."""
    side = ServerProtocol(state=State.OPEN, max_size=None) if masked else \
        ClientProtocol("ws://hub/", state=State.OPEN, max_size=None)
    side.receive_data(stream)
    return [(frame.opcode, bytes(frame.data)) for frame in side.events_received()]


def test_the_c_speedups_are_the_ones_in_use():
    assert ws.text_frames is _bridge.text_frames
    assert ws.cut_frames is _bridge.cut_frames
    assert ws.unmask is _bridge.unmask


@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_text_frames_agree_byte_for_byte_unmasked(n):
    payloads = [payload(n), payload(3, 1)]
    c = _bridge.text_frames(payloads)
    assert c == ws.text_frames_python(payloads)
    assert parsed(c, masked=False) == [(Opcode.TEXT, p) for p in payloads]


@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_text_frames_agree_byte_for_byte_masked(n):
    payloads = [payload(n), payload(5, 2)]
    keys = os.urandom(8)
    c = _bridge.text_frames(payloads, keys)
    assert c == ws.text_frames_python(payloads, keys)
    assert parsed(c, masked=True) == [(Opcode.TEXT, p) for p in payloads]


def test_text_frames_refuse_what_is_not_bytes_or_keys_that_do_not_fit():
    for frames in (_bridge.text_frames, ws.text_frames_python):
        with pytest.raises(ValueError):
            frames([b"a", b"b"], b"1234")
    with pytest.raises(TypeError):
        _bridge.text_frames(["text"])
    assert _bridge.text_frames([]) == b"" == ws.text_frames_python([])


def both_cuts(data, pos, masked, max_size=ws.MAX_MESSAGE):
    c = _bridge.cut_frames(data, pos, masked, max_size)
    assert c == ws.cut_frames_python(data, pos, masked, max_size)
    return c


@pytest.mark.parametrize("masked", [True, False])
def test_cut_frames_agree_on_every_edge_length_and_every_split(masked):
    payloads = [payload(n, i) for i, n in enumerate(EDGE_LENGTHS)]
    keys = os.urandom(4 * len(payloads)) if masked else None
    stream = ws.text_frames_python(payloads, keys)
    frames, pos, why = both_cuts(stream, 0, masked)
    assert [(p, t) for p, t, _end in frames] == [(p, True) for p in payloads]
    assert (pos, why) == (len(stream), ws.CUT_MORE)
    # Cut short anywhere near a header or the end: the whole frames before, nothing after.
    ends = [end for _p, _t, end in frames]
    starts = [0] + ends[:-1]
    cuts = sorted({s + d for s in starts for d in range(0, 15)} | {e - 1 for e in ends})
    for cut in cuts:
        if cut > len(stream):
            continue
        frames, pos, why = both_cuts(stream[:cut], 0, masked)
        assert why == ws.CUT_MORE
        assert pos == max([0] + [e for e in ends if e <= cut])
        assert len(frames) == sum(1 for e in ends if e <= cut)


def test_cut_frames_stop_at_what_is_the_library_s():
    plain = ws.text_frames_python([b"ok"])                     # unmasked: a server's frame
    ping = bytes((0x89, 0)) + b""
    fragment = bytes((0x01, 2)) + b"ab"                        # FIN clear
    rsv = bytes((0xC1, 2)) + b"ab"                             # RSV1 set
    binary = bytes((0x82, 2)) + b"\x00\x01"
    for other in (ping, fragment, rsv):
        frames, pos, why = both_cuts(plain + other + plain, 0, False)
        assert ([p for p, _t, _e in frames], pos, why) == ([b"ok"], len(plain), ws.CUT_OTHER)
    frames, pos, why = both_cuts(binary, 0, False)
    assert frames == [(b"\x00\x01", False, len(binary))]
    # A frame whose mask bit is wrong for this side is the library's to fail.
    frames, pos, why = both_cuts(plain, 0, True)
    assert (frames, pos, why) == ([], 0, ws.CUT_OTHER)
    # Too long: judged from the header alone, before the payload has arrived.
    head = bytes((0x81, 127)) + (1 << 40).to_bytes(8, "big")
    frames, pos, why = both_cuts(plain + head, 0, False, max_size=1000)
    assert (len(frames), pos, why) == (1, len(plain), ws.CUT_TOO_BIG)
    # From a later position, on any buffer type.
    frames, pos, why = both_cuts(memoryview(b"xx" + plain), 2, False)
    assert frames == [(b"ok", True, 2 + len(plain))]


@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_unmask_agrees(n):
    key = os.urandom(4)
    data = payload(n)
    assert _bridge.unmask(data, key) == ws.unmask_python(data, key)
    assert _bridge.unmask(_bridge.unmask(data, key), key) == data

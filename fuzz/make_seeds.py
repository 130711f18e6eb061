#!/usr/bin/env python3
"""Write the seed corpora of the libFuzzer targets (fuzz/corpus/<target>/seed-*).

    python3 fuzz/make_seeds.py --hub HUB_TEST_WASM --hub2 HUB_WASM --work DIR --out fuzz/corpus

module: frames as captured on the wire (client and hub connections), in the record format of
fuzz_module.c; bridge: event sequences in the format of fuzz_bridge.c; check_module: the real
modules, the bridge fixtures (test/native/bridge/fixtures, broken variants included, built with
variants.py + wat2wasm into --work) and hand-made broken modules; upload_body: upload
operation sequences; frames and upload (the Atheris targets fuzz_frames.py, fuzz_upload.py): WebSocket byte streams and POST /module requests. Regression inputs (crash-*) in the
corpus directories are left alone.
"""
import argparse
import hashlib
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEP = b"\xff\xfe"   # fuzz_module.c's record separator

A = "f335b63e0123456789abcdef0123456789abccf8"
B = "49702745aaaaaaaaaaaaaaaaaaaaaaaaaaaaaf04"
C = "883f96a5ccccccccccccccccccccccccccccc44d"
R = "319dd499eeeeeeeeeeeeeeeeeeeeeeeeeeeeea7f"


def announce(peer, net="demo", extra=""):
    return ('{"type":"announce","data":{"peerId":"%s"%s},"maxPeers":3,"networkName":"%s"}'
            % (peer, extra, net)).encode()


FRAMES = [
    announce(A),
    b'{"type":"announce","networkName":"pigeonhub-mesh","data":{"isHub":true,"port":39202,'
    b'"host":"127.0.0.1","capabilities":["signaling","relay"],"timestamp":1795721149153}}',
    ('{"type":"offer","data":{"type":"offer","sdp":"v=0\\r\\no=- 3445 2 IN IP4 127.0.0.1\\r\\n"},'
     '"maxPeers":3,"networkName":"demo","targetPeerId":"%s"}' % B).encode(),
    ('{"type":"ice-candidate","data":{"candidate":"candidate:3077952869 1 udp 2122265344 fd00::2 '
     '45500 typ host","sdpMid":"0","sdpMLineIndex":0},"networkName":"demo","targetPeerId":"%s"}' % A).encode(),
    ('{"type":"answer","data":{"type":"answer","sdp":"v=0\\r\\n"},"networkName":"demo",'
     '"targetPeerId":"%s"}' % A).encode(),
    ('{"type":"goodbye","data":{"peerId":"%s","timestamp":1795721123690},"networkName":"demo"}' % A).encode(),
    b'{"type":"ping","data":{}}',
    b'{"type":"cleanup","data":{}}',
    ('{"type":"renegotiation-offer","data":{"sdp":"\\u00e9\\ud83d\\ude00 \xc3\xa9"},'
     '"targetPeerId":"%s"}' % C).encode(),
    b'{"type":"unknown-\xe2\x82\xac\\"\\u0000","data":[1,-2.5e+10,true,false,null]}',
    ('{"type":"connection-rejected","data":{"reason":"max_peers_reached"},"networkName":"demo",'
     '"targetPeerId":"%s"}' % B).encode(),
    b'[' * 40 + b']' * 40,
    b'{"type":"announce","data":{"peerId":"' + A.encode() + b'"},"networkName":"' + b'n' * 70 + b'"}',
]
# What a far hub sends on a hub link.
LINK_FRAMES = [
    ('{"type":"peer-discovered","data":{"peerId":"%s","isHub":false},"networkName":"demo",'
     '"fromPeerId":"system","timestamp":1795721212736}' % R).encode(),
    ('{"type":"peer-disconnected","data":{"peerId":"%s","isHub":false,"reason":"Client disconnect"},'
     '"fromPeerId":"system","timestamp":1795721040011}' % R).encode(),
    ('{"type":"offer","data":{"type":"offer","sdp":"v=0\\r\\n"},"fromPeerId":"%s","targetPeerId":"%s",'
     '"networkName":"demo","timestamp":1795721114727}' % (R, A)).encode(),
    ('{"type":"connected","data":{"peerId":"%s"},"fromPeerId":"system","timestamp":1}' % A).encode(),
]


def module_seeds():
    seeds = {}
    for i, f in enumerate(FRAMES):
        seeds["frame-%02d" % i] = b"\x00" + f
    for i, f in enumerate(LINK_FRAMES):
        seeds["link-%02d" % i] = b"\x03" + f
    # A session: two peers join one network, signal each other, a tick, pongs, a reconnect, a leave.
    seeds["session"] = SEP.join([
        b"\x00" + announce(A), b"\x01" + announce(B), b"\x02" + announce(C, "other"),
        b"\x00" + FRAMES[2], b"\x01" + FRAMES[4], b"\x03" + LINK_FRAMES[0], b"\x00" + LINK_FRAMES[2][:0] + FRAMES[3],
        bytes([4 | (8 << 3)]), bytes([5 | (1 << 3)]), bytes([6 | (0 << 3)]), b"\x00" + announce(A),
        b"\x01" + FRAMES[5], bytes([4 | (20 << 3)]),
    ])
    seeds["hub-peer"] = SEP.join([b"\x00" + FRAMES[1], b"\x00" + LINK_FRAMES[0], b"\x01" + announce(B),
                                  b"\x00" + LINK_FRAMES[2], b"\x00" + LINK_FRAMES[1]])
    seeds["urls"] = SEP.join([b"\x07/?peerId=" + R.encode(), b"\x07/?peerId=zz", b"\x07" + b"/?a=" * 300,
                              b"\x07?peerId=" + A.encode()])
    seeds["timeouts"] = SEP.join([bytes([4 | (31 << 3)])] * 4)
    return seeds


# fuzz_bridge.c events
def b_open(k): return bytes([0, k])
def b_frame(sel, data): return bytes([1, sel]) + struct.pack("<H", len(data)) + data
def b_close(sel): return bytes([2, sel])
def b_pong(sel): return bytes([3, sel])
def b_tick(s): return bytes([4, s])
B_LINK_OPEN, B_SWAP, B_CLOSES_DONE = b"\x05", b"\x06", b"\x08"
def b_sent(sel): return bytes([7, sel])


def bridge_seeds():
    # Host table: index 0 = the bootstrap link (dialed at start), then accepted connections in order.
    seeds = {}
    base = b_open(0) + b_open(1) + B_LINK_OPEN
    seeds["session"] = b"\x00" + base + b_frame(1, announce(A)) + b_frame(2, announce(B)) + \
        b_frame(1, FRAMES[2].replace(B"targetPeerId", b"targetPeerId")) + b_sent(2) + b_pong(1) + b_tick(5) + \
        b_close(1) + b_tick(1)
    seeds["swap"] = b"\x01" + base + b_frame(1, announce(A)) + b_frame(2, announce(B)) + B_SWAP + \
        b_frame(1, FRAMES[2]) + B_SWAP + b_frame(0, LINK_FRAMES[0]) + B_SWAP + b_close(2)
    seeds["trap"] = b"\x00" + base + b_frame(1, announce(A)) + b_frame(1, b'{"type":"__test_trap"}') + \
        B_CLOSES_DONE + b_open(0) + b_frame(3, announce(A))
    seeds["full"] = b"\x02" + b"".join(b_open(k) for k in (0, 1, 2, 3, 4, 5)) + b_open(9) + b"/bad?x" + \
        B_CLOSES_DONE + b_open(4)
    seeds["outbox"] = b"\x02" + base + b_frame(1, announce(A)) + b_frame(2, announce(B)) + \
        b"".join(b_frame(1, FRAMES[2]) for _ in range(6)) + B_CLOSES_DONE
    seeds["timeout"] = b"\x00" + base + b_tick(40) + b_tick(40) + b_tick(70) + B_CLOSES_DONE + B_LINK_OPEN
    seeds["toobig"] = b"\x00" + base + bytes([1, 1, 0x00, 0xFF]) + b_frame(1, announce(A)) + B_CLOSES_DONE
    seeds["link"] = b"\x00" + base + b"".join(b_frame(0, f) for f in LINK_FRAMES) + b_close(0) + b_tick(3) + \
        b_tick(3) + B_LINK_OPEN
    return seeds


def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def section(sid, payload):
    return bytes([sid]) + leb(len(payload)) + payload


def check_seeds(hub, hub2, work):
    seeds = {}
    h = Path(hub).read_bytes()
    seeds["hub-test"] = h
    seeds["hub"] = Path(hub2).read_bytes()
    seeds["hub-truncated-half"] = h[: len(h) // 2]
    seeds["hub-truncated-64"] = h[:64]
    head = b"\0asm\x01\0\0\0"
    seeds["header-only"] = head
    seeds["bad-version"] = b"\0asm\x02\0\0\0"
    seeds["huge-type-count"] = head + section(1, leb(0xFFFFFFFF))
    seeds["huge-section-size"] = head + b"\x01\xff\xff\xff\xff\x0f\x00"
    seeds["overlong-leb"] = head + b"\x01\x80\x80\x80\x80\x80\x80\x00"
    seeds["memory-huge"] = head + section(5, b"\x01\x01" + leb(0xFFFF) + leb(0xFFFF))
    seeds["memory-no-max"] = head + section(5, b"\x01\x00" + leb(1))
    seeds["custom-section"] = head + section(0, b"\x04name" + b"\x00" * 8) + h[8:]
    # A signature section last (ph_module_sig.h: format 1, key id, r||s), and one followed by more.
    sig = section(0, b"\x0dpigeonhub.sig\x01" + bytes(range(8)) + bytes(range(64)))
    seeds["signed"] = h + sig
    seeds["signed-then-section"] = h + sig + section(0, b"\x04name")
    # The bridge fixtures, broken variants included.
    fixtures = ROOT / "test/native/bridge/fixtures"
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(fixtures / "variants.py"), str(fixtures / "fixture_hub.wat"), str(work)],
                   check=True, stdout=subprocess.DEVNULL)
    wats = [fixtures / "fixture_hub.wat"] + sorted(work.glob("*.wat"))
    wat2wasm = ROOT / ".venv/bin/wat2wasm"
    for wat in wats:
        out = work / (wat.stem + ".wasm")
        subprocess.run([str(wat2wasm) if wat2wasm.exists() else "wat2wasm", str(wat), "-o", str(out)], check=True)
        seeds["fixture-" + wat.stem] = out.read_bytes()
    return seeds


def ws_frame(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d"):
    """A client's WebSocket frame (masked, RFC 6455 section 5.2)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def frames_seeds():
    """fuzz_frames.py: byte 0 bit 0 = the first chunk comes with the upgrade request, byte 1 = how
    the stream is chunked."""
    text, close = 1, 8
    streams = {
        "session": b"".join(ws_frame(text, f) for f in FRAMES),
        "fragmented": ws_frame(text, FRAMES[2][:20], fin=False) + ws_frame(0, FRAMES[2][20:40], fin=False)
                      + ws_frame(0, FRAMES[2][40:]),
        "ping-pong-binary": ws_frame(9, b"hi") + ws_frame(10, b"") + ws_frame(2, b"\x00\xff"),
        "bad-utf8": ws_frame(text, b'{"type":"\xff"}') + ws_frame(text, FRAMES[0]),
        "close-then-data": ws_frame(close, struct.pack(">H", 1000) + b"bye") + ws_frame(text, FRAMES[0]),
        "too-big": bytes([0x81, 0xFF]) + struct.pack(">Q", 1 << 40) + b"\0\0\0\0",
        "unmasked": bytes([0x81, len(FRAMES[0])]) + FRAMES[0],
        "bad-opcode-rsv": bytes([0xC3, 0x80]) + b"\0\0\0\0",
        "medium": ws_frame(text, b'{"type":"offer","data":"' + b"x" * 300 + b'"}'),
    }
    return {f"{name}-{attach}{chunking}": bytes([attach, chunking]) + stream
            for name, stream in streams.items() for attach, chunking in ((0, 0), (1, 7), (3, 200))}


def upload_check_seeds():
    """fuzz_upload_check.c: slot size (2 bytes, x16), then token, Authorization, X-Module-SHA256,
    Content-Length separated by 0x00 ("\x01" = absent)."""
    sha = hashlib.sha256(b"module").hexdigest().encode()
    slot = struct.pack("<H", 65536 // 16)
    requests = {
        "good": (b"secret-token", b"Bearer secret-token", sha, b"16000"),
        "wrong-token": (b"secret-token", b"Bearer secret-tokem", sha, b"16000"),
        "no-token-configured": (b"", b"Bearer x", sha, b"16000"),
        "no-auth": (b"secret-token", b"\x01", sha, b"16000"),
        "bad-hash": (b"secret-token", b"Bearer secret-token", sha[:-1] + b"g", b"16000"),
        "no-length": (b"secret-token", b"Bearer secret-token", sha, b"\x01"),
        "superscript-length": (b"secret-token", b"Bearer secret-token", sha, "1610\u00b3".encode()),
        "too-big": (b"secret-token", b"Bearer secret-token", sha, b"65537"),
    }
    return {name: slot + b"\0".join(fields) for name, fields in requests.items()}


def upload_body_seeds():
    """fuzz_upload_body.c: running module, slot sizes (64-byte units), then operations: 0 begin
    (2-byte length), 1 write (1-byte n + n bytes), 2 finish (SHA-256 mode), 3 abort, 4 fault,
    5 activate."""
    def begin(n): return b"\x00" + struct.pack("<H", n)
    def write(body): return b"".join(b"\x01" + bytes([len(body[i:i + 200])]) + body[i:i + 200]
                                     for i in range(0, len(body), 200))
    def finish(mode=0): return b"\x02" + bytes([mode])
    def fault(bits): return b"\x04" + bytes([bits])
    abort, activate = b"\x03", b"\x05"
    body = bytes(range(256)) + b"\0asm\x01\0\0\0" * 20
    whole = begin(len(body)) + write(body) + finish()
    running0 = b"\x01\x88"        # hubmod0 runs, both slots 512 bytes: uploads go to hubmod1
    return {
        "whole": running0 + whole,
        "whole-builtin-running": b"\x00\x88" + whole,
        "chunks": running0 + begin(100) + write(body[:40]) + write(body[40:80]) + write(body[80:100]) + finish(),
        "sha-mismatch": running0 + begin(100) + write(body[:100]) + finish(2),
        "sha-from-input": running0 + begin(100) + write(body[:100]) + finish(1) + bytes(32),
        "short": running0 + begin(100) + write(body[:60]) + finish(),
        "overrun": running0 + begin(50) + write(body[:80]),
        "abort-midway": running0 + begin(100) + write(body[:60]) + abort,
        "write-fault": running0 + begin(100) + fault(2) + write(body[:100]) + finish(),
        "erase-fault": running0 + fault(1) + whole,
        "save-fault": running0 + begin(100) + write(body[:100]) + fault(4) + finish(),
        "sha-fault": running0 + fault(8) + whole,
        "activate-then-abort": running0 + whole + activate + abort + whole,
        "too-big": running0 + begin(600) + write(body[:100]) + finish(),
        "no-slot": b"\x00\x80" + whole,
        "begin-twice": running0 + begin(100) + write(body[:50]) + begin(60) + write(body[:60]) + finish(),
        "order": running0 + write(body[:10]) + finish() + abort + whole + finish() + write(body[:1]),
    }


def upload_seeds(hub, hub2):
    """fuzz_upload.py: byte 0 odd = a raw request; even = assembled (method, path, token, hash
    mode, length mode, extra-header length, extra, body; 0 picks the valid choice)."""
    plain, test = Path(hub2).read_bytes(), Path(hub).read_bytes()

    def post(body, token=b"fuzz-token"):
        return (b"POST /module HTTP/1.1\r\nAuthorization: Bearer " + token + b"\r\nX-Module-SHA256: "
                + hashlib.sha256(body).hexdigest().encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return {
        "raw-test-module": b"\x01" + post(test),
        "raw-cut-body": b"\x03" + post(plain)[:600],
        "raw-options": b"\x01OPTIONS /module HTTP/1.1\r\nOrigin: http://x\r\n\r\n",
        "raw-wrong-token": b"\x01" + post(b"\0asm\1\0\0\0", b"nope"),
        "raw-websocket": b"\x01GET / HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "assembled-test-module": b"\x00" + bytes(6) + test,
        "assembled-chunked": b"\x06" + bytes(6) + test,
        "assembled-truncated": b"\x00" + bytes(6) + test[:len(test) // 2],
        "assembled-garbage": b"\x00" + bytes(6) + b"<html>hello</html>",
        "assembled-header": b"\x00" + bytes([0, 0, 0, 0, 0, 20]) + b"X-Extra: \xff\r\nBad line" + plain[:64],
    }


def write(dirpath, seeds):
    dirpath.mkdir(parents=True, exist_ok=True)
    for old in dirpath.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        (dirpath / ("seed-" + name)).write_bytes(data)
    print("%s: %d seeds, %d bytes" % (dirpath, len(seeds), sum(map(len, seeds.values()))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hub", required=True, help="hub.wasm built with --test-hooks")
    ap.add_argument("--hub2", required=True, help="plain hub.wasm")
    ap.add_argument("--work", required=True, help="scratch directory for the fixtures")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    write(out / "module", module_seeds())
    write(out / "bridge", bridge_seeds())
    write(out / "check_module", check_seeds(a.hub, a.hub2, a.work))
    write(out / "frames", frames_seeds())
    write(out / "upload", upload_seeds(a.hub, a.hub2))
    write(out / "upload_check", upload_check_seeds())
    write(out / "upload_body", upload_body_seeds())


if __name__ == "__main__":
    main()

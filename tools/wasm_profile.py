"""WebAssembly instructions the hub module executes per frame (wasmtime fuel).

    python3 tools/wasm_profile.py [HUB.WASM ...]     # default: build wasm/ with pigeonhub.module.build

wasmtime charges one unit of fuel per executed wasm instruction (structural ones such as `block`,
`loop`, `end`, `nop` and `drop` are free), so fuel before/after an export call is the module's own
cost of that call, independent of the engine that will run it. WASM3 spends roughly a constant
number of host instructions per wasm instruction, so this is the figure to optimise; callgrind on
the -m32 WASM3 build (`pigeonhub bench --device`) gives the host side. Two things are not what
WASM3 pays: current wasmtime charges `memory.copy`/`memory.fill` one unit per byte (WASM3 copies
natively), and imports cost nothing here (json_string_end and json_value_end run the bridge
core's C through pigeonhub._bridge, as a bridge would).

The frames have the shapes heap_probe.c relays (4.5 KB SDP offer, 360 B ICE candidate, announce
of the 20th peer into a network of 19), so the figures line up with the device benchmark.
Prints one line per frame kind: wasm instructions, frame bytes, instructions per byte.
"""

import json
import sys
import tempfile
from pathlib import Path

import wasmtime

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from pigeonhub._bridge import json_string_end, json_value_end  # noqa: E402 — after the path
from pigeonhub.module.build import parse_abi_header  # noqa: E402

PEERS = 20
FUEL = 1 << 40
ABI = parse_abi_header()   # the imports to provide, with their WASM3 signatures ("i(i*i)")


def peer_id(p):
    """heap_probe.c's deterministic ids."""
    hexd = "0123456789abcdef"
    ids = [hexd[(p * 7 + k * 13 + (k * p) % 5) & 15] for k in range(40)]
    ids[39], ids[38] = hexd[p & 15], hexd[(p >> 4) & 15]
    return "".join(ids)


def make_offer(seq, target):
    head = ("v=0\\r\\no=- %u 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\na=group:BUNDLE 0 1 2\\r\\n"
            "a=extmap-allow-mixed\\r\\na=msid-semantic: WMS\\r\\n"
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\\r\\nc=IN IP4 0.0.0.0\\r\\n"
            "a=rtcp:9 IN IP4 0.0.0.0\\r\\na=ice-ufrag:wwwZ\\r\\na=ice-pwd:Ntj0dvu4WFg8zIRYpCmnyt3Y"
            "\\r\\na=ice-options:trickle\\r\\na=fingerprint:sha-256 6B:8B:5E:3A:13:6E:04:4F:B0:9C:"
            "C8:B1:5B:8C:29:E9:2B:0A:11:4D:3C:0B:77:8E:AF:75:F2:5F:3E:21:F7:9A\\r\\na=setup:actpass"
            "\\r\\na=mid:0\\r\\na=rtcp-mux\\r\\na=rtpmap:111 opus/48000/2\\r\\na=fmtp:111 minptime=10;"
            "useinbandfec=1\\r\\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103\\r\\n"
            "c=IN IP4 0.0.0.0\\r\\na=mid:1\\r\\na=sendrecv\\r\\na=rtcp-mux\\r\\na=rtcp-rsize\\r\\n")
    codec = ("a=rtpmap:{0} VP8/90000\\r\\na=rtcp-fb:{0} goog-remb\\r\\na=rtcp-fb:{0} transport-cc"
             "\\r\\na=rtcp-fb:{0} ccm fir\\r\\na=rtcp-fb:{0} nack\\r\\na=rtcp-fb:{0} nack pli\\r\\n"
             "a=rtpmap:{1} rtx/90000\\r\\na=fmtp:{1} apt={0}\\r\\n")
    tail = ("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\\r\\nc=IN IP4 0.0.0.0\\r\\na=mid:2"
            "\\r\\na=sctp-port:5000\\r\\na=max-message-size:262144\\r\\n\"},\"maxPeers\":3,"
            "\"networkName\":\"bench\",\"targetPeerId\":\"%s\"}")
    out = '{"type":"offer","data":{"type":"offer","sdp":"' + head % seq
    tail_len = len(tail) - 2 + len(target)
    pt = 96
    while len(out) + 260 + tail_len < 4500:
        out += codec.format(pt, pt + 1)
        pt += 2
    out += "a=ssrc:2002 cname:"
    out += "Q" * max(0, 4500 - 4 - tail_len - len(out))
    return (out + "\\r\\n" + tail % target).encode()


def make_candidate(seq, target):
    return json.dumps({"type": "ice-candidate", "data": {
        "candidate": f"candidate:{seq} 1 udp 1686052607 2001:db8:85a3:8d3:1319:8a2e:370:7348 "
                     "54400 typ srflx raddr fd00::2 rport 45500 generation 0 ufrag wwwZ "
                     "network-id 2 network-cost 10",
        "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "wwwZ"},
        "maxPeers": 3, "networkName": "bench", "targetPeerId": target},
        separators=(",", ":")).encode()


def make_announce(p):
    return (f'{{"type":"announce","data":{{"peerId":"{peer_id(p)}"}},"maxPeers":3,'
            f'"networkName":"bench"}}').encode()


class Host:
    def __init__(self, wasm: bytes):
        config = wasmtime.Config()
        config.consume_fuel = True
        self.store = wasmtime.Store(wasmtime.Engine(config))
        self.store.set_fuel(FUEL)
        self.urls, self.sent = {}, 0
        types = {"i": wasmtime.ValType.i32(), "I": wasmtime.ValType.i64()}
        linker = wasmtime.Linker(self.store.engine)
        for name, entry in ABI.imports.items():
            result, params = entry.signature.replace("*", "i").rstrip(")").split("(")
            ft = wasmtime.FuncType([types[c] for c in params], [] if result == "v" else [types[result]])
            linker.define_func("env", name, ft, getattr(self, "_" + name))
        self.inst = linker.instantiate(self.store, wasmtime.Module(self.store.engine, wasm))
        self.ex = self.inst.exports(self.store)
        self.mem = self.ex["memory"]

    # imports: the minimum a bridge does
    def _ws_server_start(self, port): return 0
    def _ws_server_stop(self): pass
    def _ws_send_to_peer(self, conn, ptr, n):
        self.sent += 1
        return 0
    def _ws_broadcast(self, ptr, n, exclude): return 0
    def _log_message(self, ptr, n): pass
    def _get_device_id(self, ptr, n): self.mem.write(self.store, b"24:0a:c4:00:be:7c\0", ptr)
    def _millis(self): return 1000
    def _ws_get_request_url(self, conn, ptr, n):
        url = self.urls[conn].encode()
        self.mem.write(self.store, url[:n - 1] + b"\0", ptr)
        return len(url)
    def _ws_close_peer(self, conn, code, ptr, n): pass
    def _ws_ping_peer(self, conn): return 0
    def _wall_clock_ms(self): return 1795721113692
    def _ws_connect(self, ptr, n): return -1
    def _get_bootstrap_hub(self, index, ptr, n): return -1   # no links: the figures stay comparable
    def _json_string_end(self, ptr, n):   # the bridge's C (host work: no fuel)
        return json_string_end(self.mem.read(self.store, ptr, ptr + n))
    def _json_value_end(self, ptr, n):
        return json_value_end(self.mem.read(self.store, ptr, ptr + n))

    def fuel(self, name, *args):
        """(result, wasm instructions) of one export call."""
        before = self.store.get_fuel()
        result = self.ex[name](self.store, *args)
        return result, before - self.store.get_fuel()

    def frame(self, conn, data):
        ptr = self.ex["get_input_buffer"](self.store)
        self.mem.write(self.store, data, ptr)
        return self.fuel("on_message", conn, ptr, len(data))[1]


def profile(wasm: bytes) -> dict:
    h = Host(wasm)
    out = {"init": h.fuel("init")[1]}
    ids = [peer_id(p) for p in range(PEERS)]
    for p in range(PEERS):
        h.urls[p] = f"/?peerId={ids[p]}"
        _, cost = h.fuel("on_peer_connected", p)
        if p == PEERS - 1:
            out["connect_20th"] = cost
        cost = h.frame(p, make_announce(p))
        if p == PEERS - 1:
            out["announce_20th"] = cost
            out["announce_bytes"] = len(make_announce(p))
    for kind, make in (("offer", make_offer), ("ice", make_candidate)):
        data = make(10000000, ids[1])
        sent = h.sent
        out[kind] = h.frame(0, data)
        out[kind + "_bytes"] = len(data)
        assert h.sent == sent + 1, f"{kind} was not relayed"
    return out


def format_profile(label, fig) -> str:
    lines = [f"{label}: {fig['size']:,} B module"]
    lines.append(f"  init                 {fig['init']:>10,} wasm instructions")
    for kind, name in (("offer", "4.5 KB offer"), ("ice", "360 B candidate"),
                       ("announce", "announce (20th peer)")):
        n = fig[kind if kind != "announce" else "announce_20th"]
        b = fig[kind + "_bytes"]
        lines.append(f"  {name:<20} {n:>10,} wasm instructions, {b:,} B frame, "
                     f"{n / b:.1f} per byte")
    return "\n".join(lines)


def main(argv):
    paths = [Path(a) for a in argv[1:]]
    if not paths:
        from pigeonhub.module import build
        tmp = Path(tempfile.mkdtemp(prefix="wasm-profile-"))
        paths = [build.build_module(tmp / "hub.wasm", max_bytes=1 << 30).path]
    for path in paths:
        wasm = path.read_bytes()
        fig = profile(wasm)
        fig["size"] = len(wasm)
        print(format_profile(str(path), fig))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

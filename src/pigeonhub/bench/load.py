"""Load generator for `pigeonhub bench`: drives any PeerPigeon hub over real WebSockets.

One asyncio loop plays N peers. It measures
  * discovery: all N peers announce in one network; time until all N*(N-1) `peer-discovered`
    frames have arrived;
  * relay: pipelined `offer` (about 4.5 KB, the size real clients send) and `ice-candidate`
    (about 360 B) frames between rotating peer pairs with a fixed window of frames in flight.
    Each frame carries its sequence number inside the SDP / candidate text (where real clients put
    a session id / foundation number), so the receiver can match it to its send time.

Frames have the exact shapes of the 1.1.3 client (docs/PROTOCOL.md §5); every relayed frame is
checked (type, fromPeerId, targetPeerId, networkName), so a hub that answers fast but wrong fails.
"""

import asyncio
import json
import os
import re
import statistics
import time

from websockets.exceptions import InvalidHandshake

from pigeonhub.hub import ws

try:   # parses a 4.5 KB offer in a quarter of json's time: keeps this generator ahead of the hubs
    from orjson import loads as _loads
except ImportError:   # the `bench` extra is not installed: same checks, slower
    _loads = json.loads

NETWORK = "bench"
# client->hub offer frame, as captured with Node WebRTC (docs/PROTOCOL.md §2)
OFFER_FRAME_BYTES = 4500
ICE_FRAME_BYTES = 360      # client->hub ice-candidate frame


class BenchError(Exception):
    """A run could not complete (hub refused, frames lost, timeout); the message says which."""


def random_peer_id() -> str:
    return os.urandom(20).hex()


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100.0 * len(ordered) + 0.5))))
    return ordered[rank - 1]


# --- realistic frame bodies ----------------------------------------------------------------------

_SDP_HEAD = (
    "v=0\r\no=- {seq} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n"
    "a=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n"
)
_SDP_AUDIO = (
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:wwwZ\r\na=ice-pwd:Ntj0dvu4WFg8zIRYpCmnyt3Y\r\n"
    "a=ice-options:trickle\r\na=fingerprint:sha-256 6B:8B:5E:3A:13:6E:04:4F:B0:9C:C8:B1:5B:8C:"
    "29:E9:2B:0A:11:4D:3C:0B:77:8E:AF:75:F2:5F:3E:21:F7:9A\r\na=setup:actpass\r\na=mid:0\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=msid:- 7d3c1f0e-audio\r\n"
    "a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n"
    "a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\na=ssrc:1001 cname:bench\r\n"
    "a=ssrc:1001 msid:- 7d3c1f0e-audio\r\n"
)
_SDP_VIDEO_HEAD = (
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103 104 105 106 107\r\n"
    "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:wwwZ\r\n"
    "a=ice-pwd:Ntj0dvu4WFg8zIRYpCmnyt3Y\r\na=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 6B:8B:5E:3A:13:6E:04:4F:B0:9C:C8:B1:5B:8C:29:E9:2B:0A:11:4D:3C:0B:77:"
    "8E:AF:75:F2:5F:3E:21:F7:9A\r\na=setup:actpass\r\na=mid:1\r\n"
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r\n"
    "a=extmap:13 urn:3gpp:video-orientation\r\na=sendrecv\r\na=msid:- 7d3c1f0e-video\r\n"
    "a=rtcp-mux\r\na=rtcp-rsize\r\n"
)
# One codec block per payload type pair; repeated with increasing payload types to reach the size.
_SDP_VIDEO_CODEC = (
    "a=rtpmap:{pt} VP8/90000\r\na=rtcp-fb:{pt} goog-remb\r\na=rtcp-fb:{pt} transport-cc\r\n"
    "a=rtcp-fb:{pt} ccm fir\r\na=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\n"
    "a=rtpmap:{rtx} rtx/90000\r\na=fmtp:{rtx} apt={pt}\r\n"
)
_SDP_DATA = (
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:wwwZ\r\na=ice-pwd:Ntj0dvu4WFg8zIRYpCmnyt3Y\r\na=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 6B:8B:5E:3A:13:6E:04:4F:B0:9C:C8:B1:5B:8C:29:E9:2B:0A:11:4D:3C:0B:77:"
    "8E:AF:75:F2:5F:3E:21:F7:9A\r\na=setup:actpass\r\na=mid:2\r\na=sctp-port:5000\r\n"
    "a=max-message-size:262144\r\n"
)


def _offer_sdp(target_frame_bytes: int) -> str:
    """An SDP offer shaped like a Chrome/Node-WebRTC one (audio + video + data channel) whose
    client frame is about target_frame_bytes long. Contains '{seq}' where the session id goes."""
    envelope = len(json.dumps({"type": "offer", "data": {"type": "offer", "sdp": ""},
                               "maxPeers": 3, "networkName": NETWORK,
                               "targetPeerId": "0" * 40}, separators=(",", ":")))
    budget = target_frame_bytes - envelope - 8  # 8: a typical sequence number's digits
    sdp = _SDP_HEAD + _SDP_AUDIO + _SDP_VIDEO_HEAD
    pt = 96
    while True:
        block = _SDP_VIDEO_CODEC.format(pt=pt, rtx=pt + 1)
        tail_len = len(json.dumps(sdp + block + _SDP_DATA)) - 2
        if tail_len > budget:
            break
        sdp += block
        pt += 2
    # top up to the exact size with the video track's cname line
    sdp += "a=ssrc:2002 cname:"
    fill = budget - (len(json.dumps(sdp + _SDP_DATA)) - 2) - 2
    return sdp + "Q" * max(fill, 1) + "\r\n" + _SDP_DATA


def _dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


class FrameFactory:
    """Builds client->hub frames fast: JSON text split around the sequence number."""

    def __init__(self, kind: str, target_bytes: int):
        self.kind = kind
        if kind == "offer":
            sdp = _offer_sdp(target_bytes)
            head, tail = sdp.split("{seq}")
            prefix = '{"type":"offer","data":{"type":"offer","sdp":' + _dumps(head)[:-1]
            self._prefix = prefix
            self._middle = _dumps(tail)[1:] + '},"maxPeers":3,"networkName":"' + NETWORK + \
                '","targetPeerId":"'
            self._seq_re = re.compile(r"o=- (\d+) ")
        elif kind == "ice":
            # a server-reflexive IPv6 candidate as Chrome trickles them; the foundation number
            # carries the sequence number
            self._prefix = '{"type":"ice-candidate","data":{"candidate":"candidate:'
            self._middle = (' 1 udp 1686052607 2001:db8:85a3:8d3:1319:8a2e:370:7348 54400 typ srflx '
                            'raddr fd00::2 rport 45500 generation 0 ufrag wwwZ network-id 2 '
                            'network-cost 10","sdpMid":"0","sdpMLineIndex":0,'
                            '"usernameFragment":"wwwZ"},"maxPeers":3,"networkName":"'
                            + NETWORK + '","targetPeerId":"')
            self._seq_re = re.compile(r"candidate:(\d+) ")
        else:
            raise ValueError(kind)
        self.relayed_type = "offer" if kind == "offer" else "ice-candidate"

    def frame(self, seq: int, target: str) -> str:
        return self._prefix + str(seq) + self._middle + target + '"}'

    def seq_of(self, data) -> int:
        text = data["sdp"] if self.kind == "offer" else data["candidate"]
        match = self._seq_re.search(text)
        return int(match.group(1)) if match else -1


# --- the load run ---------------------------------------------------------------------------------

class _Peer:
    """One simulated client; the handler of its socket (pigeonhub/hub/ws.py), as the hub's
    connections are: each frame reaches the run from the socket's data callback."""

    __slots__ = ("index", "peer_id", "ws", "connected", "discovered", "closed_reason", "run")

    def __init__(self, index: int, run):
        self.index = index
        self.peer_id = random_peer_id()
        self.ws = None
        self.connected = asyncio.Event()
        self.discovered = set()
        self.closed_reason = None
        self.run = run

    def ws_message(self, _ws, raw):
        self.run._dispatch(self, raw)

    def ws_closed(self, ws):
        self.closed_reason = f"closed {ws.close_code} {ws.close_reason or ''}".strip()
        self.connected.set()  # wake a waiter; it checks closed_reason

    def ws_pong(self, _ws):
        pass

    def ws_sent(self, _ws, _nbytes, _written):
        pass


class LoadRun:
    def __init__(self, url: str, peers: int, relays: int, window: int, timeout: float,
                 cpu_probe=None, ssl_context=None):
        self.cpu_probe = cpu_probe
        self.ssl_context = ssl_context  # wss://: ws.client_ssl_context(--ca), None = the system's  # () -> CPU seconds used so far by the hub process, or None
        self.url = url.rstrip("/") if "?" not in url else url
        self.n = peers
        self.relays = relays
        self.window = window
        self.timeout = timeout
        self.peers = [_Peer(i, self) for i in range(peers)]
        self.by_id = {p.peer_id: p for p in self.peers}
        self.errors = []
        self._discovery_needed = peers * (peers - 1)
        self._discovery_count = 0
        self._discovery_done = asyncio.Event()
        self._relay = None  # state of the current relay phase

    def _peer_url(self, peer: _Peer) -> str:
        sep = "&" if "?" in self.url else ("?" if self.url.endswith("/") else "/?")
        return f"{self.url}{sep}peerId={peer.peer_id}"

    def _dispatch(self, peer: _Peer, raw):
        msg = _loads(raw)
        kind = msg.get("type")
        relay = self._relay
        if relay is not None and kind == relay["factory"].relayed_type:
            now = time.perf_counter()
            seq = relay["factory"].seq_of(msg.get("data") or {})
            if not 0 <= seq < len(relay["sent_at"]) or relay["recv_at"][seq] is not None:
                self.errors.append(f"unexpected {kind} seq {seq}")
                return
            if msg.get("fromPeerId") != relay["senders"][seq] or \
                    msg.get("targetPeerId") != peer.peer_id or msg.get("networkName") != NETWORK:
                self.errors.append(f"{kind} seq {seq} relayed with wrong fromPeerId/"
                                   f"targetPeerId/networkName: {str(raw)[:160]}")
            relay["recv_at"][seq] = now
            relay["received"] += 1
            relay["window"].release()
            if relay["received"] == len(relay["sent_at"]):
                relay["done"].set()
        elif kind == "connected":
            peer.connected.set()
        elif kind == "peer-discovered":
            other = (msg.get("data") or {}).get("peerId")
            if other in self.by_id and other != peer.peer_id and other not in peer.discovered:
                peer.discovered.add(other)
                self._discovery_count += 1
                if self._discovery_count == self._discovery_needed:
                    self._discovery_done.set()

    async def connect_all(self):
        async def one(peer):
            peer.ws = await ws.dial(self._peer_url(peer), self.timeout,
                                    ssl_context=self.ssl_context)
            peer.ws.start(peer)
            await peer.connected.wait()
            if peer.closed_reason is not None:
                raise BenchError(f"hub closed peer {peer.index} before 'connected': "
                                 f"{peer.closed_reason}")
        await asyncio.wait_for(asyncio.gather(*(one(p) for p in self.peers)), self.timeout)

    async def discovery(self) -> float:
        """All peers announce at once; seconds until every peer-discovered frame has arrived."""
        frames = [_dumps({"type": "announce", "data": {"peerId": p.peer_id}, "maxPeers": 3,
                          "networkName": NETWORK}).encode() for p in self.peers]
        start = time.perf_counter()
        for peer, frame in zip(self.peers, frames):
            peer.ws.send(frame)
        try:
            await asyncio.wait_for(self._discovery_done.wait(), self.timeout)
        except asyncio.TimeoutError:
            raise BenchError(f"discovery: {self._discovery_count} of {self._discovery_needed} "
                             f"peer-discovered frames within {self.timeout:.0f} s") from None
        return time.perf_counter() - start

    async def relay(self, kind: str) -> dict:
        factory = FrameFactory(kind, OFFER_FRAME_BYTES if kind == "offer" else ICE_FRAME_BYTES)
        count, n = self.relays, self.n
        senders, frames = [], []
        for seq in range(count):
            # rotate over all ordered pairs so every connection sends and receives
            src = seq % n
            dst = (src + 1 + (seq // n) % (n - 1)) % n
            senders.append(self.peers[src].peer_id)
            frames.append((self.peers[src].ws, factory.frame(seq, self.peers[dst].peer_id).encode()))
        state = {"factory": factory, "senders": senders, "sent_at": [0.0] * count,
                 "recv_at": [None] * count, "received": 0, "done": asyncio.Event(),
                 "window": asyncio.Semaphore(self.window)}
        self._relay = state
        sent_at, window = state["sent_at"], state["window"]

        async def pump():
            for seq, (sock, frame) in enumerate(frames):
                await window.acquire()
                sent_at[seq] = time.perf_counter()
                sock.send(frame)

        cpu_before = self.cpu_probe() if self.cpu_probe else None
        pumper = asyncio.ensure_future(pump())
        try:
            await asyncio.wait_for(state["done"].wait(), self.timeout)
        except asyncio.TimeoutError:
            raise BenchError(f"{kind} relay: {state['received']} of {count} frames arrived within "
                             f"{self.timeout:.0f} s (window {self.window}); the hub drops or "
                             f"stalls") from None
        finally:
            pumper.cancel()
            self._relay = None
        latencies = [(r - s) * 1000.0 for s, r in zip(sent_at, state["recv_at"])]
        elapsed = max(state["recv_at"]) - sent_at[0]
        extra = {}
        if cpu_before is not None:
            # hub CPU per relayed frame: less sensitive to the load generator sharing the CPUs
            extra["hub_cpu_us"] = (self.cpu_probe() - cpu_before) * 1e6 / count
        return {**extra,"frames": count, "frame_bytes": len(frames[0][1]),
                "throughput": count / elapsed if elapsed > 0 else float("inf"),
                "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
                "mean_ms": statistics.fmean(latencies)}

    async def close(self):
        socks = [peer.ws for peer in self.peers if peer.ws is not None]
        for sock in socks:
            sock.close(1000, "Client disconnect")
        try:   # a hub that hangs on close must not hang us
            await asyncio.wait_for(asyncio.gather(*(sock.wait_closed() for sock in socks)), 5)
        except asyncio.TimeoutError:
            for sock in socks:
                sock.abort()


async def run_load(url: str, peers: int = 20, relays: int = 2000, window: int = 32,
                   timeout: float = 30.0, kinds=("offer", "ice"), cpu_probe=None,
                   ssl_context=None) -> dict:
    """One complete run against the hub at url. Returns the figures, raises BenchError.
    cpu_probe: optional () -> CPU seconds of the hub process (adds hub_cpu_us per frame)."""
    if peers < 2:
        raise BenchError("need at least 2 peers")
    run = LoadRun(url, peers, relays, window, timeout, cpu_probe, ssl_context)
    try:
        await run.connect_all()
        result = {"peers": peers, "discovery_ms": await run.discovery() * 1000.0,
                  "discovery_frames": peers * (peers - 1)}
        for kind in kinds:
            result[kind] = await run.relay(kind)
        if run.errors:
            raise BenchError(f"{len(run.errors)} wrong frames, first: {run.errors[0]}")
        return result
    except (OSError, InvalidHandshake) as exc:
        raise BenchError(f"connection to {url} failed: {exc}") from None
    finally:
        await run.close()

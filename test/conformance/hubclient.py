"""Raw-frame PeerPigeon peers for the conformance suite (websocket-client, no PeerPigeon code).

A Peer sends exactly the JSON frames a test gives it and records every frame the hub sends back,
so tests can assert on the wire format itself (docs/PROTOCOL.md §2).
"""

import json
import secrets
import socket
import struct
import sys
import time
import uuid

import websocket
from websocket import ABNF

DEFAULT_TIMEOUT = 5.0   # s to wait for a frame that must arrive
QUIET = 0.6             # s of silence that counts as "nothing was sent"
# s for the TCP connect and the upgrade: an emulated board on a loaded CI machine drops Ethernet
# frames (QEMU's NIC has no room while its CPU thread waits) and the user-mode network stack
# retransmits with backoff, so a handshake there can take several seconds without any hub fault.
CONNECT_TIMEOUT = 20.0


def new_id():
    """A client-style peer id: 20 random bytes, lowercase hex (docs/PROTOCOL.md §1)."""
    return secrets.token_hex(20)


def new_network():
    return f"net-{uuid.uuid4().hex[:10]}"


class Closed(Exception):
    """The hub closed the connection; .code/.reason as in its close frame (1006 = no close frame)."""

    def __init__(self, code, reason):
        super().__init__(f"closed {code} {reason!r}")
        self.code, self.reason = code, reason


class Peer:
    """One WebSocket connection to the hub, speaking raw PeerPigeon frames."""

    def __init__(self, base_url, peer_id=None, *, path="/", query=None, raw_url=None,
                 network=None, timeout=DEFAULT_TIMEOUT):
        self.id = new_id() if peer_id is None else peer_id
        self.network = network
        if raw_url is None:
            q = f"peerId={self.id}" if query is None else query
            raw_url = f"{base_url.rstrip('/')}{path}{'?' + q if q else ''}"
        self.url = raw_url
        self.inbox = []          # frames received but not yet consumed by expect()
        self.received = []       # every JSON frame ever received, in order
        self.close_info = None   # (code, reason) once closed
        try:
            self.ws = self._connect(raw_url, timeout)
        except websocket.WebSocketTimeoutException:
            # Seen once in about six runs of the suite on the emulated esp32: no answer to the
            # upgrade in CONNECT_TIMEOUT while the board served other clients (the user-mode
            # network's connection setup lost twice, see above). A client connects again; so does
            # this one, once, and says so.
            print(f"W (hubclient) no answer to the upgrade from {raw_url} within "
                  f"{CONNECT_TIMEOUT:g} s: connecting again", file=sys.stderr)
            self.ws = self._connect(raw_url, timeout)
        self.ws.settimeout(timeout)

    @staticmethod
    def _connect(raw_url, timeout):
        return websocket.create_connection(raw_url, timeout=max(timeout, CONNECT_TIMEOUT),
                                           suppress_origin=True, enable_multithread=False)

    # ---- sending --------------------------------------------------------------------------------

    def send(self, frame, *, binary=False):
        """frame: dict (sent as JSON), str or bytes (sent as given)."""
        if isinstance(frame, dict):
            frame = json.dumps(frame, separators=(",", ":"))
        opcode = ABNF.OPCODE_BINARY if binary else ABNF.OPCODE_TEXT
        if isinstance(frame, str):
            frame = frame.encode("utf-8")
        self.ws.send(frame, opcode=opcode)

    def signal(self, type_, data, **fields):
        """A frame shaped like the 1.1.3 client's sendSignalingMessage (docs/PROTOCOL.md §2)."""
        frame = {"type": type_, "data": data, "maxPeers": 3}
        if self.network is not None:
            frame["networkName"] = self.network
        frame.update(fields)
        self.send(frame)

    def announce(self, network=None, **extra_data):
        if network is not None:
            self.network = network
        self.signal("announce", {"peerId": self.id, **extra_data})

    # ---- receiving ------------------------------------------------------------------------------

    def _read(self, timeout):
        """One JSON frame, or None on timeout. Raises Closed when the hub closes."""
        if self.close_info is not None:
            raise Closed(*self.close_info)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.ws.settimeout(left)
            try:
                opcode, frame = self.ws.recv_data_frame(control_frame=True)
            except (websocket.WebSocketTimeoutException, socket.timeout):
                return None
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                self.close_info = (1006, "")
                raise Closed(*self.close_info)
            if opcode == ABNF.OPCODE_CLOSE:
                data = frame.data or b""
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                self.close_info = (code, data[2:].decode("utf-8", "replace"))
                raise Closed(*self.close_info)
            if opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
                msg = json.loads(frame.data)
                self.received.append(msg)
                return msg
            # ping/pong: websocket-client already answered a ping; keep reading

    def expect(self, type_, timeout=DEFAULT_TIMEOUT, **match):
        """The first frame of this type whose top-level fields equal `match` (data__peerId=...
        matches data.peerId); frames that do not match stay in the inbox for later expects."""
        def fits(msg):
            if msg.get("type") != type_:
                return False
            for key, want in match.items():
                obj = msg
                for part in key.split("__"):
                    obj = obj.get(part) if isinstance(obj, dict) else None
                if obj != want:
                    return False
            return True

        for i, msg in enumerate(self.inbox):
            if fits(msg):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            msg = self._read(left) if left > 0 else None
            if msg is None:
                raise AssertionError(
                    f"peer {self.id[:8]}: no {type_!r} frame matching {match} within {timeout} s; "
                    f"unconsumed frames: {[m.get('type') for m in self.inbox]}")
            if fits(msg):
                return msg
            self.inbox.append(msg)

    def drain(self, quiet=QUIET):
        """Everything the hub sends until it is quiet for `quiet` s (frames also stay in inbox
        semantics: they are returned and removed)."""
        out = list(self.inbox)
        self.inbox.clear()
        while True:
            msg = self._read(quiet)
            if msg is None:
                return out
            out.append(msg)

    def expect_close(self, timeout=DEFAULT_TIMEOUT):
        """(code, reason) of the hub's close; fails if it stays open."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"peer {self.id[:8]}: still open after {timeout} s")
                msg = self._read(left)
                if msg is not None:
                    self.inbox.append(msg)
        except Closed as closed:
            return closed.code, closed.reason

    def roundtrip(self, timeout=DEFAULT_TIMEOUT):
        """ping -> pong: proof the hub still serves this connection."""
        self.send({"type": "ping", "data": {"peerId": self.id}})
        return self.expect("pong", timeout=timeout)

    def close(self):
        try:
            self.ws.close(status=1000, reason=b"Client disconnect", timeout=1)
        except Exception:  # noqa: BLE001 — already gone is fine
            pass
        try:
            self.ws.shutdown()
        except Exception:  # noqa: BLE001
            pass


def of_type(frames, type_, **match):
    out = []
    for msg in frames:
        if msg.get("type") != type_:
            continue
        ok = True
        for key, want in match.items():
            obj = msg
            for part in key.split("__"):
                obj = obj.get(part) if isinstance(obj, dict) else None
            ok = ok and obj == want
        if ok:
            out.append(msg)
    return out


def joined_pair(url):
    """Two peers connected and announced in a fresh network, each discovered by the other."""
    net = new_network()
    a, b = Peer(url, network=net), Peer(url, network=net)
    for p in (a, b):
        p.expect("connected")
        p.announce()
    a.expect("peer-discovered", data__peerId=b.id)
    b.expect("peer-discovered", data__peerId=a.id)
    return a, b


def announced_peers(url, n, timeout=20):
    """n peers connected and announced in a fresh network, once every announce has reached
    everyone (n - 1 discoveries each). Closes them all if that fails."""
    net = new_network()
    peers = []
    try:
        for _ in range(n):
            peers.append(Peer(url, network=net))
        for p in peers:
            p.expect("connected", timeout=10)
            p.announce()
        for p in peers:
            for _ in range(n - 1):
                p.expect("peer-discovered", timeout=timeout)
    except BaseException:
        for p in peers:
            p.close()
        raise
    return peers


def assert_relays(a, b, tag):
    """An offer from a reaches b, stamped with a's id, SDP intact."""
    sdp = f"v=0\r\no=- {tag} 2 IN IP4 127.0.0.1\r\n"
    a.signal("offer", {"type": "offer", "sdp": sdp}, targetPeerId=b.id)
    got = b.expect("offer", fromPeerId=a.id)
    assert got["data"] == {"type": "offer", "sdp": sdp}

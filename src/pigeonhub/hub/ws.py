"""WebSocket connections for the PC hub and the bench's load generator, on websockets' public
Sans-I/O layer (ServerProtocol, ClientProtocol: receive_data, events_received, data_to_send).

The library does the opening handshake, control frames (ping, pong, close), fragmented messages,
protocol errors and the closing handshake. One thing is done here instead: complete, unfragmented
text and binary frames of an open connection are cut out of the received bytes and handed to the
handler as they are, and the server's own text frames are written as they are. At hub rates the
library's generator-based parser and frame objects cost more per frame than the rest of the hub.
The library only ever gets whole frames, so its parser is at a frame boundary whenever a frame is
cut here; once a connection closes or fails, every byte goes to the library.

The text frames one socket is sent during one turn of the event loop (every chunk read in that
turn, every timer) leave in one write at the end of the turn: on loopback the write system call
and the wakeup of the reader it causes cost more than the hub's own work on a small frame. Anything
else written to the socket (the library's control frames, a close) first writes what is batched,
so the order on the wire is the order of the calls.

A handler gets, on the loop thread:
    ws_message(ws, data)       a complete message (bytes; a text one is valid UTF-8)
    ws_pong(ws)                the answer to ws.ping()
    ws_sent(ws, nbytes, written)  a frame that send() queued was written (or dropped: closed)
    ws_closed(ws)              the connection is gone; exactly once, after the handshake
"""

import asyncio
import collections
import os
import ssl
import weakref

from websockets.client import ClientProtocol
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

OPEN = State.OPEN
MAX_MESSAGE = 2 * 1024 * 1024   # far above the module's frame limit, so the bridge's 1009 decides
MAX_FRAGMENTS = 256             # a message in more pieces is refused 1009, as websockets' recv()
CLOSE_TIMEOUT = 3.0             # s for the other side to finish a closing handshake
MAX_RESPONSE_HEAD = 16384       # a handshake answer longer than this is refused
# A batch this large is written at once instead of at the end of the turn, so a congested socket
# pauses (and send() starts queueing) about where it would without batching: one large frame late.
BATCH_BYTES = 16384
_CLOSE = object()               # send queue item: the close the handler asked for

TEXT, BINARY, CONT, PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG

# Why cut_frames() stopped: the frame at pos is incomplete (or there is none), is not a plain
# data frame (the library's), or is longer than the size limit.
CUT_MORE, CUT_OTHER, CUT_TOO_BIG = 0, 1, 2


def unmask_python(payload, key):
    """RFC 6455 §5.3 masking, as one big-integer XOR (no per-byte loop)."""
    n = len(payload)
    if n == 0:
        return b""
    pad = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(pad, "little")).to_bytes(n, "little")


def _text_head(n, masked):
    """The header of one final text frame with an n-byte payload (RFC 6455 §5.2)."""
    mask_bit = 0x80 if masked else 0
    if n < 126:
        return bytes((0x81, mask_bit | n))
    if n < 65536:
        return bytes((0x81, mask_bit | 126)) + n.to_bytes(2, "big")
    return bytes((0x81, mask_bit | 127)) + n.to_bytes(8, "big")


def text_frames_python(payloads, keys=None):
    """Each payload as one final text frame, back to back: unmasked (a server's; keys None) or
    masked with keys[4i:4i+4] (a client's)."""
    if keys is None:
        return b"".join(_text_head(len(p), False) + p for p in payloads)
    if len(keys) != 4 * len(payloads):
        raise ValueError(f"text_frames: {len(keys)} keys bytes for {len(payloads)} payloads "
                         f"(4 each)")
    frames = []
    for i, p in enumerate(payloads):
        key = keys[4 * i:4 * i + 4]
        frames.append(_text_head(len(p), True) + key + unmask_python(p, key))
    return b"".join(frames)


def cut_frames_python(data, pos, masked, max_size):
    """The complete, final, unfragmented text and binary frames at data[pos:], unmasked:
    ([(payload, is_text, end offset)], pos where it stopped, CUT_MORE/CUT_OTHER/CUT_TOO_BIG).
    A frame whose mask bit is wrong for this side is CUT_OTHER: the library fails it."""
    frames = []
    end = len(data)
    while end - pos >= 2:
        head1, head2 = data[pos], data[pos + 1]
        opcode = head1 & 0x0F
        if (head1 & 0xF0 != 0x80 or (opcode != 1 and opcode != 2)
                or bool(head2 & 0x80) is not masked):
            return frames, pos, CUT_OTHER
        length = head2 & 0x7F
        start = pos + 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if end - start < size:
                break
            length = int.from_bytes(data[start:start + size], "big")
            start += size
        if length > max_size:
            return frames, pos, CUT_TOO_BIG
        key = None
        if masked:
            if end - start < 4:
                break
            key = data[start:start + 4]
            start += 4
        stop = start + length
        if stop > end:
            break
        payload = data[start:stop]
        payload = unmask_python(payload, key) if masked else bytes(payload)
        frames.append((payload, opcode == 1, stop))
        pos = stop
    return frames, pos, CUT_MORE


try:   # the C speedups, in the bridge extension (docs/PERFORMANCE.md: what each saves)
    from .._bridge import cut_frames, text_frames, unmask
except ImportError:
    cut_frames, text_frames, unmask = cut_frames_python, text_frames_python, unmask_python


def frame_size(data, pos):
    """Header plus payload length of the frame starting at data[pos], None until its length
    field has arrived (RFC 6455 §5.2)."""
    if len(data) - pos < 2:
        return None
    second = data[pos + 1]
    length, head = second & 0x7F, 2
    if length >= 126:
        head = 4 if length == 126 else 10
        if len(data) - pos < head:
            return None
        length = int.from_bytes(data[pos + 2:pos + head], "big")
    return head + (4 if second & 0x80 else 0) + length


def _as_utf8(payload):
    """A text frame must be UTF-8, so a client never sees 1007 from us: invalid bytes replaced."""
    return payload.decode("utf-8", "replace").encode("utf-8")


class _TurnWrites:
    """The sockets of one event loop with text frames batched in the current turn; run() writes
    them once the turn's callbacks are done (loop.call_soon runs after every ready callback)."""

    __slots__ = ("loop", "socks")

    def __init__(self, loop):
        self.loop = weakref.ref(loop)   # not the loop itself: _turn_writes_of would keep it alive
        self.socks = []

    def add(self, sock):
        if not self.socks:
            self.loop().call_soon(self.run)
        self.socks.append(sock)

    def run(self):
        socks, self.socks = self.socks, []   # sends from inside a write start the next turn's list
        for sock in socks:
            try:
                sock._write_batch()
            except Exception as exc:  # noqa: BLE001 — must not strand the other sockets' frames
                self.loop().call_exception_handler({"message": "a batched WebSocket write failed",
                                                    "exception": exc, "protocol": sock})


_turn_writes_of = weakref.WeakKeyDictionary()   # event loop -> its _TurnWrites


def _turn_writes():
    """This loop's _TurnWrites, or None outside a running loop (then frames are written at once)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    turn = _turn_writes_of.get(loop)
    if turn is None:
        turn = _turn_writes_of[loop] = _TurnWrites(loop)
    return turn


class WebSocket(asyncio.Protocol):
    """One TCP connection carrying a WebSocket once `protocol` (a websockets Sans-I/O object) is
    open. Subclasses do the opening handshake; start() then hands the frames to a handler."""

    protocol = None
    handler = None

    def __init__(self):
        self.transport = None
        self.remote = None
        self._buf = b""              # received bytes not yet a whole frame
        self._owed = 0               # bytes of a frame the library has the start of (-1: header
        self._owed_head = b""        # incomplete, these are its bytes so far)
        self._pending = b""          # bytes after the handshake, before start()
        self._cutting = False        # whole data frames are cut here (open, not fragmented)
        self._fragments = None       # frames of a fragmented message so far
        self._failed = False         # a message broke the protocol: later ones are dropped
        self._paused = False         # the transport's write buffer is above its high-water mark
        self._queue = collections.deque()   # frames (and _CLOSE) waiting for the buffer to drain
        self._batch = []             # text payloads sent in this loop turn, not yet written
        self._batch_bytes = 0
        self._turn = None            # the loop's _TurnWrites, found at the first send
        self._close_args = None
        self._timer = None           # close timeout, or the grace before a close jumps the queue
        self._pings = set()
        self._ping_count = 0
        self._lost = False
        self._closed = None          # future for wait_closed()

    # ---- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.remote = transport.get_extra_info("peername")

    def pause_writing(self):
        self._paused = True

    def resume_writing(self):
        self._paused = False
        self._drain_queue()

    def eof_received(self):
        if self.protocol is not None:
            self.protocol.receive_eof()
            self._flush()
        return False

    def connection_lost(self, exc):
        self._lost = True
        self._batch = []             # as frames still in the transport's buffer: gone with it
        self._cancel_timer()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        queue, self._queue = self._queue, collections.deque()
        handler = self.handler
        if handler is None:
            return
        for item in queue:
            if item is not _CLOSE:
                handler.ws_sent(self, len(item), False)
        self.handler = None
        handler.ws_closed(self)

    def data_received(self, data):
        if self._cutting:
            self._cut(data)
        elif self.handler is None:   # open, not started yet: kept for start()
            if self.protocol is not None and self.protocol.state is OPEN:
                self._pending += data
        elif self.protocol.state is not State.CONNECTING:
            self._to_library(data)

    # ---- what the handler calls ----------------------------------------------------------------

    def start(self, handler):
        """The handshake is done and the handler ready: its frames from here on."""
        self.handler = handler
        self._cutting = self.protocol.state is OPEN
        rest, self._pending = self._pending, b""
        if rest and self._cutting:
            self._cut(rest)
        elif rest:
            self._to_library(rest)
        self.transport.resume_reading()

    async def wait_closed(self):
        if not self._lost:
            if self._closed is None:
                self._closed = asyncio.get_running_loop().create_future()
            await self._closed

    @property
    def is_open(self):
        return (not self._lost and self.protocol is not None and self.protocol.state is OPEN
                and not self.transport.is_closing())

    @property
    def close_code(self):
        return None if self.protocol is None else self.protocol.close_code

    @property
    def close_reason(self):
        return None if self.protocol is None else self.protocol.close_reason

    def send(self, payload):
        """A text message. 1: written now; 0: queued behind a congested socket (ws_sent follows);
        -1: the connection is closing or gone, nothing taken."""
        protocol = self.protocol   # is_open, inline: this runs once per frame sent
        if (self._close_args is not None or self._lost or protocol is None
                or protocol.state is not OPEN or self.transport.is_closing()):
            return -1
        if self._paused or self._queue:
            self._queue.append(payload)
            return 0
        if not payload.isascii():
            payload = _as_utf8(payload)
        batch = self._batch
        if not batch:
            turn = self._turn
            if turn is None:
                turn = self._turn = _turn_writes()
                if turn is None:   # no running loop (a caller outside one): nothing to batch with
                    self.transport.write(text_frames((payload,), self._keys(1)))
                    return 1
            turn.add(self)
        batch.append(payload)
        self._batch_bytes += len(payload)
        if self._batch_bytes >= BATCH_BYTES:
            self._write_batch()
        return 1

    def ping(self):
        if not self.is_open:
            return -1
        self._ping_count += 1
        data = self._ping_count.to_bytes(4, "big")
        self._pings.add(data)
        self.protocol.send_ping(data)
        self._flush()
        return 0

    def close(self, code, reason, grace=None):
        """Close after the frames already queued; with `grace` (s), a queue that has not drained
        by then is dropped and the close goes out at once (a client that never reads)."""
        if self._close_args is not None or self._lost:
            return
        self._close_args = (code, reason)
        if not self._queue:
            self._send_close()
            return
        self._queue.append(_CLOSE)
        if grace is not None:
            self._timer = asyncio.get_running_loop().call_later(grace, self._close_now)

    def abort(self):
        if self.transport is not None:
            self.transport.abort()

    # ---- receiving ---------------------------------------------------------------------------

    def _cut(self, data):
        if self._owed:
            data = self._pay_library(data)
            if not data:
                return
            if not self._cutting:
                return self._to_library(data)
        if self._buf:
            data = self._buf + data
            self._buf = b""
        masked = self._masked
        pos, end = 0, len(data)
        while end - pos >= 2 and self._cutting:
            if self._fragments is None:
                frames, stopped, why = cut_frames(data, pos, masked, MAX_MESSAGE)
                for payload, text, pos in frames:
                    handler = self.handler
                    if handler is None or self._failed or (text and not payload.isascii()):
                        self._deliver(payload, text)   # JSON is almost always ASCII: this is rare
                    else:
                        handler.ws_message(self, payload)
                    if not self._cutting:   # the rest is the library's, from the next frame on
                        break
                else:
                    pos = stopped
                if not self._cutting or why == CUT_MORE:
                    break
                if why == CUT_TOO_BIG:   # never buffered: the library fails it 1009 from its header
                    self._cutting = False
                    break
            # Control frames, fragments, protocol errors (CUT_OTHER), and every frame while a
            # fragmented message is open: the library's, from their first byte on (it judges a
            # header as soon as it has one).
            size = frame_size(data, pos)
            if size is None:   # the header is not whole yet
                self._owed, self._owed_head = -1, bytes(data[pos:])
                return self._to_library(data[pos:])
            stop = pos + size
            self._to_library(data[pos:stop])
            if stop > end:
                self._owed = stop - end
                return
            pos = stop
        if pos < end:
            if self._cutting:
                self._buf = bytes(data[pos:])
            else:
                self._to_library(data[pos:])

    def _pay_library(self, data):
        """The rest of a frame the library has the start of; returns the bytes after it."""
        owed = self._owed
        if owed < 0:   # its header was cut short: how long is the frame?
            head = self._owed_head + data
            size = frame_size(head, 0)
            if size is None:
                self._owed_head = head
                self._to_library(data)
                return b""
            owed = size - len(self._owed_head)
            self._owed_head = b""
        if owed >= len(data):
            self._owed = owed - len(data)
            self._to_library(data)
            return b""
        self._owed = 0
        self._to_library(data[:owed])
        return data[owed:]

    def _to_library(self, data):
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._frame_event(event)
        self._flush()
        if protocol.state is not OPEN:
            self._cutting = False

    def _frame_event(self, frame):
        opcode = frame.opcode
        if opcode is TEXT or opcode is BINARY:
            if not frame.fin:
                self._fragments = [frame]
                return
            self._deliver(bytes(frame.data), opcode is TEXT)
        elif opcode is CONT:
            frames = self._fragments
            if frames is None:   # the library refuses a stray continuation before this
                return
            frames.append(frame)
            if len(frames) > MAX_FRAGMENTS:
                self._fragments = None
                self._fail(CloseCode.MESSAGE_TOO_BIG, f"more than {MAX_FRAGMENTS} fragments")
                return
            if frame.fin:
                self._fragments = None
                self._deliver(b"".join(f.data for f in frames), frames[0].opcode is TEXT)
        elif opcode is PONG:
            data = bytes(frame.data)
            if data in self._pings:
                self._pings.discard(data)
                if self.handler is not None:
                    self.handler.ws_pong(self)
        # PING and CLOSE: the library has answered them (see _flush)

    def _deliver(self, data, text):
        if self._failed or self.handler is None:
            return
        if text and not data.isascii():   # JSON is almost always ASCII: skip the decode
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        self.handler.ws_message(self, data)

    def _fail(self, code, reason):
        self._failed = True
        self._cutting = False
        self.protocol.fail(code, reason)
        self._flush()

    # ---- sending -----------------------------------------------------------------------------

    def _keys(self, count):
        """Masking keys for count frames: a client masks each frame with its own, a server none."""
        return None if self._masked else os.urandom(4 * count)

    def _write_batch(self):
        batch = self._batch
        if not batch:
            return
        self._batch = []
        self._batch_bytes = 0
        if self._lost or self.transport.is_closing():   # aborted since: as into a closed socket
            return
        self.transport.write(text_frames(batch, self._keys(len(batch))))

    def _write_text(self, payload):
        if not payload.isascii():
            payload = _as_utf8(payload)
        self.transport.write(text_frames((payload,), self._keys(1)))

    def _drain_queue(self):
        self._write_batch()
        queue, handler = self._queue, self.handler
        while queue and not self._paused and not self._lost:
            item = queue.popleft()
            if item is _CLOSE:
                self._cancel_timer()
                self._send_close()
                continue
            written = self.is_open
            if written:
                self._write_text(item)
            if handler is not None:
                handler.ws_sent(self, len(item), written)

    def _close_now(self):
        self._timer = None
        queue, self._queue = self._queue, collections.deque()
        for item in queue:
            if item is not _CLOSE and self.handler is not None:
                self.handler.ws_sent(self, len(item), False)
        self._send_close()

    def _send_close(self):
        if self.is_open:
            self.protocol.send_close(*self._close_args)
            self._cutting = False
        self._flush()   # also starts the close timeout

    def _flush(self):
        self._write_batch()   # what send() batched goes first: the wire keeps the calls' order
        transport = self.transport
        for data in self.protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():   # the library's end of stream
                transport.write_eof()
            else:
                transport.close()
        if self.protocol.close_expected() and self._timer is None and not self._lost:
            self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def _cancel_timer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ServerWebSocket(WebSocket):
    """An accepted connection, once its HTTP request asked for an upgrade (endpoints.py reads the
    request and calls accept())."""

    _masked = True   # clients mask their frames, servers do not (RFC 6455 §5.1)

    def accept(self, head, rest, server_header):
        """Answer the upgrade request `head` (its bytes up to the blank line; rest: what came
        after it). True: open, start() next; False: refused with the library's HTTP answer, and
        refusal() says why."""
        protocol = ServerProtocol(extensions=None, max_size=MAX_MESSAGE)
        self.protocol = protocol
        protocol.receive_data(head)
        events = protocol.events_received()
        if not events:   # the library did not take a request that endpoints.py parsed
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
            self.transport.close()
            return False
        response = protocol.accept(events[0])
        response.headers["Server"] = server_header
        protocol.send_response(response)
        self._flush()
        if protocol.state is not OPEN:
            return False
        self._pending = rest
        return True

    def refusal(self):
        exc = self.protocol.handshake_exc if self.protocol is not None else None
        return str(exc) if exc is not None else "not a valid WebSocket request"


class ClientWebSocket(WebSocket):
    """A connection this side dials (hub links, the bench's peers): see dial()."""

    _masked = False   # servers do not mask their frames; ours are masked (text_frames)

    def __init__(self, protocol, user_agent):
        super().__init__()
        self.protocol = protocol
        self._user_agent = user_agent
        self._head = b""
        self._refused = False        # the answer is not an upgrade: all of it is the library's
        self.opened = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        super().connection_made(transport)
        request = self.protocol.connect()
        if self._user_agent:
            request.headers["User-Agent"] = self._user_agent
        self.protocol.send_request(request)
        self._flush()

    def data_received(self, data):
        if self.protocol.state is not State.CONNECTING:
            return super().data_received(data)
        if self._refused:
            return self._handshake_done(data)
        # The response head goes to the library alone, so that the frames right behind it are
        # cut here with the library's parser at a frame boundary.
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_RESPONSE_HEAD:
                self._handshake_done(self._head)   # the library refuses it
            return
        if self._head.startswith(b"HTTP/1.1 101 "):
            head, self._pending = self._head[:end + 4], self._head[end + 4:]
        else:   # a refusal: the library reads its body for the reason
            head, self._refused = self._head, True
        self._head = b""
        self._handshake_done(head)

    def _handshake_done(self, head):
        protocol = self.protocol
        protocol.receive_data(head)
        protocol.events_received()
        self._flush()
        if self.opened.done():
            return
        if protocol.state is OPEN:
            self.transport.pause_reading()   # until start()
            self.opened.set_result(None)
        elif protocol.handshake_exc is not None:
            self.opened.set_exception(protocol.handshake_exc)
            self.transport.abort()

    def connection_lost(self, exc):
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the WebSocket handshake"))
        super().connection_lost(exc)


class Callbacks:
    """A handler made of plain functions, for a client that only reads messages."""

    def __init__(self, on_message, on_closed=None):
        self.on_message, self.on_closed = on_message, on_closed

    def ws_message(self, _ws, data):
        self.on_message(data)

    def ws_closed(self, ws):
        if self.on_closed is not None:
            self.on_closed(ws)

    def ws_pong(self, _ws):
        pass

    def ws_sent(self, _ws, _nbytes, _written):
        pass


def client_ssl_context(ca=None):
    """TLS settings for wss:// and https:// clients: the system's CAs, plus the CA certificate file
    `ca` (PEM) when given, e.g. the one that signed a board's self-signed certificate (--ca).
    Raises OSError or ssl.SSLError for a file that cannot be read or is not PEM."""
    context = ssl.create_default_context()
    if ca is not None:
        context.load_verify_locations(cafile=str(ca))
    return context


async def dial(url, open_timeout, user_agent=None, ssl_context=None):
    """Open a WebSocket to url (ws:// or wss://, directly: no proxy). Returns the ClientWebSocket,
    open and paused until start(handler). wss:// verifies the hub's certificate with ssl_context
    (default: client_ssl_context()). Raises OSError (refused, DNS, TLS: ssl.SSLError),
    asyncio.TimeoutError, or websockets' InvalidHandshake (InvalidStatus: an HTTP answer other
    than the upgrade)."""
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    ws = None

    async def connect():
        nonlocal ws
        context = (ssl_context or client_ssl_context()) if uri.secure else None
        protocol = ClientProtocol(uri, extensions=None, max_size=MAX_MESSAGE)
        _transport, ws = await loop.create_connection(
            lambda: ClientWebSocket(protocol, user_agent), uri.host, uri.port, ssl=context,
            server_hostname=uri.host if context else None)
        await ws.opened

    try:
        await asyncio.wait_for(connect(), open_timeout)
    except BaseException:
        if ws is not None:
            ws.abort()
        raise
    return ws

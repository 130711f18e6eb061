"""Atheris target `frames`: the PC hub's WebSocket receive path (src/pigeonhub/hub/ws.py).

The hub's own receive path (ws.ServerWebSocket: data frames cut out of the received bytes there,
websockets' Sans-I/O ServerProtocol for the rest) is fed the fuzzer's bytes, as a client would send
them, in the chunks the fuzzer picks, on a connection that has just completed its handshake. Its result is compared with websockets'
own Sans-I/O parser (ServerProtocol.receive_data) reading the same bytes in one piece:

  * the messages handed to the hub are the same, byte for byte, in the same order: every complete
    text or binary message, fragments joined, up to the first text message that is not UTF-8;
  * the connection ends as the library would end it: no close frame while the reference stays
    open; otherwise the close code of the first close frame the hub sent is the reference's
    (1002 protocol error, 1009 too big, the echo of a client's close), or 1007 after bad UTF-8 /
    1009 after too many fragments, which the hub adds to the library;
  * nothing raises out of data_received, no task fails, and the hub gets bytes objects.

    .venv/bin/python fuzz/fuzz_frames.py [libFuzzer flags] CORPUS_DIR...   (fuzz/Makefile: run-frames)
"""

import asyncio
import sys

import atheris

with atheris.instrument_imports(include=["pigeonhub", "websockets"]):
    from websockets.client import ClientProtocol
    from websockets.frames import BINARY, CLOSE, CONT, TEXT, CloseCode
    from websockets.protocol import OPEN
    from websockets.server import ServerProtocol

    from pigeonhub.hub.ws import MAX_FRAGMENTS, MAX_MESSAGE, ServerWebSocket

UPGRADE = (b"GET /?peerId=0 HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


class LoopbackTransport(asyncio.Transport):
    """What the event loop gives a connection, minus the socket: writes are kept for checking."""

    def __init__(self, loop, protocol):
        super().__init__()
        self.loop, self.protocol = loop, protocol
        self.written = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data):
        if not self.closed:
            self.written += data

    def close(self):
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    abort = close

    def is_closing(self):
        return self.closed

    def can_write_eof(self):
        return False

    def get_write_buffer_size(self):
        return 0

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def get_extra_info(self, name, default=None):
        return default


def reference(stream):
    """(messages, close code or None, code the hub may add) as websockets' parser reads stream."""
    protocol = ServerProtocol(state=OPEN, max_size=MAX_MESSAGE)
    protocol.receive_data(stream)
    messages, fragments = [], None
    for frame in protocol.events_received():
        if frame.opcode in (TEXT, BINARY):
            if not frame.fin:
                fragments = [frame]
                continue
            text, data = frame.opcode is TEXT, frame.data
        elif frame.opcode is CONT:
            fragments.append(frame)
            if len(fragments) > MAX_FRAGMENTS:
                return messages, _sent_close(protocol), CloseCode.MESSAGE_TOO_BIG
            if not frame.fin:
                continue
            text, data = fragments[0].opcode is TEXT, b"".join(f.data for f in fragments)
            fragments = None
        else:
            continue
        if text:
            try:
                bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                return messages, _sent_close(protocol), CloseCode.INVALID_DATA
        messages.append(bytes(data))
    return messages, _sent_close(protocol), None


def _sent_close(protocol):
    return protocol.close_sent.code if protocol.close_sent is not None else None


def first_close_code(written):
    """The code of the first close frame in what the hub wrote (parsed as a client would)."""
    client = ClientProtocol("ws://hub/", state=OPEN, max_size=None)
    client.receive_data(bytes(written))
    for frame in client.events_received():
        if frame.opcode is CLOSE:
            return int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else CloseCode.NO_STATUS_RCVD
    return None


class Recorder:
    """The hub's side of the socket (pigeonhub.hub.server.Connection), keeping what it is handed."""

    def __init__(self):
        self.got = []

    def ws_message(self, _ws, data):
        if type(data) is not bytes:
            raise AssertionError(f"the hub was handed a {type(data).__name__}, not bytes")
        self.got.append(data)

    def ws_pong(self, _ws):
        pass

    def ws_sent(self, _ws, _nbytes, _written):
        pass

    def ws_closed(self, _ws):
        pass


async def feed(chunks, with_request):
    loop = asyncio.get_running_loop()
    sock = ServerWebSocket()
    transport = LoopbackTransport(loop, sock)
    sock.connection_made(transport)
    # with_request: the first chunk came in the same segment as the upgrade request
    rest = chunks.pop(0) if with_request and chunks else b""
    if not sock.accept(UPGRADE, rest, "fuzz"):
        raise AssertionError(f"the handshake failed: {bytes(transport.written)[:200]!r}")
    handshake = len(transport.written)
    recorder = Recorder()
    sock.start(recorder)
    for chunk in chunks:
        if transport.closed:
            break
        sock.data_received(chunk)
        await asyncio.sleep(0)
    written = bytes(transport.written[handshake:])
    transport.close()
    await asyncio.sleep(0)
    return recorder.got, written


def split(seed, data):
    """The bytes as the fuzzer wants them to arrive: in one piece (seed 0), or in pieces of 1 to
    64 bytes whose sizes follow from the seed."""
    if seed == 0:
        return [data]
    chunks, pos, state = [], 0, seed
    while pos < len(data):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        size = 1 + (state >> 16) % 64
        chunks.append(data[pos:pos + size])
        pos += size
    return chunks


def one_input(raw):
    if len(raw) < 2:
        return
    # byte 0, bit 0: the first chunk arrives with the upgrade request; byte 1: how the stream
    # (the rest of the input) is cut into chunks.
    with_request, stream = raw[0] & 1, raw[2:]
    got, written = LOOP.run_until_complete(feed(split(raw[1], stream), with_request))
    if LOOP_ERRORS:
        raise AssertionError(f"event loop error: {LOOP_ERRORS[0]}")
    expected, close, added = reference(stream)
    if got != expected:
        raise AssertionError(f"messages differ: hub {got!r}, library {expected!r}")
    sent = first_close_code(written)
    if added is None and sent != close:
        raise AssertionError(f"close code {sent} sent, the library sends {close}")
    # After a bad message the hub fails the connection with `added`; a close the library sends
    # for later bytes of the same data_received may go out first.
    if added is not None and (sent is None or sent not in (added, close)):
        raise AssertionError(f"close code {sent} after a bad message, expected {added}"
                             f"{f' or {close}' if close else ''}")


LOOP = asyncio.new_event_loop()
LOOP_ERRORS = []   # asyncio reports a failed callback or task to its handler, never to the caller
LOOP.set_exception_handler(lambda loop, context: LOOP_ERRORS.append(
    f"{context.get('message')} {context.get('exception')!r}"))

if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()

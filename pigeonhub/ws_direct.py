"""Data messages straight from the socket to a callback.

The hub (pigeonhub/server.py) hands every message to the bridge this way, and the bench load
generator reads relayed frames this way, so neither pays the library's recv() machinery per frame.
"""


def direct_frames(base):
    """A websockets Connection subclass (server or client side) that hands each complete data
    message to a callback instead of queueing it in the library's Assembler for a recv() loop: at
    hub rates the future, wake-up and task switch per frame cost about as much as the module's
    work on it.

    Two paths lead to the callback. Unfragmented data frames within the size limit are cut out of
    the received bytes here (data_received), while the library's parser waits at a frame boundary
    of an open connection: its generator-based parser costs more per frame than the rest of the
    receive path. Everything else goes through the library (handshake, pings, pongs, close
    handshake, fragments, protocol errors, max_size 1009) and its data frames arrive in
    process_event. Both check UTF-8 and fail the connection with 1007 as recv() would."""
    from websockets.asyncio.messages import MAX_FRAGMENTS
    from websockets.frames import BINARY, CONT, TEXT, CloseCode, Frame, apply_mask
    from websockets.protocol import SERVER, State

    OPEN = State.OPEN

    class DirectFrames(base):
        _sink = None          # callable(bytes) taking each message; None: keep them in _pending
        _pending = None       # messages that arrived before the hub attached its sink
        _fragments = None     # frames of a fragmented message so far (library path)
        _failed = False       # a message broke the protocol (bad UTF-8): drop the rest, as recv()
        _partial = None       # bytearray: the start of a frame cut out here, waiting for the rest

        # --- the fast path ------------------------------------------------------------------

        def data_received(self, data):
            partial = self._partial
            if partial is not None:
                self._partial = None
                partial += data
                if self.protocol.state is not OPEN:   # closing: the library takes it from here
                    return super().data_received(bytes(partial))
                data = partial
            elif not self._parser_idle():
                return super().data_received(data)
            self._cut_frames(data)

        def _parser_idle(self):
            """The library's parser waits for the first byte of a frame of an open connection, in
            no fragmented message: the bytes that follow can be parsed here instead. Found by
            looking at where its generator is suspended; if a websockets release changes that,
            this says no and every frame takes the library's path, as before."""
            protocol = self.protocol
            if (protocol.state is not OPEN or protocol.current_size is not None
                    or protocol.reader.buffer or protocol.parser_exc is not None):
                return False
            gen = protocol.parser
            while getattr(gen, "gi_yieldfrom", None) is not None:
                gen = gen.gi_yieldfrom
            return getattr(getattr(gen, "gi_code", None), "co_name", None) == "at_eof"

        def _cut_frames(self, data):
            protocol = self.protocol
            masked = protocol.side is SERVER   # clients mask, servers do not (RFC 6455 §5.1)
            limit, fragment = protocol.max_message_size, protocol.max_fragment_size
            if fragment is not None:
                limit = fragment if limit is None else min(limit, fragment)
            pos, end = 0, len(data)
            while end - pos >= 2:
                head1, head2 = data[pos], data[pos + 1]
                opcode = head1 & 0x0F
                # FIN, no RSV bits, TEXT or BINARY, the masking the protocol requires; anything
                # else (control frames, fragments, errors) is the library's to handle
                if (head1 & 0xF0 != 0x80 or (opcode != 1 and opcode != 2)
                        or bool(head2 & 0x80) is not masked):
                    return self._to_library(data, pos)
                length = head2 & 0x7F
                start = pos + 2
                if length >= 126:
                    size = 2 if length == 126 else 8
                    if end - start < size:
                        break
                    length = int.from_bytes(data[start:start + size], "big")
                    start += size
                if limit is not None and length > limit:
                    return self._to_library(data, pos)   # it fails the connection with 1009
                if masked:
                    if end - start < 4:
                        break
                    mask = data[start:start + 4]
                    start += 4
                if end - start < length:
                    break
                payload = bytes(data[start:start + length])
                pos = start + length
                self._deliver(apply_mask(payload, mask) if masked else payload, opcode == 1)
                if self._failed or self.protocol.state is not OPEN:
                    return self._to_library(data, pos)
            if pos < end:
                self._partial = bytearray(data[pos:])

        def _to_library(self, data, pos):
            if pos < len(data):
                super().data_received(bytes(data[pos:]))

        # --- the library's path -------------------------------------------------------------

        def process_event(self, event):
            if not isinstance(event, Frame):
                return super().process_event(event)   # the handshake request / response
            opcode = event.opcode
            if opcode is TEXT or opcode is BINARY:
                if not event.fin:
                    self._fragments = [event]
                    return None
                text, data = opcode is TEXT, event.data
            elif opcode is CONT:
                frames = self._fragments
                if frames is None:   # not reachable: the protocol refuses a stray continuation
                    return None
                if len(frames) >= MAX_FRAGMENTS:
                    self._fragments = None
                    self._fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments", None)
                    return None
                frames.append(event)
                if not event.fin:
                    return None
                self._fragments = None
                text = frames[0].opcode is TEXT
                data = b"".join(frame.data for frame in frames)
            else:
                return super().process_event(event)   # ping, pong (acknowledge_pings), close
            if type(data) is not bytes:   # the parser yields bytes; a bytearray must not be kept
                data = bytes(data)
            self._deliver(data, text)
            return None

        # --- both -------------------------------------------------------------------------

        def _deliver(self, data, text):
            if self._failed:
                return
            if text and not data.isascii():   # JSON is almost always ASCII: skip the decode
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}", exc)
                    return
            sink = self._sink
            if sink is None:
                if self._pending is None:
                    self._pending = []
                self._pending.append(data)
                # The Assembler's flow control: stop reading from a client that floods a
                # connection the hub has not taken on yet.
                if self.max_queue_high is not None and len(self._pending) > self.max_queue_high:
                    self.transport.pause_reading()
                return
            sink(data)

        def attach(self, sink):
            """From now on every message goes to sink(data); those that came earlier go first."""
            pending, self._pending = self._pending, None
            self._sink = sink
            if pending:
                for data in pending:
                    sink(data)
                if self.max_queue_high is not None and len(pending) > self.max_queue_high:
                    self.transport.resume_reading()

        def _fail(self, code, reason, exc):
            # What recv() does on bad UTF-8 or too many fragments: fail the connection through
            # send_context (which also enforces the close timeout); later messages are dropped.
            self._failed = True
            if exc is not None:
                self.set_connection_exc(exc)
            self._fail_task = self.loop.create_task(self._fail_async(code, reason))

        async def _fail_async(self, code, reason):
            from websockets.exceptions import ConnectionClosed
            try:
                async with self.send_context():
                    self.protocol.fail(code, reason)
            except ConnectionClosed:
                pass

    DirectFrames.__name__ = DirectFrames.__qualname__ = f"Direct{base.__name__}"
    return DirectFrames

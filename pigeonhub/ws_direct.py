"""Data messages straight from websockets' event processing to a callback.

The hub (pigeonhub/server.py) hands every message to the bridge this way, and the bench load
generator reads relayed frames this way, so neither pays the library's recv() machinery per frame.
"""


def direct_frames(base):
    """A websockets Connection subclass (server or client side) that hands each complete data
    message to a callback straight from the protocol's event processing, instead of queueing it
    in the library's Assembler for a recv() loop: at hub rates the future, wake-up and task switch
    per frame cost about as much as the module's work on it. Everything else (handshake, pings,
    pongs, close handshake, max_size 1009) stays the library's: only TEXT/BINARY/CONT frames are
    taken over, and they are reassembled and UTF-8 checked here as recv() would."""
    from websockets.asyncio.messages import MAX_FRAGMENTS
    from websockets.frames import BINARY, CONT, TEXT, CloseCode, Frame

    class DirectFrames(base):
        _sink = None          # callable(bytes) taking each message; None: keep them in _pending
        _pending = None       # messages that arrived before the hub attached its sink
        _fragments = None     # frames of a fragmented message so far
        _failed = False       # a message broke the protocol (bad UTF-8): drop the rest, as recv()

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
            if self._failed:
                return None
            if type(data) is not bytes:   # the parser yields bytes; a bytearray must not be kept
                data = bytes(data)
            if text and not data.isascii():   # JSON is almost always ASCII: skip the decode
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}", exc)
                    return None
            sink = self._sink
            if sink is None:
                if self._pending is None:
                    self._pending = []
                self._pending.append(data)
                # The Assembler's flow control: stop reading from a client that floods a
                # connection the hub has not taken on yet.
                if self.max_queue_high is not None and len(self._pending) > self.max_queue_high:
                    self.transport.pause_reading()
                return None
            sink(data)
            return None

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

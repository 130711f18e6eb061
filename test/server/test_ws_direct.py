"""pigeonhub/ws_direct.py against real websockets servers and clients on loopback.

The wire-level behaviour (cut frames, pings between frames, 1002, 1007) is in
test/conformance/test_framing.py, against the whole PC hub and the reference server. Here: that
plain data frames really take the fast path on both sides (if a websockets release moved the
parser's suspension point, every frame would silently go the slow way), and that fragmented
messages and pings still take the library's path and come out whole, in order."""

import asyncio

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from pigeonhub.ws_direct import direct_frames


def spied(base):
    """A direct_frames class counting which path delivered each message."""
    cls = direct_frames(base)

    class Spied(cls):
        fast = library = 0
        _in_library = False

        def process_event(self, event):
            self._in_library = True
            try:
                return super().process_event(event)
            finally:
                self._in_library = False

        def _deliver(self, data, text):
            if self._in_library:
                Spied.library += 1
            else:
                Spied.fast += 1
            return super()._deliver(data, text)

    return Spied


async def exchange(client_messages, server_replies, *, fragment=False):
    """Sends client_messages to an echo-less server that answers with server_replies once it
    has them all; returns (messages the server got, messages the client got, classes)."""
    server_cls, client_cls = spied(ServerConnection), spied(ClientConnection)
    got_server, got_client = [], []
    all_in, all_back = asyncio.Event(), asyncio.Event()

    async def handler(ws):
        def sink(message):
            got_server.append(message)
            if len(got_server) == len(client_messages):
                all_in.set()
        ws.attach(sink)
        await all_in.wait()
        for reply in server_replies:
            await ws.send(reply)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, create_connection=server_cls,
                     compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None,
                           create_connection=client_cls) as ws:
            def sink(message):
                got_client.append(message)
                if len(got_client) == len(server_replies):
                    all_back.set()
            ws.attach(sink)
            for i, message in enumerate(client_messages):
                if fragment and i % 2:
                    await ws.send([message[:3], message[3:]])   # two frames, one message
                    await ws.ping()
                else:
                    await ws.send(message)
            await asyncio.wait_for(all_back.wait(), 10)
    return got_server, got_client, server_cls, client_cls


def test_data_frames_take_the_fast_path_both_ways():
    sent = [f"client message {i}" * (1 + i * 20) for i in range(30)]
    replies = [f"reply {i}".encode() * (1 + i) for i in range(30)]
    got_server, got_client, server_cls, client_cls = asyncio.run(exchange(sent, replies))
    assert got_server == [m.encode() for m in sent]
    assert got_client == replies
    assert server_cls.fast >= 25, f"only {server_cls.fast} of 30 messages took the fast path"
    assert client_cls.fast >= 25, f"only {client_cls.fast} of 30 replies took the fast path"
    assert server_cls.fast + server_cls.library == 30


def test_fragments_and_pings_take_the_library_path_in_order():
    sent = [f"message number {i}" for i in range(12)]
    got_server, got_client, server_cls, _ = asyncio.run(exchange(sent, ["done"], fragment=True))
    assert got_server == [m.encode() for m in sent]   # whole and in order across both paths
    assert got_client == [b"done"]
    assert server_cls.library >= 6   # the fragmented half always does
    assert server_cls.fast + server_cls.library == len(sent)

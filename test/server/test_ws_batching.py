"""Writes batched per event-loop turn (src/pigeonhub/hub/ws.py): the text frames a socket is sent
in one turn leave in order in one write; anything else written to it (pong, ping, close) comes
after them; a congested socket still queues; and on the real hub, the frames one module call
sends to one client leave in one write. With the C framing and with the pure-Python fallback."""

import argparse
import asyncio

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import State

from pigeonhub import _bridge
from pigeonhub.hub import server, ws
from pigeonhub.log import Logger

UPGRADE = (b"GET /?peerId=0 HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


@pytest.fixture(params=["c", "python"])
def framing(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(ws, "text_frames", ws.text_frames_python)
        monkeypatch.setattr(ws, "cut_frames", ws.cut_frames_python)
    return request.param


class SpyTransport(asyncio.Transport):
    """A socket that keeps every write call (write or writelines: each is one system call)."""

    def __init__(self, protocol):
        super().__init__()
        self.protocol = protocol
        self.writes = []
        self.closing = False

    def write(self, data):
        self.writes.append(bytes(data))

    def writelines(self, chunks):
        self.writes.append(b"".join(chunks))

    def close(self):
        self.closing = True

    def abort(self):
        self.closing = True

    def is_closing(self):
        return self.closing

    def can_write_eof(self):
        return False

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_extra_info(self, name, default=None):
        return default


class Handler:
    def __init__(self):
        self.sent = []

    def ws_message(self, _ws, _data):
        pass

    def ws_pong(self, _ws):
        pass

    def ws_sent(self, _ws, nbytes, written):
        self.sent.append((nbytes, written))

    def ws_closed(self, _ws):
        pass


def open_socket():
    sock = ws.ServerWebSocket()
    transport = SpyTransport(sock)
    sock.connection_made(transport)
    assert sock.accept(UPGRADE, b"", "test")
    sock.start(Handler())
    transport.writes.clear()   # the 101 answer
    return sock, transport


def frames_in(write):
    """(opcode, data) of each frame in one write, read as a client reads them."""
    client = ClientProtocol("ws://hub/", state=State.OPEN, max_size=None)
    client.receive_data(write)
    return [(frame.opcode, bytes(frame.data)) for frame in client.events_received()]


def texts(n, size=40):
    return [(f"{i:04d}" + "x" * size).encode() for i in range(n)]


def test_the_frames_of_one_turn_leave_in_order_in_one_write(framing):
    async def main():
        a, ta = open_socket()
        b, tb = open_socket()
        sent = texts(5)
        assert [a.send(m) for m in sent] == [1] * 5
        assert b.send(b"to b") == 1
        assert ta.writes == [] and tb.writes == []      # not before the turn ends
        await asyncio.sleep(0)
        assert [frames_in(w) for w in ta.writes] == [[(Opcode.TEXT, m) for m in sent]]
        assert [frames_in(w) for w in tb.writes] == [[(Opcode.TEXT, b"to b")]]
        assert a.send(b"next turn") == 1                 # a later turn: a write of its own
        await asyncio.sleep(0)
        assert len(ta.writes) == 2 and frames_in(ta.writes[1]) == [(Opcode.TEXT, b"next turn")]

    asyncio.run(main())


def test_a_control_frame_or_a_close_goes_after_the_batched_frames(framing):
    async def main():
        sock, transport = open_socket()
        sent = texts(3)
        for m in sent:
            sock.send(m)
        assert sock.ping() == 0
        sock.close(1000, "bye")
        await asyncio.sleep(0)
        got = [f for w in transport.writes for f in frames_in(w)]
        assert [op for op, _ in got] == [Opcode.TEXT] * 3 + [Opcode.PING, Opcode.CLOSE]
        assert [data for _, data in got[:3]] == sent
        assert sock.send(b"late") == -1                  # closing: nothing taken

    asyncio.run(main())


def test_a_large_batch_is_written_at_once_so_a_congested_socket_still_queues(framing):
    async def main():
        sock, transport = open_socket()
        big = texts(1, size=ws.BATCH_BYTES)[0]
        assert sock.send(b"small") == 1 and sock.send(big) == 1
        assert len(transport.writes) == 1                # past BATCH_BYTES: at once
        assert frames_in(transport.writes[0]) == [(Opcode.TEXT, b"small"), (Opcode.TEXT, big)]
        sock.pause_writing()                             # what the transport says past its mark
        assert sock.send(b"queued") == 0
        await asyncio.sleep(0)
        assert len(transport.writes) == 1
        sock.resume_writing()
        assert frames_in(transport.writes[-1]) == [(Opcode.TEXT, b"queued")]
        assert sock.handler.sent == [(len(b"queued"), True)]

    asyncio.run(main())


def test_a_write_that_fails_leaves_the_other_sockets_of_the_turn_written(framing):
    async def main():
        errors = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        broken, tb = open_socket()
        fine, tf = open_socket()

        def refuse(_data):
            raise RuntimeError("socket gone")
        tb.write = refuse
        broken.send(b"lost")
        fine.send(b"kept")
        await asyncio.sleep(0)
        assert [frames_in(w) for w in tf.writes] == [[(Opcode.TEXT, b"kept")]]
        assert [type(e["exception"]) for e in errors] == [RuntimeError]
        tb.write = SpyTransport.write.__get__(tb)   # the next turn starts a new batch
        broken.send(b"again")
        await asyncio.sleep(0)
        assert [frames_in(w) for w in tb.writes] == [[(Opcode.TEXT, b"again")]]

    asyncio.run(main())


def test_frames_batched_when_the_connection_is_lost_are_dropped(framing):
    async def main():
        sock, transport = open_socket()
        sock.send(b"lost")
        sock.connection_lost(None)
        await asyncio.sleep(0)
        assert transport.writes == []

    asyncio.run(main())


# ---- the real hub: one module call, one write per client ---------------------------------------

class CountingTransport:
    """The socket's transport with its writes counted; everything else passed through."""

    def __init__(self, transport, log):
        self._transport, self._log = transport, log

    def write(self, data):
        self._log.append(bytes(data))
        self._transport.write(data)

    def writelines(self, chunks):
        self.write(b"".join(chunks))

    def __getattr__(self, name):
        return getattr(self._transport, name)


class Inbox(Handler):
    def __init__(self):
        super().__init__()
        self.got, self.arrived = [], asyncio.Event()

    def ws_message(self, _ws, data):
        self.got.append(data)
        self.arrived.set()


def test_the_frames_one_module_call_sends_a_client_leave_in_one_write(framing, monkeypatch):
    """The fourth peer's announce: the module sends it three peer-discovered frames from one
    on_message call; the hub writes them to its socket with one write."""
    if not server.DEFAULT_MODULE.exists():
        from pigeonhub.module.build import build_module
        build_module(server.DEFAULT_MODULE)
    writes = {}   # server-side socket -> its writes

    class SpiedConnection(server.HubConnection):
        def connection_made(self, transport):
            writes[self] = []
            super().connection_made(CountingTransport(transport, writes[self]))

    monkeypatch.setattr(server, "HubConnection", SpiedConnection)
    args = argparse.Namespace(host="127.0.0.1", port=0, module=None, max_peers=None,
                              device_id="batching-test", upload_token=None, module_dir=None,
                              bootstrap_urls=[], max_links=None, verbose=False)
    hub = server.PcHub(_bridge, server.DEFAULT_MODULE, args, Logger(level="W"))

    async def main():
        await hub.boot()
        peers = []
        try:
            for i in range(4):
                peer_id = f"{i + 1:040x}"
                sock = await ws.dial(f"ws://127.0.0.1:{hub.port}/?peerId={peer_id}", 5)
                inbox = Inbox()
                sock.start(inbox)
                peers.append((peer_id, sock, inbox))
            for peer_id, sock, inbox in peers:
                await asyncio.wait_for(inbox.arrived.wait(), 5)   # `connected`
            for peer_id, sock, inbox in peers[:3]:
                sock.send(f'{{"type":"announce","data":{{"peerId":"{peer_id}"}},'
                          f'"networkName":"batch"}}'.encode())
            await asyncio.sleep(0.3)
            last_id, last, inbox = peers[3]
            fourth = list(writes)[3]   # the server's sockets, in the order the peers dialed
            before = len(writes[fourth])
            inbox.got.clear()
            last.send(f'{{"type":"announce","data":{{"peerId":"{last_id}"}},'
                      f'"networkName":"batch"}}'.encode())
            for _ in range(50):
                if len(inbox.got) >= 3:
                    break
                await asyncio.sleep(0.02)
            new = writes[fourth][before:]
            assert len(new) == 1, f"{len(new)} writes for one module call"
            frames = frames_in(new[0])
            assert [op for op, _ in frames] == [Opcode.TEXT] * 3
            assert [data for _, data in frames] == inbox.got
            assert all(b'"peer-discovered"' in data for data in inbox.got)
        finally:
            for _peer_id, sock, _inbox in peers:
                sock.abort()
            await hub.shutdown()

    asyncio.run(main())

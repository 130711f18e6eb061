"""src/pigeonhub/hub/ws.py and endpoints.py against real websockets clients and servers on loopback.

The wire-level behaviour (cut frames, pings between frames, 1002, 1007) is in
test/conformance/test_framing.py, against the whole PC hub and the reference server. Here: that
plain data frames really skip the library's parser on both sides (if they did not, every frame
would silently take the slow way), that fragments and pings still come out whole and in order, and
that the package uses websockets through its public names only."""

import ast
import asyncio
import importlib
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus

from pigeonhub.hub import ws
from pigeonhub.hub.endpoints import HubConnection

PACKAGE = Path(ws.__file__).resolve().parent


class Recorder:
    def __init__(self, expected):
        self.got, self.expected, self.done = [], expected, asyncio.Event()
        self.pongs = 0

    def ws_message(self, _ws, data):
        self.got.append(data)
        if len(self.got) == self.expected:
            self.done.set()

    def ws_pong(self, _ws):
        self.pongs += 1

    def ws_sent(self, _ws, _nbytes, _written):
        pass

    def ws_closed(self, _ws):
        self.done.set()


class Upgrader:
    """The smallest router: every request is a WebSocket for one Recorder."""

    def __init__(self, recorder):
        self.recorder, self.socks = recorder, []

    def route(self, conn, request):
        assert request.upgrade
        assert conn.upgrade(), conn.refusal()
        conn.start(self.recorder)
        self.socks.append(conn)


def count_library_calls(monkeypatch):
    """How often each side's Sans-I/O parser is fed after the handshake."""
    calls = {"server": 0, "client": 0}
    for side, cls in (("server", ws.ServerProtocol), ("client", ws.ClientProtocol)):
        original = cls.receive_data

        def spy(self, data, side=side, original=original):
            if self.state is ws.OPEN:
                calls[side] += 1
            return original(self, data)
        monkeypatch.setattr(cls, "receive_data", spy)
    return calls


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


class Echo(Recorder):
    def ws_message(self, sock, data):
        super().ws_message(sock, data)
        sock.send(data)


def test_plain_frames_skip_the_library_both_ways(monkeypatch):
    calls = count_library_calls(monkeypatch)
    messages = [f'{{"n":{i},"pad":"{"x" * (i * 97 % 5000)}"}}'.encode() for i in range(200)]

    async def main():
        echo = Echo(len(messages))
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: HubConnection(Upgrader(echo)), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        back = Recorder(len(messages))
        sock = await ws.dial(f"ws://127.0.0.1:{port}/x", 5)
        sock.start(back)
        for m in messages:
            assert sock.send(m) in (0, 1)
        await back.done.wait()
        server.close()
        return echo.got, back.got

    at_server, at_client = run(main())
    assert at_server == messages and at_client == messages
    assert calls == {"server": 0, "client": 0}


def test_fragments_and_pings_take_the_library_and_come_out_whole(monkeypatch):
    calls = count_library_calls(monkeypatch)
    messages = [f"message {i}".encode() for i in range(10)]

    async def main():
        recorder = Recorder(len(messages))
        upgrader = Upgrader(recorder)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: HubConnection(upgrader), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None) as client:
            for i, m in enumerate(messages):
                if i % 2:
                    await client.send([m[:3].decode(), m[3:].decode()])   # two frames, one message
                    pong = await client.ping()
                    await pong
                else:
                    await client.send(m.decode())
            await recorder.done.wait()
            sock = upgrader.socks[0]
            assert sock.ping() == 0
            for _ in range(50):
                if recorder.pongs:
                    break
                await asyncio.sleep(0.02)
        server.close()
        return recorder

    recorder = run(main())
    assert recorder.got == messages
    assert recorder.pongs == 1
    assert calls["server"] > 0   # fragments, pings and the close went through the library


def test_client_reads_what_a_websockets_server_sends_around_its_handshake():
    """Frames the server sends right behind its 101 reach the handler, whole and in order."""
    replies = [f"reply {i} ".encode() * (i + 1) for i in range(30)]

    async def main():
        async def handler(conn):
            for r in replies:
                await conn.send(r.decode())
            await conn.wait_closed()

        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            sock = await ws.dial(f"ws://127.0.0.1:{port}/", 5)
            await asyncio.sleep(0.1)   # let the replies queue up behind the handshake
            recorder = Recorder(len(replies))
            sock.start(recorder)
            await recorder.done.wait()
            sock.close(1000, "done")
            await sock.wait_closed()
            return recorder.got, sock.close_code

    got, code = run(main())
    assert got == replies
    assert code == 1000


def test_dial_reports_a_refused_handshake():
    async def main():
        async def handler(conn):
            pass

        def refuse(connection, request):
            return connection.respond(404, "no hub here\n")

        async with serve(handler, "127.0.0.1", 0, process_request=refuse) as server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(InvalidStatus) as info:
                await ws.dial(f"ws://127.0.0.1:{port}/", 5)
            return info.value.response.status_code

    assert run(main()) == 404


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 360, 4500, 65537])
def test_the_c_unmask_and_its_python_fallback_agree_with_the_rfc(size):
    payload, key = bytes(range(256)) * (size // 256) + bytes(range(size % 256)), b"\x9a\x01\xff\x3c"
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert ws.unmask(payload, key) == expected
    assert ws.unmask_python(payload, key) == expected
    assert ws.unmask is not ws.unmask_python   # the extension is built in the test venv


def test_the_package_imports_only_public_websockets_names():
    """Every `from websockets.X import Y` names something X exports (its __all__), never a
    private name: what the issue asks of the transport, checked on every file of the package."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("websockets"):
                module = importlib.import_module(node.module)
                public = getattr(module, "__all__", None)
                for alias in node.names:
                    if alias.name.startswith("_") or (public is not None and alias.name not in public):
                        offenders.append(f"{path.name}: from {node.module} import {alias.name}")
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
                    not node.attr.startswith("__") and \
                    isinstance(node.value, ast.Name) and node.value.id == "websockets":
                offenders.append(f"{path.name}: websockets.{node.attr}")
    assert offenders == []

"""Atheris target `upload`: POST /module on a running PC hub (the HTTP router and request reader in
src/pigeonhub/hub/endpoints.py, the upload checks in src/pigeonhub/hub/ota.py, the module store, the
bridge's module check and the swap).

A real hub (pigeonhub.hub.server.PcHub, the packaged hub.wasm, an upload token, a module directory
in a temporary folder) listens on 127.0.0.1; each input becomes one request sent over a real socket,
in the chunks the input picks, then half-closed. An input is either the raw request bytes, or a
request assembled from its parts: method, path, token (right, wrong, none), X-Module-SHA256 (of
the body, or not), Content-Length (true, or not), extra header lines and the body; the assembled
form reaches the module check and the swap with modules the fuzzer mutates.

What is checked, as `pigeonhub upload` and a user see it:
  * a request gets at most one well-formed HTTP/1.1 response (a Content-Length that matches the
    body), then the hub closes; a WebSocket upgrade may get 101 and a WebSocket instead;
  * a POST or OPTIONS gets a JSON body, with a non-empty "error" for every refusal;
  * 200 only for a module whose SHA-256 was given, and afterwards the hub runs exactly that module
    (module_info, the store's running slot); after any refusal the running module is unchanged;
  * the hub keeps no connection, no event-loop callback fails and the hub logs no error.

    .venv/bin/python fuzz/fuzz_upload.py [libFuzzer flags] CORPUS_DIR...   (fuzz/Makefile: run-upload)
"""

import argparse
import asyncio
import hashlib
import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["pigeonhub", "websockets"]):
    from pigeonhub import _bridge
    from pigeonhub.hub import ota, server  # noqa: F401  (ota: the hub imports it when it listens)
    from pigeonhub.log import Logger
    from pigeonhub.hub.module_store import slot_name

TOKEN = "fuzz-token"
# The plain hub.wasm (fuzz/Makefile builds it and passes it as HUB_WASM2).
MODULE = Path(__file__).resolve().parent.parent / "build" / "fuzz" / "hub.wasm"
METHODS = (b"POST", b"OPTIONS", b"GET", b"PUT", b"POST ", b"")
PATHS = (b"/module", b"/module?x=1", b"/", b"/health", b"/modulex", b"")
TOKENS = (f"Bearer {TOKEN}".encode(), b"Bearer wrong", b"", b"Bearer " + b"x" * 80, b"Basic abc")


class Hub:
    """The hub under test, started once for the whole run."""

    def __init__(self, loop):
        self.dir = tempfile.TemporaryDirectory(prefix="fuzz-upload-")
        parser = argparse.ArgumentParser()
        server.add_arguments(parser)
        module = Path(os.environ.get("HUB_WASM2") or MODULE)
        args = parser.parse_args(["--port", "0", "--upload-token", TOKEN, "--module", str(module),
                                  "--module-dir", self.dir.name, "--module-confirm-seconds", "3600"])
        args.bootstrap_urls = []
        self.log_text = io.StringIO()
        self.hub = server.PcHub(_bridge, module, args, Logger(stream=self.log_text, level="W"))
        loop.run_until_complete(self.hub.boot())

    def errors(self):
        """Error lines the hub logged since the last call, except a module's own traps: an
        uploaded module passed every check but may still trap later, which the bridge reports
        and survives (that is what this line says)."""
        text = self.log_text.getvalue()
        self.log_text.seek(0)
        self.log_text.truncate()
        return [line for line in text.splitlines()
                if line.startswith("E (") and not re.search(r"hub\.wasm \w+\(\) trapped: ", line)]

    def restore(self):
        """Run the packaged module again after an upload replaced it, so that every input starts
        from the same hub (a crash input replays alone)."""
        packaged = Path(self.hub.module_path).read_bytes()
        if self.hub.module_info.get("sha256") != hashlib.sha256(packaged).hexdigest():
            request = (b"POST /module HTTP/1.1\r\nAuthorization: Bearer %s\r\nX-Module-SHA256: %s\r\n"
                       b"Content-Length: %d\r\n\r\n" % (TOKEN.encode(),
                       hashlib.sha256(packaged).hexdigest().encode(), len(packaged))) + packaged
            status, _ = parse_response(LOOP.run_until_complete(exchange(self.hub.port, request, 0)))
            if status != 200:
                raise AssertionError(f"the packaged module could not be uploaded back: HTTP {status}")


def request_from(raw):
    """The request bytes an input stands for: byte 0 odd, the rest as they are; byte 0 even,
    bytes 1-6 pick the method, path, token, SHA-256 mode, Content-Length mode and the length of
    the extra header bytes that follow; the rest is the body."""
    if raw[0] & 1:
        return raw[1:]
    head = raw[1:7].ljust(6, b"\0")
    method = METHODS[head[0] % len(METHODS)]
    path = PATHS[head[1] % len(PATHS)]
    token = TOKENS[head[2] % len(TOKENS)]
    sha_mode, length_mode = head[3] % 3, head[4] % 3
    extra = raw[7:7 + head[5] % 65]
    body = raw[7 + len(extra):]
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: hub"]
    if token:
        lines.append(b"Authorization: " + token)
    if sha_mode == 0:
        lines.append(b"X-Module-SHA256: " + hashlib.sha256(body).hexdigest().encode())
    elif sha_mode == 1:
        lines.append(b"X-Module-SHA256: " + hashlib.sha256(body[:-1]).hexdigest().encode())
    if length_mode == 0:
        lines.append(b"Content-Length: %d" % len(body))
    elif length_mode == 1:
        lines.append(b"Content-Length: %d" % (len(body) + 7))
    if extra:
        lines.append(extra)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def exchange(port, request, seed):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pos, state = 0, seed or 1
    while pos < len(request):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        size = len(request) if seed == 0 else 1 + (state >> 16) % 2048
        writer.write(request[pos:pos + size])
        await writer.drain()
        pos += size
    writer.write_eof()
    try:
        answer = await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        answer = None   # the hub reset: allowed only where checked below
    writer.close()
    return answer


def parse_response(answer):
    """(status, the JSON body or None, or the raw body when it is not JSON)"""
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"incomplete HTTP response {answer[:200]!r}")
    lines = head.decode("latin-1").split("\r\n")
    version, status, _reason = (lines[0].split(" ", 2) + ["", ""])[:3]
    if version != "HTTP/1.1" or not status.isdigit():
        raise AssertionError(f"bad status line {lines[0]!r}")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    if status == "101":
        return 101, None
    if int(headers.get("Content-Length", -1)) != len(body):
        raise AssertionError(f"Content-Length {headers.get('Content-Length')} for {len(body)} body bytes")
    if not headers.get("Content-Type", "").startswith("application/json"):
        return int(status), body
    return int(status), (json.loads(body) if body else None)


def one_input(raw):
    if len(raw) < 2:
        return
    seed, request = raw[0] >> 1, request_from(raw)
    hub = HUB.hub
    before = dict(hub.module_info)
    answer = LOOP.run_until_complete(exchange(hub.port, request, seed))
    LOOP.run_until_complete(asyncio.sleep(0))
    problems = list(LOOP_ERRORS) + HUB.errors()
    if problems:
        raise AssertionError(f"the hub failed: {problems[0]}")
    upload = request.startswith(b"POST ") or request.startswith(b"OPTIONS ")
    if not answer and upload:
        raise AssertionError(f"no HTTP response to {request[:120]!r}")
    # Other requests may see a reset instead: the hub answers before reading a body they carry.
    status, obj = parse_response(answer) if answer else (None, None)
    if upload:
        if status not in (200, 204) and not (isinstance(obj, dict) and obj.get("error")):
            raise AssertionError(f"HTTP {status} without an error reason: {obj!r}")
        if status == 200:
            body = request.partition(b"\r\n\r\n")[2]
            sha = hashlib.sha256(body[:obj["bytes"]]).hexdigest()
            if obj["sha256"] != sha or hub.module_info.get("sha256") != sha:
                raise AssertionError(f"200 for {obj['sha256']}, the hub runs {hub.module_info}")
            if slot_name(hub.store.running) != obj["slot"]:
                raise AssertionError(f"200 says slot {obj['slot']}, the store runs "
                                     f"{slot_name(hub.store.running)}")
            HUB.restore()
            return
    if hub.module_info != before:
        raise AssertionError(f"the running module changed without a 200: {before} -> {hub.module_info}")
    if hub.conns:
        raise AssertionError(f"the hub keeps {len(hub.conns)} connection(s) after the request")


LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
LOOP_ERRORS = []   # asyncio reports a failed callback or task to its handler, never to the caller
LOOP.set_exception_handler(lambda loop, context: LOOP_ERRORS.append(
    f"{context.get('message')} {context.get('exception')!r}"))

if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    HUB = Hub(LOOP)
    atheris.Fuzz()

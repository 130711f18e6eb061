"""Starting and reaching the hub under test (imported by test/conftest.py and by tests that
start hubs of their own): the PC hub (`pigeonhub serve`), the reference Node server, or a remote
hub (--hub-url)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INTEROP = ROOT / "test" / "interop"
STATUS_PAGE = ROOT / "src" / "pigeonhub" / "data" / "status.html"   # GET / for browsers
REFERENCE_START = INTEROP / "node_modules" / "peerpigeon" / "server" / "start.js"
REFERENCE_MAX_CONNECTIONS = 20   # same capacity as the hub module (MAX_PEERS), so one suite fits both
BOOT_TIMEOUT = 60.0              # s: the first `pigeonhub serve` may build hub.wasm first
LISTENING = re.compile(r"^I \(\d+\) pigeonhub: listening on wss?://([^\s:]+|\[[^\]]+\]):(\d+)\s*$", re.M)
REFERENCE_LISTENING = re.compile(r"started on ws://([^\s:]+):(\d+)")


class HubProcess:
    """A hub this suite started (PC hub or reference server): URL, log, and how to stop it."""

    def __init__(self, kind, proc, log_path, host, port, tls=False):
        self.kind = kind
        self.proc = proc
        self.log_path = Path(log_path)
        self.host, self.port = host, port
        self.url = f"{'wss' if tls else 'ws'}://{host}:{port}"
        self.http = f"{'https' if tls else 'http'}://{host}:{port}"

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stop it; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def _wait_for(proc, log_path, pattern, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = Path(log_path).read_text(errors="replace") if Path(log_path).exists() else ""
        m = pattern.search(text)
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    text = Path(log_path).read_text(errors="replace") if Path(log_path).exists() else ""
    pytest.fail(f"{what} did not start (exit code {proc.returncode}); its log:\n{text}",
                pytrace=False)


SERVE = ("-m", "pigeonhub.cli", "serve")
PC_TWIN = (str(ROOT / "test" / "embedded" / "pc_twin.py"),)   # serve + a pty console (test support)


def start_pc_hub(log_path, *args, module=None, timeout=BOOT_TIMEOUT, env=None, command=SERVE):
    """`python -m pigeonhub.cli serve --host 127.0.0.1 --port 0 ...` (command=PC_TWIN: the PC twin,
    the same hub with a pty console); waits for its 'listening' line. Port 0 lets the OS pick a
    free port: the hub prints the one it got."""
    module = module or os.environ.get("HUB_WASM")
    cmd = [sys.executable, *command, "--host", "127.0.0.1", "--port", "0"]
    if module:
        cmd += ["--module", str(module)]
    cmd += [str(a) for a in args]
    full_env = dict(os.environ, PYTHONUNBUFFERED="1")
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=full_env)
    log.close()
    m = _wait_for(proc, log_path, LISTENING, timeout, "pigeonhub serve")
    return HubProcess("pc", proc, log_path, m.group(1), int(m.group(2)), tls="wss://" in m.group(0))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_reference_hub(log_path, timeout=30.0):
    """The reference server (npm peerpigeon@1.1.3 server/start.js) on a free loopback port. It
    silently moves to the next port when the one asked for is busy, so the bound one is read from
    its log."""
    node = shutil.which("node")
    if node is None or not REFERENCE_START.exists():
        pytest.skip("reference server not installed: needs node and `npm ci --ignore-scripts` "
                    "in test/interop (scripts/setup.sh test)")
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(free_port()),
               MAX_CONNECTIONS=str(REFERENCE_MAX_CONNECTIONS))
    log = open(log_path, "wb")
    proc = subprocess.Popen([node, str(REFERENCE_START)], cwd=INTEROP, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    log.close()
    m = _wait_for(proc, log_path, REFERENCE_LISTENING, timeout, "reference server")
    return HubProcess("reference", proc, log_path, m.group(1), int(m.group(2)))


class RemoteHub:
    """A hub the suite did not start (--hub-url): a board or a hub someone else runs."""

    kind = "remote"
    proc = None

    def __init__(self, url):
        m = re.match(r"^wss?://([^/:?]+|\[[^\]]+\])(?::(\d+))?", url)
        if not m:
            raise pytest.UsageError(f"--hub-url must look like ws://IP:PORT, not {url!r}")
        self.host = m.group(1)
        self.port = int(m.group(2) or 80)
        self.url = f"ws://{self.host}:{self.port}"
        self.http = f"http://{self.host}:{self.port}"

    def log(self):
        return "(remote hub: no log)"


class EmulatedBoard:
    """The firmware in QEMU (scripts/emulator.py), as the hub under test."""

    kind = "board"

    def __init__(self, board):
        self.board = board
        self.proc = board.proc
        self.host, self.port = "127.0.0.1", board.port
        self.url, self.http = board.url, board.http

    def log(self):
        return self.board.log()

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        self.board.stop(sig)
        return 0


def emulator():
    """scripts/emulator.py, imported (it is a script, not part of the package)."""
    scripts = str(ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import emulator as module
    return module


def start_emulated_board(target, log_path, **kw):
    """Build the firmware for `target` (incremental) and boot it; skips when there is no kit."""
    emu = emulator()
    if not emu.kit_present():
        pytest.skip(emu.NO_KIT.format(kit=emu.kit_dir()))
    try:
        build = emu.build(target, quiet=True)
        board = emu.Board(build, log_path, **kw).start()
    except emu.EmulatorError as exc:
        pytest.fail(str(exc), pytrace=False)
    return EmulatedBoard(board)


def http_get(hub, path, timeout=5.0):
    """(status, content type, body text) of a plain HTTP GET on the hub's port."""
    with urllib.request.urlopen(hub.http + path, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8", "replace")


def http_request(hub, path, headers=None, timeout=5.0):
    """(status, headers, body bytes) of a plain HTTP GET with these request headers; the body as
    sent (a gzipped one is not decompressed)."""
    request = urllib.request.Request(hub.http + path, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return r.status, r.headers, r.read()


def hub_health(hub):
    status, _ctype, body = http_get(hub, "/health")
    assert status == 200
    return json.loads(body)


def wait_for_connections(hub, at_most, timeout=5.0):
    """Wait until /health reports at most `at_most` connections (the hub processed earlier
    closes); a hub without /health gets a fixed grace period."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, _ctype, body = http_get(hub, "/health")
            if status == 200 and json.loads(body).get("connections", 0) <= at_most:
                return
        except (urllib.error.URLError, ValueError, OSError):
            time.sleep(1.0)
            return
        time.sleep(0.05)
    raise AssertionError(f"hub still reports more than {at_most} connections after {timeout} s")


def wait_until(predicate, timeout, what, interval=0.1):
    """Polls `predicate` until it returns something truthy; fails with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} (not within {timeout} s; last value {last!r})")

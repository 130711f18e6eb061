"""Hubs under test for `pigeonhub bench`: the PC hub and the reference Node server, as subprocesses.

Both bind 127.0.0.1 on a free port. The reference server silently moves to the next port when its
port is busy (docs/PROTOCOL.md §11), so the port a process really listens on is read from /proc
(Linux) instead of being trusted; elsewhere the requested port is probed.
"""

import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]       # src/pigeonhub/bench/ -> the checkout
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # where pigeonhub/ is: src/, or site-packages
REFERENCE_START = Path("peerpigeon") / "server" / "start.js"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening_ports(pid: int):
    """TCP ports the process itself listens on, from /proc; None where /proc is unavailable."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as handle:
                    next(handle)
                    for line in handle:
                        cols = line.split()
                        if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                            ports.add(int(cols[1].rsplit(":", 1)[1], 16))
            except FileNotFoundError:
                continue
        return ports
    except (FileNotFoundError, PermissionError):
        return None


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def find_reference_server(explicit=None):
    """Path of peerpigeon/server/start.js: explicit node_modules dir, test/interop, or None."""
    candidates = [Path(explicit)] if explicit else []
    candidates += [REPO_ROOT / "test" / "interop" / "node_modules"]
    for node_modules in candidates:
        script = node_modules / REFERENCE_START
        if script.is_file():
            return script
    return None


class HubProcess:
    """One hub subprocess. `ready_line`: text its output prints once it listens (or None)."""

    def __init__(self, name, argv, env, port, ready_line=None, keep_output=True):
        self.name = name
        self.argv = argv
        self.env = env
        self.requested_port = port
        self.port = None
        self.ready_line = ready_line
        self.keep_output = keep_output
        self.proc = None
        self.tail = deque(maxlen=40)
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _drain(self, stream):
        # Keep reading so a chatty hub never blocks on a full pipe; remember the tail for errors.
        for line in iter(stream.readline, b""):
            text = line.decode("utf-8", "replace").rstrip()
            self.tail.append(text)
            if self.ready_line and self.ready_line in text:
                self._ready.set()

    def start(self, timeout=60.0):  # the first `pigeonhub serve` may build hub.wasm
        # keep_output=False: stdout goes to /dev/null, only stderr is read (for error messages)
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, cwd=str(REPO_ROOT),
            stdout=subprocess.PIPE if self.keep_output else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self.keep_output else subprocess.PIPE)
        stream = self.proc.stdout if self.keep_output else self.proc.stderr
        threading.Thread(target=self._drain, args=(stream,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before "
                                   f"listening: {' | '.join(list(self.tail)[-5:])}")
            ports = _listening_ports(self.proc.pid)
            if ports:
                if self.requested_port in ports:
                    self.port = self.requested_port
                else:
                    self.port = min(ports)
                if not self.ready_line or self._ready.is_set():
                    return self
            elif ports is None and _port_open(self.requested_port):
                self.port = self.requested_port
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on 127.0.0.1:{self.requested_port} within "
                           f"{timeout:.0f} s: {' | '.join(list(self.tail)[-5:])}")

    def cpu_seconds(self) -> float:
        """user+system CPU time of the process so far (Linux), else 0."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0

    def rss_bytes(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def pc_hub(port=None) -> HubProcess:
    port = port or free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_PARENT), env.get("PYTHONPATH")]))
    return HubProcess("PC hub", [sys.executable, "-m", "pigeonhub.cli", "serve", "--host",
                                 "127.0.0.1", "--port", str(port)], env, port,
                      ready_line="listening on ws://")


def reference_hub(start_js, port=None) -> HubProcess:
    port = port or free_port()
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port))
    # The reference prints a line per announce/relay failure; benchmark it with stdout discarded.
    return HubProcess("reference", ["node", str(start_js)], env, port, keep_output=False)

"""What the emulated-board OTA suites (test_ota.py, test_power_cut.py) share: the modules they upload,
the upload paths a user takes (the real `pigeonhub upload` CLI, a raw POST as curl would send it, a
stalled upload), what a user reads back (/health, the serial log) and the flash file under QEMU.

Firmware side: POST /module in main/http_endpoints.c, the slots and boot order in main/module_store.c,
the swap and the confirmation timer in main/hub_task.c.
"""

import hashlib
import http.client
import json
import re
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for extra in (ROOT / "test", ROOT / "test" / "conformance", ROOT / "test" / "embedded"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from embedded_support import cli, code_section, corrupt, sha256_of, wrong_abi_module  # noqa: E402
from hubclient import Peer, assert_relays, joined_pair                    # noqa: E402,F401
from hubprocess import emulator                                          # noqa: E402

# The token these suites provision (new_board(settings=SETTINGS)): passed explicitly rather than
# imported from conftest.py (which of test/conftest.py and test/board/conftest.py a test module gets
# under the name `conftest` depends on collection order).
UPLOAD_TOKEN = "ota-board-token"
SETTINGS = {"upload_token": UPLOAD_TOKEN}

HTTP_TIMEOUT = 30.0     # s per GET /health or raw POST (answered through the hub task's queue); QEMU
                        # runs in host time, so a host busy with other work slows the board several-fold
LOG_TIMEOUT = 15.0      # s for a serial line that follows something the test just did

# Serial lines (main/hub_task.c log_module, main/http_endpoints.c, main/module_store.c). A line of the
# log file ends with "\r\n"; colours, when configured, wrap it in ESC sequences, so nothing here is
# anchored to a line end.
P = r"pigeonhub: "
LOADED = P + r"module hub\.wasm loaded: (\d+) bytes, sha256 ([0-9a-f]{64})"
SOURCE = P + r"module source: (hubmod[01]|embedded)"
WRITTEN = P + r"module upload: (\d+) bytes written to slot (\d), checking it"
REFUSED = r"W \(\d+\) " + P + r"/module (\d{3}) [A-Za-z ]+: ([^\r\n\x1b]*)"            # a warning
FALLBACK = r"W \(\d+\) " + P + r"module in (hubmod[01]) did not run (\d+) s before the last reset: falling back"
SKIPPED = P + r"module (hubmod[01]) (?:skipped|refused): ([^\r\n\x1b]*)"
CONFIRMED = P + r"module confirmed: it stays active across resets"
TRIAL_TRAPPED = (r"E \(\d+\) " + P + r"module (hubmod[01]) trapped (\d+) times? while on trial: not "
                 r"confirmed, slot marked bad; (hubmod[01]|embedded) runs now")


# ---- modules ---------------------------------------------------------------------------------------

_MODULES: dict = {}


def modules(tmp_path_factory) -> dict:
    """name -> Path (bytes for "abi1"), built once per session:
    "hooks" (`pigeonhub build --test-hooks`) and "mvp" (`pigeonhub build --mvp`): two real hub
    modules with MAX_PEERS 20 that differ from each other and from the default build the firmware
    embeds; "abi1": the bridge fixture's module that implements hub ABI version 1."""
    if not _MODULES:
        out = tmp_path_factory.mktemp("ota-modules")
        for name, flag in (("hooks", "--test-hooks"), ("mvp", "--mvp")):
            proc = cli("build", "--out", out / f"{name}.wasm", flag)
            if proc.returncode != 0:
                pytest.fail(f"pigeonhub build {flag} failed (exit {proc.returncode}):\n"
                            f"{proc.stdout}{proc.stderr}", pytrace=False)
            _MODULES[name] = out / f"{name}.wasm"
        _MODULES["abi1"], _MODULES["abi1_reason"] = wrong_abi_module(out)
    return _MODULES


def broken_modules(good: bytes, mods: dict) -> dict:
    """name -> (bytes, the reason the hub's 422 gives), as test/embedded does: inverted bytes in
    function bodies (only compiling finds them), a download cut inside the code section, a real
    module of another hub ABI version. The reason is the bridge core's own verdict, taken from its
    Python build (the board runs the same checks); without that extension, the reason's start."""
    start, size = code_section(good)
    out = {
        "corrupt": (corrupt(good), "WASM3 cannot compile the module: "),
        "truncated": (good[: start + size // 2], "module is truncated: its code section (id 10) "),
        "wrong-abi": (mods["abi1"], mods["abi1_reason"]),
    }
    try:
        from pigeonhub import _bridge
    except ImportError:
        return out
    for name, (data, reason) in out.items():
        with pytest.raises(_bridge.BridgeError) as refused:
            _bridge.check_module(data)
        assert str(refused.value).startswith(reason), (name, str(refused.value))
        out[name] = (data, str(refused.value))
    return out


def config_int(build: Path, name: str) -> int:
    """An integer option of the firmware under test, e.g. CONFIG_PIGEONHUB_MODULE_CONFIRM_S."""
    m = re.search(rf"^{name}=(\d+)$", (Path(build) / "sdkconfig").read_text(), re.M)
    assert m, f"{name} not in {build}/sdkconfig"
    return int(m.group(1))


def confirm_seconds(build: Path) -> int:
    return config_int(build, "CONFIG_PIGEONHUB_MODULE_CONFIRM_S")


# ---- a board of a test file's own ---------------------------------------------------------------------

def started_board(board_build, log_dir, settings):
    """A board booted on a fresh flash with these NVS settings, for a module-scoped fixture (booting
    costs seconds); the fixture stops it."""
    emu = emulator()
    board = emu.Board(board_build, log_dir / "board.log", settings=settings)
    try:
        board.start()
    except emu.EmulatorError as exc:
        board.stop()
        pytest.fail(str(exc), pytrace=False)
    return board


# ---- what a user reads back --------------------------------------------------------------------------

def health(board) -> dict:
    with urllib.request.urlopen(board.http + "/health", timeout=HTTP_TIMEOUT) as r:
        assert r.status == 200, f"GET /health: HTTP {r.status}"
        return json.loads(r.read())


def stats(board) -> dict:
    with urllib.request.urlopen(board.http + "/stats", timeout=HTTP_TIMEOUT) as r:
        assert r.status == 200, f"GET /stats: HTTP {r.status}"
        return json.loads(r.read())


def running(board) -> dict:
    """/health's module: {"source", "bytes", "sha256", "error"}."""
    return health(board)["module"]


def boot_module(board) -> dict:
    """The module this boot started with, from the serial log: {"source", "bytes", "sha256"}."""
    loaded = board.wait_for(LOADED, LOG_TIMEOUT)
    source = board.wait_for(SOURCE, LOG_TIMEOUT)
    return {"source": source.group(1), "bytes": int(loaded.group(1)), "sha256": loaded.group(2)}


def mark(board) -> int:
    """Where the serial log of this boot ends now: board.wait_for(..., since=mark(board))."""
    return len(board.boot_log())


def outcome(proc) -> str:
    """Exit status and the CLI's last words (the progress bar redraws with \\r)."""
    return f"exit {proc.returncode}: {proc.stdout.strip()!r} {proc.stderr.splitlines()[-3:]}"


# ---- uploads ------------------------------------------------------------------------------------------

def cli_upload(board, path, token=UPLOAD_TOKEN, *extra):
    """`pigeonhub upload --host 127.0.0.1 --port P --token T FILE`, as a user runs it."""
    return cli("upload", "--host", "127.0.0.1", "--port", board.port, "--token", token, *extra, path,
               timeout=90)


def raw_post(board, body: bytes, token=UPLOAD_TOKEN, sha=None, length=None, half_close=False):
    """POST /module without the CLI's checks (curl --data-binary, a script): (status, json).
    token=None sends no Authorization header; length/half_close cut the body short."""
    conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=HTTP_TIMEOUT)
    try:
        conn.putrequest("POST", "/module")
        if token is not None:
            conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("X-Module-SHA256", sha or hashlib.sha256(body).hexdigest())
        conn.putheader("Content-Type", "application/wasm")
        conn.putheader("Content-Length", str(len(body) if length is None else length))
        conn.endheaders()
        try:
            conn.send(body)
            if half_close:
                conn.sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass   # answered before the whole body was read (403): the answer is still there
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            raise AssertionError(f"POST /module answered HTTP {resp.status} without JSON: {raw[:200]!r}")
    finally:
        conn.close()


def start_stalled_upload(board, data: bytes, sent: int, token=UPLOAD_TOKEN) -> socket.socket:
    """An upload that stops after `sent` bytes of the body (a slow link, a client that hangs): the
    headers announce all of `data`, with its SHA-256. Returns the open socket."""
    head = (f"POST /module HTTP/1.1\r\nHost: 127.0.0.1:{board.port}\r\n"
            f"Authorization: Bearer {token}\r\nX-Module-SHA256: {sha256_of(data)}\r\n"
            f"Content-Type: application/wasm\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", board.port), timeout=HTTP_TIMEOUT)
    sock.sendall(head + data[:sent])
    return sock


# ---- the flash file under QEMU -------------------------------------------------------------------------

def partition(board, label: str):
    """(offset, size) of a partition, from the bootloader's partition table in this boot's log."""
    m = board.wait_for(r"\d+ " + re.escape(label) + r"\s+\S+\s+[0-9a-f]{2} [0-9a-f]{2} ([0-9a-f]{8}) ([0-9a-f]{8})",
                       LOG_TIMEOUT)
    return int(m.group(1), 16), int(m.group(2), 16)


def wait_flash_holds(board, offset: int, data: bytes, timeout=10.0):
    """Wait until the board's flash file holds `data` at `offset` (the firmware wrote it)."""
    deadline = time.monotonic() + timeout
    while True:
        with open(board.flash, "rb") as f:
            f.seek(offset)
            got = f.read(len(data))
        if got == data:
            return
        if time.monotonic() > deadline:
            written = next((i for i, (x, y) in enumerate(zip(got, data)) if x != y), len(got))
            raise AssertionError(f"the firmware did not write the upload to flash at {offset:#x} within "
                                 f"{timeout:g} s ({written} of {len(data)} bytes match)")
        time.sleep(0.1)


def close_all(peers):
    for p in peers:
        p.close()

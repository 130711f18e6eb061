"""`pigeonhub provision`: give a board its TLS certificate and key over its serial console, so that it
serves wss:// and https:// (main/tls_identity.c keeps them in NVS).

    pigeonhub provision --cert cert.pem --key key.pem --port /dev/ttyUSB0
    pigeonhub provision --clear --port /dev/ttyUSB0          # back to plain ws://

The pair is checked here first (the same checks as `pigeonhub serve --tls-cert`), then typed into
the console as `tls cert <base64 piece>` ... `tls key ...` `tls save` (a PEM file is longer than one
console line), and the board checks it again before storing it. Then the board restarts and its
log line `HTTPS server on port 3000 (TLS, certificate CN=..., expires ...)` is shown.

Exit status: 0 stored (and restarted); 2 bad files or no serial port; 3 the board refused the pair
(its reason is printed); 7 the console did not answer.
"""

import argparse
import base64
import re
import sys
import time
from pathlib import Path

BAUD = 115200                 # the firmware's console (CONFIG_ESP_CONSOLE_UART_BAUDRATE)
CHUNK = 192                   # base64 characters per console line: under the console's 256
ANSWER_TIMEOUT = 10.0         # s for the board to answer one line
BOOT_TIMEOUT = 60.0           # s for a booting console to answer, and from `restart` to the HTTP(S) server line
EXIT_OK, EXIT_LOCAL, EXIT_REFUSED, EXIT_SILENT = 0, 2, 3, 7

STAGED = re.compile(rb"staged (\d+)")
# The summary is found past whatever another task's log output put in the middle of the line (the
# console and the log share the UART; seen on the emulated esp32 while mDNS started).
SAVED = re.compile(rb"TLS certificate saved \(.*?(CN=[^\r\n]*?, expires \d{4}-\d{2}-\d{2})", re.S)
REMOVED = re.compile(rb"TLS certificate removed")
# the console's refusals (main/console.c cmd_tls), each on a line of its own
REFUSED = re.compile(rb"[^\r\n]*(nothing (saved|staged)|no (cert|key) staged|out of memory|"
                     rb"not valid base64|storing in NVS failed)[^\r\n]*")
DISCARDED = re.compile(rb"staged certificate and key discarded")
SERVER_LINE = re.compile(rb"pigeonhub: (HTTPS? server on port \d+ \([^\r\n]*\))")


class ProvisionError(Exception):
    def __init__(self, problem, fix, exit_code):
        super().__init__(problem)
        self.problem, self.fix, self.exit_code = problem, fix, exit_code


class Console:
    """The board's serial console: lines in, its answers matched by pattern."""

    def __init__(self, port, baud=BAUD):
        import serial   # pyserial
        try:
            # DTR and RTS released before opening: on most boards they drive EN and GPIO0, and
            # holding them would keep the chip in reset or start its ROM bootloader.
            self.serial = serial.Serial(None, baud, timeout=0.1)
            self.serial.dtr = self.serial.rts = False
            self.serial.port = port
            self.serial.open()
        except (serial.SerialException, OSError) as exc:
            raise ProvisionError(f"cannot open {port}: {exc}",
                                 "pass the board's serial port with --port (and close any serial "
                                 "monitor that holds it)", EXIT_LOCAL) from None
        self.port = port
        self.seen = b""

    def close(self):
        self.serial.close()

    def command(self, line, *patterns, timeout=ANSWER_TIMEOUT):
        """Type `line`; returns (index of the pattern that matched, match)."""
        self.seen = b""
        self.serial.write(line.encode("ascii") + b"\r\n")
        self.serial.flush()
        return self.wait(*patterns, timeout=timeout, what=f"`{line[:24]}...`")

    def sync(self, timeout=BOOT_TIMEOUT):
        """Until the console answers: a board that is still booting (or was just reset by
        opening its port) drops what arrives before its console runs."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.command("tls clear-staged", DISCARDED, timeout=1.5)
            except ProvisionError:
                if time.monotonic() > deadline:
                    raise ProvisionError(
                        f"no answer from a PigeonHub console on {self.port} within {timeout:g} s",
                        "check --port (the board's console UART, 115200 baud) and that its "
                        "firmware has the `tls` console command", EXIT_SILENT) from None

    def wait(self, *patterns, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.seen += self.serial.read(4096)
            for i, pattern in enumerate(patterns):
                m = pattern.search(self.seen)
                if m:
                    return i, m
        raise ProvisionError(f"the board on {self.port} did not answer {what} within {timeout:g} s",
                             "check --port (the board's console UART, 115200 baud) and that its "
                             "firmware has the `tls` console command", EXIT_SILENT)


def _pieces(pem):
    text = base64.b64encode(pem).decode("ascii")
    return [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)]


def provision(console, cert_pem=None, key_pem=None, restart=True, log=print):
    """Store the pair (None, None: remove it) on the board behind `console`; returns its summary."""
    console.serial.write(b"\r\n")   # end whatever was typed before
    console.sync()                   # also empties what an earlier, broken-off run staged
    if cert_pem is None:
        console.command("tls none", REMOVED, REFUSED)
        summary = "removed"
    else:
        for what, pem in (("cert", cert_pem), ("key", key_pem)):
            for piece in _pieces(pem):
                i, m = console.command(f"tls {what} {piece}", STAGED, REFUSED)
                if i == 1:
                    raise ProvisionError(f"the board refused the {what}: "
                                         f"{m.group(0).decode(errors='replace').strip()}",
                                         "check the file; nothing was stored", EXIT_REFUSED)
        i, m = console.command("tls save", SAVED, REFUSED)
        if i == 1:
            raise ProvisionError(f"the board refused the pair: "
                                 f"{m.group(0).decode(errors='replace').strip()}",
                                 "give a certificate and the key it was made for (PEM, "
                                 "unencrypted, ECDSA P-256 or RSA); nothing was stored",
                                 EXIT_REFUSED)
        summary = m.group(1).decode(errors="replace")
        log(f"stored on the board: certificate {summary}")
    if restart:
        i, m = console.command("restart", SERVER_LINE, timeout=BOOT_TIMEOUT)
        log(f"restarted: {m.group(1).decode(errors='replace')}")
    return summary


def _default_port():
    from serial.tools import list_ports
    ports = [p.device for p in list_ports.comports()
             if re.search(r"ttyUSB|ttyACM|usbserial|usbmodem|COM\d", p.device)]
    if len(ports) != 1:
        found = ", ".join(ports) or "none"
        raise ProvisionError(f"cannot tell which serial port is the board's (found: {found})",
                             "pass it with --port, e.g. --port /dev/ttyUSB0", EXIT_LOCAL)
    return ports[0]


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("exit status: 0 stored, 2 bad file or port, 3 the board refused the pair, "
                     "7 the console did not answer")
    parser.add_argument("--cert", type=Path, metavar="CERT", help="the certificate (PEM)")
    parser.add_argument("--key", type=Path, metavar="KEY", help="its private key (PEM, unencrypted)")
    parser.add_argument("--clear", action="store_true",
                        help="remove the board's certificate: plain ws:// after the restart")
    parser.add_argument("--port", default=None,
                        help="the board's serial port (default: the only USB serial port)")
    parser.add_argument("--baud", type=int, default=BAUD, help=f"default {BAUD}")
    parser.add_argument("--no-restart", action="store_true",
                        help="store only; the board serves wss:// from its next restart")


def run(args) -> int:
    try:
        if args.clear == (args.cert is not None or args.key is not None):
            raise ProvisionError("give --cert CERT --key KEY, or --clear",
                                 "e.g. pigeonhub provision --cert cert.pem --key key.pem "
                                 "--port /dev/ttyUSB0", EXIT_LOCAL)
        cert_pem = key_pem = None
        if not args.clear:
            from .hub.tls import TlsError, load_identity
            try:
                load_identity(args.cert, args.key)   # the board checks again; fail before typing
            except TlsError as exc:
                raise ProvisionError(str(exc).replace("--tls-cert", "--cert")
                                     .replace("--tls-key", "--key"),
                                     "nothing was sent to the board", EXIT_LOCAL) from None
            cert_pem, key_pem = args.cert.read_bytes(), args.key.read_bytes()
        console = Console(args.port or _default_port(), args.baud)
        try:
            provision(console, cert_pem, key_pem, restart=not args.no_restart)
        finally:
            console.close()
    except ProvisionError as exc:
        sys.stderr.write(f"Error: {exc.problem}\n  fix: {exc.fix}\n")
        return exc.exit_code
    if args.no_restart:
        print("restart the board (console `restart`) to apply it")
    return EXIT_OK

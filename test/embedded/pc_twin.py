"""The PC twin: `pigeonhub serve` with a pseudo-terminal that behaves like a board's serial port.

Test support for the pytest-embedded suites (conftest.py starts it per session; test/conformance/
test_serve_cli.py checks it). The hub is the package's PcHub, unchanged; this file only adds the
console a board has, through PcHub's hooks: its `reset_requested` event, its logger's `streams`,
and boot(), which a board reset runs again.

    python3 test/embedded/pc_twin.py [pigeonhub serve options]     # logs `pty /dev/pts/N`

Writing a line `reset` (or `restart`, the board console's command) to the pty restarts the hub and
prints the boot log there, CRLF like an ESP-IDF console. Nothing goes to the pty before the first
reset: pyserial discards pending input when it opens a port, so the test opens the port, then
writes `reset` (on a board the esp service resets it after opening the port). POSIX only.

    pytest test/embedded --embedded-services serial --port /dev/pts/N   # a twin started by hand
"""

import argparse
import asyncio
import os
import sys
import tty

from pigeonhub.hub import server

RESET_LINES = (b"reset", b"restart")   # restart: the board console's command


class PtyStream:
    """Log lines to the pty master, CRLF like an ESP-IDF console; dropped when nobody reads."""

    def __init__(self, fd):
        self.fd = fd

    def write(self, text):
        try:
            os.write(self.fd, text.replace("\n", "\r\n").encode("utf-8", "replace"))
        except BlockingIOError:
            pass

    def flush(self):
        pass


class PtyHub(server.PcHub):
    """PcHub plus a pseudo-terminal console: opened before the first boot, its `reset` lines set
    reset_requested, and from the first reset on the log goes there too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pty = None                # (master fd, slave fd, path)
        self.pty_attached = False

    async def boot(self):
        if self.pty is None:           # the first boot (PcHub.main): reset_requested exists now
            self._open_pty(asyncio.get_running_loop())
        else:                          # a reset (PcHub._reset): its boot log goes to the pty
            self._attach_pty()
        await super().boot()

    async def main(self) -> int:
        try:
            return await super().main()
        finally:
            if self.pty:
                for fd in self.pty[:2]:
                    os.close(fd)

    def _open_pty(self, loop):
        master, slave = os.openpty()
        tty.setraw(slave)              # no echo, no line editing: a serial line carries bytes as-is
        os.set_blocking(master, False)  # nobody reading must never stall the hub: lines are dropped
        path = os.ttyname(slave)
        self.pty = (master, slave, path)  # the slave stays open so the pty survives client closes
        self.log.info(f"pty {path}")
        buf = bytearray()

        def readable():
            try:
                data = os.read(master, 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                loop.remove_reader(master)
                return
            buf.extend(data)
            while True:
                cut = min((i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0), default=-1)
                if cut < 0:
                    break
                line = bytes(buf[:cut]).strip()
                del buf[:cut + 1]
                if line in RESET_LINES:
                    self.reset_requested.set()

        loop.add_reader(master, readable)

    def _attach_pty(self):
        # Only from the first reset on: pyserial discards what was pending when it opened the port.
        if self.pty and not self.pty_attached:
            self.pty_attached = True
            self.log.streams.append(PtyStream(self.pty[0]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="pc_twin.py", description="`pigeonhub serve` with a board-like serial console on a "
                                       "pseudo-terminal (for pytest-embedded)")
    server.add_arguments(parser)
    return server.run(parser.parse_args(argv), hub_class=PtyHub)


if __name__ == "__main__":
    sys.exit(main())

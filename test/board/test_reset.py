"""The reset button, pressed while the board serves (--emulated-board esp32|esp32c3).

A reset that lands while an Ethernet frame waits for its interrupt handler left QEMU's OpenCores MAC
with its interrupt line high and nothing pending; from then on the board stopped after
"Calling app_main()" at every boot, with CPU 0 inside the MAC's interrupt handler
(main/ethernet.c says how the firmware lowers the line). It happened on a busy host, about once in
three resets: this test presses reset several times while clients keep the board's network busy
and another process keeps the host's CPUs busy, and each boot must reach its address line.
"""

import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from hubprocess import emulator
from ota_board import assert_relays, close_all, joined_pair

pytestmark = pytest.mark.slow

RESETS = 6
BOOT_S = 90.0    # s from a reset to the address line on a busy 2-core host
BURN_CPU = "while True: pass"


def hammer(url, stop):
    """GET /health back to back: frames reach the board at any moment, the reset included."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                r.read()
        except OSError:
            time.sleep(0.05)   # the board is rebooting


def test_board_boots_after_every_reset_pressed_while_it_serves(new_board, tmp_path):
    emu = emulator()
    board = new_board(monitor=tmp_path / "qmp.sock")
    stop = threading.Event()
    clients = [threading.Thread(target=hammer, args=(board.http, stop), daemon=True) for _ in range(2)]
    burner = subprocess.Popen([sys.executable, "-c", BURN_CPU])
    for client in clients:
        client.start()
    booted = 0
    try:
        for _ in range(RESETS):
            since = len(board.boot_log())
            board.reset()
            try:
                board.wait_for(emu.READY[1], BOOT_S, since=since)
            except emu.EmulatorError:
                tail = "\n".join(board.boot_log()[since:].splitlines()[-6:])
                pytest.fail(f"after {booted} good boots, reset {booted + 1} of {RESETS} left the board "
                            f"stopped; the end of its log:\n{tail}", pytrace=False)
            booted += 1
    finally:
        stop.set()
        burner.kill()
        burner.wait()
        for client in clients:
            client.join(5)
    assert booted == RESETS
    a, b = joined_pair(board.url)
    try:
        assert_relays(a, b, "after-resets")
    finally:
        close_all((a, b))

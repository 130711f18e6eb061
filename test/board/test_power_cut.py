"""Power cuts around a module upload, on the emulated board (--emulated-board esp32|esp32c3).

QEMU killed with SIGKILL is a power cut: nothing is flushed, and the flash file keeps exactly what
the firmware had written (scripts/emulator.py Board.power_cut). The board is then booted again on
the same flash file, and what a user sees is asserted: the boot log lines `module source: ...` and
`module ... loaded: ... sha256 ...`, the fallback warning, GET /health's module, and peers relaying.

Firmware: main/module_store.c (boot order active -> previous -> embedded; an unconfirmed module is
abandoned at the next boot), main/hub_task.c (confirmation after CONFIG_PIGEONHUB_MODULE_CONFIRM_S),
main/http_endpoints.c (the upload streams into the slot that is not running).
"""

import re
import time

import pytest

from ota_board import (CONFIRMED, FALLBACK, LOG_TIMEOUT, SETTINGS, SKIPPED, UPLOAD_TOKEN, assert_relays, boot_module,
                       cli_upload, close_all, confirm_seconds, joined_pair, modules, outcome, partition,
                       running, sha256_of, start_stalled_upload, wait_flash_holds)

pytestmark = pytest.mark.slow

SENT_BEFORE_CUT = 8192   # bytes of the body the board has when the power goes (4 of its 2 KiB chunks)


@pytest.fixture(scope="module")
def mods(tmp_path_factory):
    return modules(tmp_path_factory)


def restart(new_board, cut, name):
    """Power back on: the same flash file, a fresh serial log; settings are not written again."""
    return new_board(name, settings={}, flash=cut.flash)


def upload_ok(board, path, peers=0):
    """`pigeonhub upload` that must succeed; returns the time the swap was answered."""
    data = path.read_bytes()
    proc = cli_upload(board, path, UPLOAD_TOKEN, "--no-progress")
    assert proc.returncode == 0, outcome(proc)
    kept = f", {peers} peer{'' if peers == 1 else 's'} kept"
    assert proc.stdout.strip() == (f"module {sha256_of(data)[:12]}\u2026 ({len(data)} bytes) is now "
                                   f"active on 127.0.0.1:{board.port}{kept}")
    return time.monotonic()


def relays(board, tag):
    a, b = joined_pair(board.url)
    try:
        assert_relays(a, b, tag)
        assert_relays(b, a, tag + "-back")
    finally:
        close_all((a, b))


def assert_serves(board, path, slot):
    """The module in `path` runs from `slot`, by the boot log and by /health, and relays."""
    data = path.read_bytes()
    want = {"source": slot, "bytes": len(data), "sha256": sha256_of(data)}
    assert boot_module(board) == want
    assert running(board) == dict(want, error="")
    relays(board, f"{slot}-after-restart")


def test_unconfirmed_module_is_abandoned_at_the_next_boot(new_board, board_build, mods):
    """Swap succeeds with peers connected, the power goes before the confirmation time: the next
    boot says why it skips the slot and runs the module that ran before (here: the embedded one)."""
    board = new_board("first", settings=SETTINGS)
    embedded = boot_module(board)
    assert embedded["source"] == "embedded"
    a, b = joined_pair(board.url)
    try:
        swapped = upload_ok(board, mods["hooks"], peers=2)
        assert running(board)["source"] == "hubmod0"
        assert_relays(a, b, "before-cut")
    finally:
        close_all((a, b))
    assert time.monotonic() - swapped < confirm_seconds(board_build), "too slow: the module got confirmed"
    board.power_cut()

    again = restart(new_board, board, "after-cut")
    skipped = again.wait_for(FALLBACK, LOG_TIMEOUT)
    assert skipped.groups() == ("hubmod0", str(confirm_seconds(board_build)))
    assert boot_module(again) == embedded
    assert running(again) == dict(embedded, error="")
    relays(again, "embedded-after-cut")
    # Abandoned for good: the slot is not tried again at the following boot either.
    again.power_cut()
    third = restart(new_board, again, "third")
    assert boot_module(third) == embedded
    log = third.boot_log()
    assert not re.search(FALLBACK, log) and not re.search(SKIPPED, log), log[-2000:]


def test_power_cut_during_upload_keeps_the_running_module(new_board, board_build, mods):
    """A confirmed module in hubmod0; another upload into hubmod1 stalls half way and the power goes:
    the next boot runs the hubmod0 module as if nothing happened. Then the same slot takes a full
    upload, and a power cut before that one is confirmed brings back the hubmod0 module."""
    board = new_board("confirmed", settings=SETTINGS)
    first, second = mods["hooks"], mods["mvp"]
    swapped = upload_ok(board, first)
    since = len(board.boot_log())
    # The board confirms it after CONFIG_PIGEONHUB_MODULE_CONFIRM_S of running (60 s by default).
    wait = confirm_seconds(board_build) - (time.monotonic() - swapped) + 20
    board.wait_for(CONFIRMED, wait, since=since)

    # Half the body, then silence: the board is writing hubmod1 when the power goes.
    data = second.read_bytes()
    offset, _size = partition(board, "hubmod1")
    sock = start_stalled_upload(board, data, SENT_BEFORE_CUT)
    try:
        wait_flash_holds(board, offset, data[:SENT_BEFORE_CUT])
        board.power_cut()
    finally:
        sock.close()

    again = restart(new_board, board, "after-cut")
    assert_serves(again, first, "hubmod0")
    log = again.boot_log()
    assert not re.search(FALLBACK, log) and not re.search(SKIPPED, log), log[-2000:]

    # The interrupted slot is usable: a full upload goes into it and runs ...
    swapped = upload_ok(again, second)
    assert running(again) == {"source": "hubmod1", "bytes": len(data), "sha256": sha256_of(data), "error": ""}
    assert time.monotonic() - swapped < confirm_seconds(board_build), "too slow: the module got confirmed"
    again.power_cut()

    # ... and, cut before its confirmation, it is abandoned for the confirmed hubmod0 module.
    third = restart(new_board, again, "unconfirmed-cut")
    assert third.wait_for(FALLBACK, LOG_TIMEOUT).group(1) == "hubmod1"
    assert_serves(third, first, "hubmod0")
    assert not re.search(SKIPPED, third.boot_log())      # hubmod0 passed its checks (SHA-256 and all)

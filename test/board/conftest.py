"""Board-level suites that need a board of their own (its flash, its settings, restarts): run against
the firmware booted in QEMU with `--emulated-board esp32|esp32c3` (scripts/emulator.py); skipped
otherwise. The suites that only need a running hub (test/conformance, test/interop) take the same
option and share one board through the session `hub` fixture instead.
"""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for extra in (HERE.parent, HERE.parent / "conformance"):   # hubprocess, hubclient (raw peers)
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from hubprocess import emulator  # noqa: E402

UPLOAD_TOKEN = "board-test-token"


@pytest.fixture(scope="session")
def board_target(request):
    target = request.config.getoption("--emulated-board")
    if not target:
        pytest.skip("board-level suite: run with --emulated-board esp32 (or esp32c3)")
    return target


@pytest.fixture(scope="session")
def board_build(board_target):
    """The firmware built for the chip under test (incremental: one build per session)."""
    emu = emulator()
    if not emu.kit_present():
        pytest.skip(emu.NO_KIT.format(kit=emu.kit_dir()))
    try:
        return emu.build(board_target, quiet=True)
    except emu.EmulatorError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def new_board(board_build, tmp_path, request):
    """new_board(name="board", settings=None, guestfwd=(), start=True) -> emulator.Board with its
    own flash file (tmp_path/<name>.flash.bin) and serial log; stopped at the end of the test.
    Settings default to the upload token UPLOAD_TOKEN."""
    emu = emulator()
    made = request.node._boards = []

    def make(name="board", settings=None, guestfwd=(), start=True, **kw):
        settings = {"upload_token": UPLOAD_TOKEN} if settings is None else settings
        board = emu.Board(board_build, tmp_path / f"{name}.log", guestfwd=guestfwd,
                          settings=settings, **kw)
        made.append(board)
        if start:
            try:
                board.start()
            except emu.EmulatorError as exc:
                pytest.fail(str(exc), pytrace=False)
        return board

    yield make
    for board in made:
        board.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing board test shows the serial log of each board it started (last 80 lines)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    for board in getattr(item, "_boards", ()):
        rep.sections.append((f"board log {board.log_path.name}", "\n".join(board.log().splitlines()[-80:])))

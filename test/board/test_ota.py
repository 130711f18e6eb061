"""Over-the-air module upload on the emulated board (the firmware in QEMU, --emulated-board esp32|esp32c3):
a good module swapped in under a full hub, and every refused upload leaving the running module serving.

What is asserted is what a user sees: the `pigeonhub upload` CLI's exit status and words, the HTTP
status and JSON reason of POST /module (main/http_endpoints.c), the serial log, GET /health's module
(source slot, bytes, SHA-256) and the peers' own frames (hubclient.Peer).
"""

import json
import re
import select
import time

import pytest

from ota_board import (FALLBACK, LOADED, LOG_TIMEOUT, REFUSED, SETTINGS, SOURCE, TRIAL_TRAPPED, UPLOAD_TOKEN,
                       WRITTEN, Peer, assert_relays, broken_modules, cli_upload, close_all, config_int,
                       health, joined_pair, mark, modules, outcome, raw_post, running, sha256_of,
                       start_stalled_upload, started_board, stats)
from hubprocess import wait_until

pytestmark = pytest.mark.slow

PAIRS = 10   # 20 peers: the module's MAX_PEERS


@pytest.fixture(scope="module")
def mods(tmp_path_factory):
    return modules(tmp_path_factory)


@pytest.fixture(scope="module")
def ota_board(board_build, tmp_path_factory):
    """One board for this file: a fresh flash with the upload token set."""
    board = started_board(board_build, tmp_path_factory.mktemp("ota-board"), SETTINGS)
    yield board
    board.stop()


@pytest.fixture
def board(ota_board, request):
    request.node._boards = [ota_board]   # test/board/conftest.py shows its serial log on a failure
    return ota_board


def other_slot(source):
    """The slot an upload goes to: never the running one (module_store_upload_begin)."""
    return "hubmod1" if source == "hubmod0" else "hubmod0"


# ---- a good module, 20 peers connected ----------------------------------------------------------------

def test_upload_swaps_the_module_and_20_peers_keep_relaying(board, mods):
    before = running(board)
    path = mods["hooks"]
    data = path.read_bytes()
    sha, size = sha256_of(data), len(data)
    assert sha != before["sha256"], "the uploaded module must differ from the running one"
    slot = other_slot(before["source"])

    pairs = [joined_pair(board.url) for _ in range(PAIRS)]
    peers = [p for pair in pairs for p in pair]
    try:
        h = health(board)
        assert (h["connections"], h["peers"]) == (2 * PAIRS, 2 * PAIRS), h

        since = mark(board)
        proc = cli_upload(board, path)
        assert proc.returncode == 0, outcome(proc)
        assert proc.stdout.strip() == (f"module {sha[:12]}\u2026 ({size} bytes) is now active on "
                                       f"127.0.0.1:{board.port}, {2 * PAIRS} peers kept")
        assert f"100%  {size}/{size} bytes" in proc.stderr          # the progress bar finished

        # The serial console: written to the free slot, checked, loaded from it.
        written = board.wait_for(WRITTEN, LOG_TIMEOUT, since=since)
        assert (int(written.group(1)), f"hubmod{written.group(2)}") == (size, slot)
        assert board.wait_for(LOADED, LOG_TIMEOUT, since=since).groups() == (str(size), sha)
        assert board.wait_for(SOURCE, LOG_TIMEOUT, since=since).group(1) == slot

        # Every pair still relays offers, both ways, through the new module ...
        for i, (a, b) in enumerate(pairs):
            assert_relays(a, b, f"after-swap-{i}")
            assert_relays(b, a, f"after-swap-back-{i}")
        # ... and nobody noticed the swap: no close, no second `connected`, no repeated discovery.
        for p in peers:
            assert [m["type"] for m in p.drain(0.05)] == [], f"peer {p.id[:8]} got frames"

        now = health(board)
        assert now["module"] == {"source": slot, "bytes": size, "sha256": sha, "error": ""}
        assert (now["connections"], now["peers"]) == (2 * PAIRS, 2 * PAIRS), now
        # The new module holds all 20 peers: the 21st is refused as a full hub refuses.
        extra = Peer(board.url)
        assert extra.expect_close() == (1008, "Maximum connections reached")
        extra.close()
    finally:
        close_all(peers)
    # All 20 leave at once (a burst of closes on the board's httpd task); the next peers are
    # greeted and relayed at once. (Before main/ws_transport.c re-queued its send work, a burst
    # like this could lose it, and no frame reached any peer again.)
    newcomers = []
    try:
        for i in range(3):
            a, b = joined_pair(board.url)
            newcomers += (a, b)
            assert_relays(a, b, f"newcomers-{i}")
        wait_until(lambda: health(board)["connections"] == len(newcomers), 10,
                   "the board still counts peers that left")
    finally:
        close_all(newcomers)


# ---- refusals: the running module keeps serving ---------------------------------------------------------

def _cut_short(good, mods):
    return dict(body=good[:1000], sha=sha256_of(good), length=len(good), half_close=True)


def _broken(kind):
    return lambda good, mods: dict(body=broken_modules(good, mods)[kind][0])


REFUSALS = [
    # name, POST /module arguments (from the good module's bytes), HTTP status, reason (part; the
    # 422 reasons are checked in full below: the bridge core's verdict on those bytes)
    ("wrong-abi", _broken("wrong-abi"), 422,
     "module rejected: module implements hub ABI version 1, this bridge implements version 3"),
    ("corrupt", _broken("corrupt"), 422, "module rejected: WASM3 cannot compile the module: "),
    ("truncated-module", _broken("truncated"), 422,
     "module rejected: module is truncated: its code section (id 10) "),
    ("body-cut-short", _cut_short, 400, "body ended after 1000 of "),
    ("sha-mismatch", lambda good, mods: dict(body=good, sha="ab" * 32), 400, "SHA-256 mismatch: received "),
    ("no-token", lambda good, mods: dict(body=good, token=None), 403,
     "missing or oversized Authorization header (expected: Bearer <token>)"),
    ("wrong-token", lambda good, mods: dict(body=good, token="not-" + UPLOAD_TOKEN), 403, "wrong upload token"),
]


@pytest.mark.parametrize("name,make,status,reason", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_upload_leaves_the_running_module_serving(board, mods, name, make, status, reason):
    before = running(board)
    good = mods["mvp"].read_bytes()       # differs from whatever runs: a wrongly accepted one shows
    assert sha256_of(good) != before["sha256"]
    a, b = joined_pair(board.url)
    try:
        since = mark(board)
        got, answer = raw_post(board, **make(good, mods))
        assert (got, list(answer)) == (status, ["error"]), answer
        assert reason in answer["error"]
        if status == 422:   # the module's own fault, in the words the CLI's check uses
            kind = {"truncated-module": "truncated"}.get(name, name)
            assert answer["error"] == "module rejected: " + broken_modules(good, mods)[kind][1]
        # The console says the same, on a warning line.
        refused = board.wait_for(REFUSED, LOG_TIMEOUT, since=since)
        assert refused.group(1) == str(status) and reason in refused.group(2)

        # Same module, same slot; the peers relay and saw nothing.
        assert running(board) == before
        assert_relays(a, b, name)
        assert_relays(b, a, name + "-back")
        assert [m["type"] for m in a.drain(0.05) + b.drain(0.05)] == []
    finally:
        close_all((a, b))


def test_upload_that_trickles_in_is_cut_off(board, board_build, mods):
    """The one httpd task serves every socket: a body arriving a byte a second (never long enough
    apart for a receive timeout) is refused once CONFIG_PIGEONHUB_UPLOAD_DEADLINE_S has passed."""
    before = running(board)
    deadline = config_int(board_build, "CONFIG_PIGEONHUB_UPLOAD_DEADLINE_S")
    data = mods["mvp"].read_bytes()
    since = mark(board)
    sent, reply = 100, b""
    sock = start_stalled_upload(board, data, sent)
    started = time.monotonic()
    try:
        while time.monotonic() - started < deadline + 20:
            if select.select([sock], [], [], 1.0)[0]:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            elif sent < len(data):
                sock.sendall(data[sent:sent + 1])
                sent += 1
    finally:
        sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply[:300]
    cut = re.fullmatch(rf"upload cut off: (\d+) of {len(data)} bytes arrived in {deadline} s",
                       json.loads(body)["error"])
    assert cut and 100 <= int(cut.group(1)) <= sent, body
    refused = board.wait_for(REFUSED, LOG_TIMEOUT, since=since)
    assert refused.group(1) == "400" and refused.group(2).startswith("upload cut off: ")
    assert running(board) == before


CLI_REFUSALS = [
    # a file the CLI checks itself: exit 2, the reason, and nothing reaches the hub
    ("wrong-abi", "would be rejected by the hub: module implements hub ABI version 1"),
    ("corrupt", "would be rejected by the hub: WASM3 cannot compile the module: "),
    ("truncated", "is not a valid WebAssembly module: "),
]


@pytest.mark.parametrize("kind,reason", CLI_REFUSALS, ids=[c[0] for c in CLI_REFUSALS])
def test_cli_refuses_a_broken_module_before_sending(board, mods, kind, reason, tmp_path):
    before = running(board)
    path = tmp_path / f"{kind}.wasm"
    path.write_bytes(broken_modules(mods["mvp"].read_bytes(), mods)[kind][0])
    since = mark(board)
    proc = cli_upload(board, path)
    assert proc.returncode == 2, outcome(proc)
    assert f"Error: {path}" in proc.stderr and reason in proc.stderr
    assert "fix: rebuild it with `pigeonhub build`" in proc.stderr
    assert "/module" not in board.boot_log()[since:]             # nothing was sent
    assert running(board) == before


@pytest.mark.parametrize("token", ["not-" + UPLOAD_TOKEN, ""], ids=["wrong-token", "empty-token"])
def test_cli_wrong_token_exits_3(board, mods, token):
    before = running(board)
    since = mark(board)
    proc = cli_upload(board, mods["mvp"], token)
    assert proc.returncode == 3, outcome(proc)
    assert "Error: the hub refused the upload: wrong upload token\n" in proc.stderr, proc.stderr
    assert "fix: pass the hub's upload token with --token" in proc.stderr
    refused = board.wait_for(REFUSED, LOG_TIMEOUT, since=since)
    assert refused.groups() == ("403", "wrong upload token")
    assert running(board) == before


def test_uploads_are_disabled_until_a_token_is_set(new_board, mods):
    board = new_board("no-token", settings={})      # no NVS token, CONFIG_PIGEONHUB_UPLOAD_TOKEN ""
    before = running(board)
    proc = cli_upload(board, mods["mvp"], "anything")
    assert proc.returncode == 3, outcome(proc)
    assert "Error: the hub refused the upload: uploads are disabled until an upload token is set" in proc.stderr
    assert "fix: set an upload token on the hub first" in proc.stderr
    status, answer = raw_post(board, mods["mvp"].read_bytes(), token="anything")
    assert status == 403 and answer["error"].startswith("uploads are disabled until an upload token is set")
    assert running(board) == before


# ---- a module that traps while on trial ---------------------------------------------------------------

def test_module_that_traps_on_trial_is_replaced_by_the_previous_one(new_board, mods, tmp_path):
    """The test-hooks module traps on {"type":"__test_trap"}: during its trial (60 s) that gives it up,
    the embedded module is swapped back in live, the pair keeps relaying (ph_store_trial_trapped)."""
    board = new_board("trial-trap", settings=SETTINGS, monitor=tmp_path / "qmp.sock")   # reset()
    embedded = running(board)
    assert embedded["source"] == "embedded" and stats(board)["module"]["trialFailure"] is None
    a, b = joined_pair(board.url)
    peers = [a, b]
    try:
        proc = cli_upload(board, mods["hooks"])
        assert proc.returncode == 0, outcome(proc)
        assert running(board)["source"] == "hubmod0"
        since = mark(board)
        c = Peer(board.url)
        peers.append(c)
        c.expect("connected")
        c.send({"type": "__test_trap", "data": {}})
        assert c.expect_close() == (1011, "Hub module error")
        line = board.wait_for(TRIAL_TRAPPED, LOG_TIMEOUT, since=since)
        assert line.groups() == ("hubmod0", "1", "embedded")
        assert board.wait_for(SOURCE, LOG_TIMEOUT, since=since).group(1) == "embedded"
        assert running(board) == embedded
        s = stats(board)
        assert s["module"]["trialFailure"] == {"slot": "hubmod0", "traps": 1, "replacedBy": "embedded"}
        assert s["bridge"]["swaps"] == 2
        # The pair never noticed: no close, no second `connected`; offers still relayed.
        assert [m["type"] for m in a.drain(0.05) + b.drain(0.05)] == []
        assert_relays(a, b, "after-fallback")
        assert_relays(b, a, "after-fallback-back")
    finally:
        close_all(peers)
    # The slot was marked bad and the embedded module is active: a reset boots it, with nothing to
    # fall back from.
    since = mark(board)
    board.reset()
    assert board.wait_for(SOURCE, 60, since=since).group(1) == "embedded"
    assert not re.search(FALLBACK, board.boot_log()[since:])

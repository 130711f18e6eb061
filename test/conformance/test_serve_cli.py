"""`pigeonhub serve` as a user sees it: boot log, bad module, bad upload token, --max-peers,
--device-id, Ctrl-C / SIGTERM; and the PC twin's pty console (test/embedded/pc_twin.py, test
support) that stands in for a board's serial port."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from hubclient import Peer, new_network
from hubprocess import PC_TWIN, ROOT, http_get, start_pc_hub

pytestmark = pytest.mark.pc_hub

LINE = r"^I \(\d+\) pigeonhub: "


def cli_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))


def module_path(hub):
    m = re.search(LINE + r"module (\S+) loaded: (\d+) bytes, sha256 ([0-9a-f]{64})$", hub.log(), re.M)
    assert m, hub.log()
    return m


def test_boot_log_matches_what_the_hub_serves(tmp_path):
    hub = start_pc_hub(tmp_path / "hub.log", "--device-id", "test-device-1")
    try:
        log = hub.log()
        stats = json.loads(http_get(hub, "/stats")[2])
        m = module_path(hub)
        assert int(m.group(2)) == stats["module"]["size"]
        assert m.group(3) == stats["module"]["sha256"]
        assert hashlib.sha256(open(stats["module"]["path"], "rb").read()).hexdigest() == m.group(3)
        hub_id = re.search(LINE + r"hub id ([0-9a-f]{40})$", log, re.M)
        assert hub_id and hub_id.group(1) == stats["hubId"], log
        order = [log.index(s) for s in ("loaded:", "hub id", "listening on")]
        assert order == sorted(order), log
    finally:
        assert hub.stop() == 0


def test_hub_id_derives_from_device_id(tmp_path):
    ids = []
    for i, device in enumerate(["dev-a", "dev-a", "dev-b"]):
        hub = start_pc_hub(tmp_path / f"hub{i}.log", "--device-id", device)
        try:
            ids.append(json.loads(http_get(hub, "/stats")[2])["hubId"])
        finally:
            hub.stop()
    assert ids[0] == ids[1] != ids[2]


def test_bad_module_exits_2_with_reason(tmp_path):
    bad = tmp_path / "not-a-module.wasm"
    bad.write_bytes(b"this is not WebAssembly")
    proc = subprocess.run([sys.executable, "-m", "pigeonhub.cli", "serve", "--port", "0",
                           "--module", str(bad)], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env=cli_env())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(r"^E \(\d+\) pigeonhub: cannot load module " + re.escape(str(bad)) + r": \S",
                     proc.stdout, re.M), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_missing_module_exits_2(tmp_path):
    missing = tmp_path / "nope.wasm"
    proc = subprocess.run([sys.executable, "-m", "pigeonhub.cli", "serve", "--port", "0",
                           "--module", str(missing)], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env=cli_env())
    assert proc.returncode == 2
    assert re.search(r"^E \(\d+\) pigeonhub: cannot load module .*nope\.wasm: ", proc.stdout, re.M)


@pytest.mark.parametrize("token", ["short", "x" * 65])
def test_upload_token_outside_the_boards_limits_exits_2(token):
    proc = subprocess.run([sys.executable, "-m", "pigeonhub.cli", "serve", "--port", "0",
                           "--upload-token", token], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env=cli_env())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(r"^E \(\d+\) pigeonhub: --upload-token must be 8 to 64 characters \(as a "
                     rf"board's console `token`\), not {len(token)}$", proc.stdout, re.M), proc.stdout


def test_max_peers_refuses_beyond_n(tmp_path):
    hub = start_pc_hub(tmp_path / "hub.log", "--max-peers", "3")
    peers = []
    try:
        for _ in range(3):
            peers.append(Peer(hub.url))
            peers[-1].expect("connected")
        extra = Peer(hub.url)
        peers.append(extra)
        assert extra.expect_close() == (1008, "Maximum connections reached")
        peers[0].roundtrip()
        peers[1].close()
        deadline = time.monotonic() + 5
        while json.loads(http_get(hub, "/health")[2])["connections"] > 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        newcomer = Peer(hub.url)
        peers.append(newcomer)
        newcomer.expect("connected")
    finally:
        for p in peers:
            p.close()
        assert hub.stop() == 0, hub.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_closes_everyone_1001_and_exits_0(tmp_path, sig):
    hub = start_pc_hub(tmp_path / "hub.log")
    net = new_network()
    peers = [Peer(hub.url) for _ in range(3)]
    try:
        for p in peers:
            p.expect("connected")
            p.announce(net)
        hub.proc.send_signal(sig)
        for p in peers:
            assert p.expect_close(timeout=10) == (1001, "Server shutting down")
        assert hub.proc.wait(10) == 0, hub.log()
        assert re.search(LINE + r"stopped after [\d.]+ s: 3 connections", hub.log(), re.M), hub.log()
    finally:
        for p in peers:
            p.close()
        hub.stop()


def test_pc_twin_pty_console_boots_like_a_board_on_reset(tmp_path):
    serial = pytest.importorskip("serial")
    hub = start_pc_hub(tmp_path / "hub.log", command=PC_TWIN)
    port = None
    early = None
    try:
        m = re.search(LINE + r"pty (/dev/\S+)$", hub.log(), re.M)
        assert m, hub.log()
        port = serial.serial_for_url(m.group(1), baudrate=115200, timeout=0.2)
        early = Peer(hub.url)
        early.expect("connected")
        port.write(b"reset\n")
        text, deadline = "", time.monotonic() + 15
        while "listening on" not in text and time.monotonic() < deadline:
            text += port.read(4096).decode("utf-8", "replace")
        assert re.search(r"I \(\d+\) pigeonhub: hub id [0-9a-f]{40}\r?\n", text), text
        assert re.search(r"I \(\d+\) pigeonhub: listening on ws://127\.0\.0\.1:(\d+)\r?\n", text), text
        # a reset drops every connection, like a board's
        assert early.expect_close(timeout=10)[0] == 1001
        after = Peer(hub.url)
        after.expect("connected")
        after.close()
    finally:
        if early:
            early.close()
        if port:
            port.close()
        assert hub.stop() == 0, hub.log()

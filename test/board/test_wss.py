"""wss:// and https:// on the emulated board. One board per chip, booted plain with its console on
a pty, is given a test CA's certificate and key the way a maker would: `pigeonhub provision --cert
--key --port <the console>`, which types them into the console (`tls cert|key|save`) and restarts
the board. Then, with clients trusting the test CA: https /health and the status page, a plain
ws:// client refused while the board keeps serving, two raw wss peers relaying through it, and real
peerpigeon Node clients completing WebRTC through it. (A board booted with the pair already in NVS,
scripts/emulator.provision's blobs, serves the same; docs/PERFORMANCE.md has its heap per wss peer
and the most wss peers that fit.)
"""

import gzip
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.request
import uuid

import pytest
import websocket

from hubclient import assert_relays, joined_pair
from hubprocess import INTEROP, ROOT, STATUS_PAGE, emulator
from tls_ca import make_test_ca

sys.path.insert(0, str(INTEROP))   # the peerpigeon Node driver's runner
from test_peerpigeon_client import run_pair  # noqa: E402

UPLOAD_TOKEN = "board-test-token"   # conftest.py's; this board is booted here, not by new_board

HTTPS_LINE = re.compile(r"restarted: HTTPS server on port 3000 \(TLS, certificate "
                        r"CN=pigeonhub-test, expires \d{4}-\d\d-\d\d\)")
TIMEOUT = 30.0   # s per HTTPS request: an ECDSA handshake in QEMU takes a second or two
BOOT_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def provisioned(board_build, tls_files, tmp_path_factory):
    """(board, output of `pigeonhub provision`): the board serving wss:// after provisioning."""
    emu = emulator()
    tmp = tmp_path_factory.mktemp("wss-board")
    board = emu.Board(board_build, tmp / "qemu.log", settings={"upload_token": UPLOAD_TOKEN},
                      serial="pty")
    board.start(wait=False)
    try:
        tty = board.pty()   # provision waits for the console itself, as after a board's reset
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        done = subprocess.run([sys.executable, "-m", "pigeonhub.cli", "provision",
                               "--cert", str(tls_files["cert"]), "--key", str(tls_files["key"]),
                               "--port", tty], capture_output=True, text=True, env=env,
                              timeout=BOOT_TIMEOUT + 60)
        board.url = board.url.replace("ws://", "wss://")
        board.http = board.http.replace("http://", "https://")
        yield board, done
    finally:
        board.stop()


@pytest.fixture
def ca_for_clients(tls_files, monkeypatch):
    """websocket-client (the raw test peers) trusts the test CA, as NODE_EXTRA_CA_CERTS does Node."""
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(tls_files["ca"]))
    return ssl.create_default_context(cafile=str(tls_files["ca"]))


def https(board, path, context, headers=None):
    request = urllib.request.Request(board.http + path, headers=headers or {})
    with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as r:
        return r.status, r.headers, r.read()


def test_provision_over_the_serial_console_switches_the_board_to_tls(provisioned):
    board, done = provisioned
    report = f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, report
    assert "stored on the board: certificate CN=pigeonhub-test, expires " in done.stdout, report
    assert HTTPS_LINE.search(done.stdout), report


def test_board_answers_https_with_the_page_and_health(provisioned, ca_for_clients):
    board, _ = provisioned
    status, _headers, body = https(board, "/health", ca_for_clients)
    assert status == 200 and json.loads(body)["status"] == "healthy"
    status, headers, body = https(board, "/", ca_for_clients,
                                  {"Accept": "text/html", "Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == STATUS_PAGE.read_bytes()   # with its self-signed note


def test_plain_ws_client_is_refused_and_the_board_keeps_serving(provisioned, ca_for_clients):
    board, _ = provisioned
    plain = board.url.replace("wss://", "ws://") + "/?peerId=" + "b" * 40
    with pytest.raises((websocket.WebSocketException, ConnectionError, OSError)):
        websocket.create_connection(plain, timeout=TIMEOUT).close()
    assert json.loads(https(board, "/health", ca_for_clients)[2])["status"] == "healthy"


def test_raw_wss_peers_relay_through_the_board(provisioned, ca_for_clients):
    board, _ = provisioned
    a, b = joined_pair(board.url)
    try:
        assert_relays(a, b, "wss")
        assert_relays(b, a, "wss-back")
    finally:
        a.close()
        b.close()


def test_peerpigeon_clients_complete_webrtc_through_the_board(provisioned, tls_files):
    board, _ = provisioned
    proc, events = run_pair(board.url, f"wss-board-{uuid.uuid4().hex[:8]}",
                            env={"NODE_EXTRA_CA_CERTS": str(tls_files["ca"])})
    report = f"exit {proc.returncode}\nevents:\n{proc.stdout}\nnode stderr (tail):\n" \
             + "\n".join(proc.stderr.splitlines()[-40:])
    hellos = {e["peer"] for e in events if e["event"] == "messageReceived"}
    assert proc.returncode == 0 and hellos == {"A", "B"}, report

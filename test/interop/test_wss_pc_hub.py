"""wss:// and https:// on the PC hub (`pigeonhub serve --tls-cert --tls-key`), with a test CA made
here (test/tls_ca.py) that each client trusts as a user's would: real peerpigeon Node clients
complete WebRTC through the hub over wss:// (NODE_EXTRA_CA_CERTS), the HTTP endpoints answer over
https://, upload, bench and hub links dial it with --ca, a plain ws:// client fails cleanly, and bad
certificate files stop `serve` with the fix named."""

import asyncio
import json
import ssl
import urllib.error
import urllib.request
import uuid

import pytest
import websocket   # websocket-client: a plain ws:// client, independent of the hub's own code

from hubprocess import ROOT, start_pc_hub, wait_until
from test_peerpigeon_client import run_pair
from tls_ca import make_test_ca

from pigeonhub import cli
from pigeonhub.bench.load import run_load
from pigeonhub.hub.ws import client_ssl_context
from pigeonhub.upload import EXIT_UNREACHABLE, UploadError, upload_module

pytestmark = [pytest.mark.interop, pytest.mark.pc_hub]

TOKEN = "wss-test-token-1234"
MODULE = ROOT / "src" / "pigeonhub" / "data" / "hub.wasm"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_hub(tls_files, tmp_path_factory):
    work = tmp_path_factory.mktemp("tls-hub")
    hub = start_pc_hub(work / "hub.log", "--tls-cert", tls_files["cert"], "--tls-key",
                       tls_files["key"], "--upload-token", TOKEN, "--module-dir", work / "modules")
    yield hub
    assert hub.stop() == 0, hub.log()


def https_get(hub, path, ca, headers=None):
    request = urllib.request.Request(hub.http + path, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5, context=client_ssl_context(ca)) as r:
        return r.status, r.headers, r.read()


def health(hub, ca):
    return json.loads(https_get(hub, "/health", ca)[2])


def test_boot_log_names_wss_and_the_certificate(tls_hub):
    assert tls_hub.url.startswith("wss://127.0.0.1:")
    log = tls_hub.log()
    assert "HTTPS server on port %d (TLS, certificate CN=pigeonhub-test, expires " % tls_hub.port in log
    assert f"listening on wss://127.0.0.1:{tls_hub.port}" in log


def test_peerpigeon_clients_complete_webrtc_over_wss(tls_hub, tls_files):
    proc, events = run_pair(tls_hub.url, f"wss-{uuid.uuid4().hex[:8]}",
                            env={"NODE_EXTRA_CA_CERTS": str(tls_files["ca"])})
    report = f"exit {proc.returncode}\nevents:\n{proc.stdout}\nnode stderr (tail):\n" \
             + "\n".join(proc.stderr.splitlines()[-40:])
    ids = {e["peer"]: e["id"] for e in events if e["event"] == "ready"}
    assert set(ids) == {"A", "B"}, report
    other = {"A": ids["B"], "B": ids["A"]}
    connected = {e["peer"] for e in events if e["event"] == "peerConnected"
                 and e.get("peerId") == other[e["peer"]]}
    hellos = {e["peer"] for e in events if e["event"] == "messageReceived"
              and e.get("from") == other[e["peer"]]}
    assert connected == {"A", "B"} and hellos == {"A", "B"}, report
    assert proc.returncode == 0, report


def test_http_endpoints_answer_over_https(tls_hub, tls_files):
    ca = tls_files["ca"]
    assert health(tls_hub, ca)["status"] == "healthy"
    stats = json.loads(https_get(tls_hub, "/stats", ca)[2])
    assert len(stats["hubId"]) == 40
    status, headers, page = https_get(tls_hub, "/", ca, {"Accept": "text/html"})
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    # the page explains a self-signed certificate (shown by its script only over https)
    assert b"self-signed certificate" in page and b'location.protocol === "https:"' in page


def test_upload_over_https_needs_the_ca(tls_hub, tls_files):
    with pytest.raises(UploadError) as refused:
        upload_module("127.0.0.1", TOKEN, MODULE, port=tls_hub.port, progress=False, tls=True)
    assert refused.value.exit_code == EXIT_UNREACHABLE
    assert "does not trust" in refused.value.problem and "--ca" in refused.value.fix
    answer = upload_module("127.0.0.1", TOKEN, MODULE, port=tls_hub.port, progress=False,
                           ca=tls_files["ca"])
    assert answer["ok"] is True


def test_bench_load_runs_over_wss(tls_hub, tls_files):
    result = asyncio.run(run_load(tls_hub.url, peers=3, relays=60, window=8, timeout=10,
                                  ssl_context=client_ssl_context(tls_files["ca"])))
    assert result["offer"]["throughput"] > 0 and result["ice"]["throughput"] > 0


def test_plain_clients_on_the_tls_port_fail_cleanly(tls_hub, tls_files):
    plain = tls_hub.url.replace("wss://", "ws://")
    with pytest.raises((websocket.WebSocketException, ConnectionError)):
        websocket.create_connection(plain + "/?peerId=" + "a" * 40, timeout=5).close()
    with pytest.raises((urllib.error.URLError, ConnectionError)):   # no answer, no hang
        urllib.request.urlopen(tls_hub.http.replace("https://", "http://") + "/health", timeout=5)
    # the hub keeps serving and holds nothing for them
    wait_until(lambda: health(tls_hub, tls_files["ca"])["connections"] == 0, 5,
               "plain clients left connections behind")
    assert "Traceback" not in tls_hub.log() and "E (" not in tls_hub.log()


def test_hub_link_dials_wss_with_ca(tls_hub, tls_files, tmp_path):
    untrusted = start_pc_hub(tmp_path / "untrusted.log", "--bootstrap", tls_hub.url + "/")
    trusted = start_pc_hub(tmp_path / "trusted.log", "--bootstrap", tls_hub.url + "/",
                           "--ca", tls_files["ca"])
    try:
        def link_state():
            with urllib.request.urlopen(trusted.http + "/stats", timeout=5) as r:
                links = json.loads(r.read())["links"]
            return links and links[0].get("state") == "open"
        wait_until(link_state, 10, "the hub link over wss:// did not open")
        wait_until(lambda: "TLS certificate not trusted" in untrusted.log(), 10,
                   "a link to an untrusted certificate did not say so")
        assert "pass its CA with --ca" in untrusted.log()
    finally:
        untrusted.stop()
        trusted.stop()


@pytest.mark.parametrize("case, expected", [
    ("cert only", "--tls-cert and --tls-key go together: --tls-key is missing"),
    ("missing file", "cannot read --tls-cert"),
    ("key as cert", "is not a PEM X.509 certificate"),
    ("cert as key", "is not an unencrypted PEM private key"),
    ("other key", "does not belong to --tls-cert"),
])
def test_serve_refuses_unusable_tls_files_naming_the_fix(tls_files, tmp_path, capsys, case,
                                                         expected):
    cert, key = str(tls_files["cert"]), str(tls_files["key"])
    other = make_test_ca(tmp_path)["key"]
    args = {"cert only": ["--tls-cert", cert],
            "missing file": ["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", key],
            "key as cert": ["--tls-cert", key, "--tls-key", key],
            "cert as key": ["--tls-cert", cert, "--tls-key", cert],
            "other key": ["--tls-cert", cert, "--tls-key", str(other)]}[case]
    assert cli.main(["serve", "--port", "0", *args]) == 2
    out = capsys.readouterr()
    assert expected in out.out + out.err


@pytest.mark.parametrize("case, expected", [
    ("nothing", "give --cert CERT --key KEY, or --clear"),
    ("other key", "does not belong to --cert"),
    ("no such port", "cannot open /dev/nonexistent-tty"),
])
def test_provision_refuses_before_typing_anything(tls_files, tmp_path, capsys, case, expected):
    """`pigeonhub provision` checks the pair and the port first (the board's console path is
    test/board/test_wss.py)."""
    cert, key = str(tls_files["cert"]), str(tls_files["key"])
    args = {"nothing": [],
            "other key": ["--cert", cert, "--key", str(make_test_ca(tmp_path)["key"])],
            "no such port": ["--cert", cert, "--key", key, "--port", "/dev/nonexistent-tty"]}[case]
    assert cli.main(["provision", *args]) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("reply", [
    b"TLS certificate saved (CN=pigeonhub-test, expires 2027-01-07); `restart` to serve wss://",
    # another task's log line began in the middle of the console's reply (emulated esp32, CI)
    b"TLS certificate saved (\x1b[0;31mE (CN=pigeonhub-test, expires 2027-01-07); `restart` to",
])
def test_provision_reads_the_boards_summary_through_interleaved_log_output(reply):
    from pigeonhub.provision import SAVED
    assert SAVED.search(reply).group(1) == b"CN=pigeonhub-test, expires 2027-01-07"

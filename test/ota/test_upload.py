"""Over-the-air module upload end to end: `pigeonhub upload` (the real CLI) against `pigeonhub serve`
(a real subprocess on a free loopback port) with real WebSocket peers connected.

The PC hub answers POST /module exactly like the firmware (main/http_endpoints.c), so what holds
here holds for the board's endpoint: same statuses, same reasons, same swap in the same bridge core.
"""
import hashlib
import http.client
import http.server
import json
import signal
import threading
import time

import pytest

from ota_support import TOKEN, run_upload
from hubclient import Peer, assert_relays, joined_pair
from hubprocess import free_port, http_get, start_pc_hub
from pigeonhub.hub.module_store import ModuleStore

pytestmark = pytest.mark.slow


def start_hub(tmp_path, packaged, *extra, name="hub", token=TOKEN, module_dir=None):
    args = ["--module-dir", module_dir or tmp_path / "mods", *extra]
    if token:
        args += ["--upload-token", token]
    return start_pc_hub(tmp_path / f"{name}.log", *args, module=packaged)


def stats(hub):
    return json.loads(http_get(hub, "/stats")[2])


def sha_of(path_or_bytes):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return hashlib.sha256(data).hexdigest()






def raw_post(hub, body, headers=None, token=TOKEN, sha=None, length=None, half_close=False):
    """POST /module by hand, for what the CLI would refuse to send. Returns (status, json)."""
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    conn.putrequest("POST", "/module")
    if token is not None:
        conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("X-Module-SHA256", sha if sha is not None else hashlib.sha256(body).hexdigest())
    if length is not False:
        conn.putheader("Content-Length", str(len(body) if length is None else length))
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    if body:
        conn.send(body)
    if half_close:
        import socket
        conn.sock.shutdown(socket.SHUT_WR)
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read())
    conn.close()
    return out


# ---- a good upload -------------------------------------------------------------------------------

def test_upload_keeps_connected_peers_and_relays(tmp_path, packaged_wasm, alt_wasm):
    hub = start_hub(tmp_path, packaged_wasm)
    try:
        assert stats(hub)["module"]["sha256"] == sha_of(packaged_wasm)
        a, b = joined_pair(hub.url)
        proc = run_upload("--host", hub.host, "--port", hub.port, "--token", TOKEN, alt_wasm)
        assert proc.returncode == 0, proc.stderr
        sha, size = sha_of(alt_wasm), alt_wasm.stat().st_size
        assert proc.stdout.strip() == (f"module {sha[:12]}… ({size} bytes) is now active on "
                                       f"{hub.host}:{hub.port}, 2 peers kept")
        assert "100%" in proc.stderr and f"{size}/{size} bytes" in proc.stderr   # the progress bar
        # Nobody saw the replay: no second `connected`, no repeated discovery.
        assert [m["type"] for m in a.drain() + b.drain()] == []
        assert_relays(a, b, "after-swap")
        assert_relays(b, a, "back")
        s = stats(hub)
        assert s["module"]["sha256"] == sha and s["module"]["source"] == "hubmod0"
        assert s["module"]["maxPeers"] == 10        # the new module is the one answering
        assert s["bridge"]["swaps"] == 1 and s["bridge"]["lastSwapReplayed"] == 2
        # The new module knows both peers' network: a newcomer is introduced to both.
        c = Peer(hub.url, network=a.network)
        c.expect("connected")
        c.announce()
        a.expect("peer-discovered", data__peerId=c.id)
        b.expect("peer-discovered", data__peerId=c.id)
        assert {c.expect("peer-discovered")["data"]["peerId"] for _ in range(2)} == {a.id, b.id}
        assert "I (" in hub.log() and f"pigeonhub: module swapped: {sha[:8]} ({size} bytes), 2 peers kept" in hub.log()
        for p in (a, b, c):
            p.close()
    finally:
        assert hub.stop() == 0


# ---- rejected uploads: the old module keeps serving -------------------------------------------------

@pytest.fixture(scope="module")
def rejecting_hub(tmp_path_factory, packaged_wasm):
    tmp = tmp_path_factory.mktemp("ota-reject")
    hub = start_hub(tmp, packaged_wasm)
    a, b = joined_pair(hub.url)
    yield hub, a, b, tmp / "mods"
    a.close()
    b.close()
    assert hub.stop() == 0


def _flip(data):
    out = bytearray(data)
    for i in range(8, len(out), 97):
        out[i] ^= 0xFF
    return bytes(out)


REJECTIONS = [
    # name, how to make the request, status, reason fragment
    ("non-wasm", lambda w, abi1: dict(body=b"<html>hello</html>"), 422,
     "module rejected: not a WebAssembly module: starts with 3c 68 74 6d"),
    ("corrupt", lambda w, abi1: dict(body=_flip(w)), 422, "module rejected: "),
    ("truncated-module", lambda w, abi1: dict(body=w[: len(w) // 2]), 422,
     "module rejected: module is truncated: its "),
    ("wrong-abi", lambda w, abi1: dict(body=abi1), 422,
     "module rejected: module implements hub ABI version 1, this bridge implements version 3"),
    ("hash-mismatch", lambda w, abi1: dict(body=w, sha="ab" * 32), 400,
     "SHA-256 mismatch: received "),
    ("no-hash", lambda w, abi1: dict(body=w, sha="xyz"), 400,
     "X-Module-SHA256 header with the 64-hex SHA-256 of the body is required"),
    ("body-cut-short", lambda w, abi1: dict(body=w[:1000], sha=hashlib.sha256(w).hexdigest(),
                                            length=len(w), half_close=True), 400,
     "body ended after 1000 of "),
    ("no-length", lambda w, abi1: dict(body=b"", length=False), 411,
     "empty body: send the .wasm file with a Content-Length"),
    ("length-not-a-number", lambda w, abi1: dict(body=b"", length="1610\u00b3"), 400,
     "Content-Length must be a decimal number of bytes, not '1610\u00b3'"),
    ("too-big", lambda w, abi1: dict(body=b"", length=70000), 413, "module is 70000 bytes; a module slot holds 65536"),
    ("wrong-token", lambda w, abi1: dict(body=w, token="nope"), 403, "wrong upload token"),
    ("no-auth", lambda w, abi1: dict(body=w, token=None), 403,
     "missing or oversized Authorization header (expected: Bearer <token>)"),
]


@pytest.mark.parametrize("name,make,status,reason", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejected_upload_leaves_old_module_serving(rejecting_hub, alt_wasm, abi1_wasm, packaged_wasm,
                                                   name, make, status, reason):
    hub, a, b, mods = rejecting_hub
    got_status, answer = raw_post(hub, **make(alt_wasm.read_bytes(), abi1_wasm))
    assert got_status == status, answer
    assert reason in answer["error"]
    assert f"/module {status} " in hub.log() and reason in hub.log()
    s = stats(hub)
    assert s["module"]["sha256"] == sha_of(packaged_wasm) and s["bridge"]["swaps"] == 0
    assert_relays(a, b, name)
    assert [m["type"] for m in a.drain(0.2)] == []
    state = ModuleStore(mods).state()
    assert state["active"] is None and state["slots"] == {"0": None, "1": None}   # nothing kept
    assert not any(p.suffix == ".wasm" for p in mods.iterdir())


def test_request_cut_inside_its_headers_gets_a_reason(rejecting_hub):
    """A client that half-closes before the blank line ending the headers (found by fuzz/
    fuzz_upload.py: the hub closed without a word) gets a 400 saying so."""
    import socket
    hub, a, b, _ = rejecting_hub
    with socket.create_connection((hub.host, hub.port), timeout=10) as sock:
        sock.sendall(f"POST /module HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert json.loads(body) == {"error": "request ended inside its headers (no blank line after them)"}
    assert_relays(a, b, "after-cut-headers")


def test_cli_refuses_bad_files_before_sending(rejecting_hub, tmp_path, fixture_variants):
    hub, a, b, _ = rejecting_hub
    before = hub.log()
    notes = tmp_path / "notes.wasm"
    notes.write_text("not a module")
    proc = run_upload("--host", hub.host, "--port", hub.port, "--token", TOKEN, notes)
    assert proc.returncode == 2
    assert "is not a WebAssembly module (it starts with 6e 6f 74 20" in proc.stderr
    assert "fix: rebuild it with `pigeonhub build`" in proc.stderr
    proc = run_upload("--host", hub.host, "--port", hub.port, "--token", TOKEN, fixture_variants["abi1"])
    assert proc.returncode == 2
    assert "would be rejected by the hub: module implements hub ABI version 1" in proc.stderr
    proc = run_upload("--host", hub.host, "--port", hub.port, "--token", TOKEN, tmp_path / "missing.wasm")
    assert proc.returncode == 2 and "cannot read" in proc.stderr
    assert hub.log() == before                 # nothing reached the hub


def test_cli_swap_failure_keeps_old_module(rejecting_hub, fixture_variants, packaged_wasm):
    """A module that passes every load check but cannot take over the connected peers (it traps
    when they are replayed into it): HTTP 500, exit 5, the old module keeps serving them."""
    hub, a, b, mods = rejecting_hub
    proc = run_upload("--host", hub.host, "--port", hub.port, "--token", TOKEN,
                      fixture_variants["connect_traps"])
    assert proc.returncode == 5, proc.stderr
    assert ("Error: the hub could not switch modules (HTTP 500): swap failed, the previous module "
            "keeps running: new module's on_peer_connected trapped while replaying conn") in proc.stderr
    assert stats(hub)["module"]["sha256"] == sha_of(packaged_wasm)
    assert_relays(a, b, "after-failed-swap")
    assert not any(p.suffix == ".wasm" for p in mods.iterdir())


def test_cli_maps_hub_rejection_to_exit_4():
    """The answer a board gives for a module only it refuses (e.g. memory): reason + fix, exit 4."""
    from pigeonhub.upload import UploadError, _interpret
    body = json.dumps({"error": "module rejected: module does not fit in the 40000-byte memory limit"})
    with pytest.raises(UploadError) as info:
        _interpret("10.0.0.7", 3000, 422, body.encode())
    assert info.value.exit_code == 4
    assert str(info.value) == ("the hub rejected the module: module rejected: module does not fit in "
                               "the 40000-byte memory limit")
    assert "rebuild it with `pigeonhub build`" in info.value.fix


# ---- CLI error paths ---------------------------------------------------------------------------------

def test_cli_wrong_token(rejecting_hub, alt_wasm, packaged_wasm):
    hub, a, b, _ = rejecting_hub
    proc = run_upload("--host", hub.host, "--port", hub.port, "--token", "guess", "--no-progress", alt_wasm)
    assert proc.returncode == 3
    assert proc.stderr.startswith("Error: the hub refused the upload: wrong upload token\n")
    assert "fix: pass the hub's upload token with --token" in proc.stderr
    assert "upload [" not in proc.stderr                      # --no-progress
    assert stats(hub)["module"]["sha256"] == sha_of(packaged_wasm)


def test_cli_no_token_configured_on_hub(tmp_path, packaged_wasm, alt_wasm):
    hub = start_hub(tmp_path, packaged_wasm, token=None)
    try:
        proc = run_upload("--host", hub.host, "--port", hub.port, "--token", "anything", alt_wasm)
        assert proc.returncode == 3
        assert "uploads are disabled until an upload token is set" in proc.stderr
        assert "fix: set an upload token on the hub first" in proc.stderr
        assert stats(hub)["module"]["sha256"] == sha_of(packaged_wasm)
    finally:
        assert hub.stop() == 0


def test_cli_unreachable_host(alt_wasm):
    port = free_port()   # nothing listens there
    proc = run_upload("--host", "127.0.0.1", "--port", port, "--token", TOKEN, "--timeout", "3", alt_wasm)
    assert proc.returncode == 7
    assert f"Error: cannot reach the hub at 127.0.0.1:{port}: connection refused" in proc.stderr
    assert "is the board on this network? check its IP in the serial log line 'IPv4 address: ...'" in proc.stderr


def test_cli_something_else_answering(alt_wasm):
    class NotAHub(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>router admin</html>")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotAHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        proc = run_upload("--host", "127.0.0.1", "--port", server.server_port, "--token", TOKEN, alt_wasm)
    finally:
        server.shutdown()
    assert proc.returncode == 6
    assert "answered HTTP 404, but not as a PigeonHub" in proc.stderr and "check --host and --port" in proc.stderr


# ---- boot selection ---------------------------------------------------------------------------------

def test_restart_runs_the_uploaded_module(tmp_path, packaged_wasm, alt_wasm):
    hub = start_hub(tmp_path, packaged_wasm)
    try:
        assert run_upload("--host", hub.host, "--port", hub.port, "--token", TOKEN, alt_wasm).returncode == 0
    finally:
        assert hub.stop() == 0
    again = start_hub(tmp_path, packaged_wasm, name="again")
    try:
        assert "module source: hubmod0" in again.log()
        assert stats(again)["module"]["sha256"] == sha_of(alt_wasm)
        a, b = joined_pair(again.url)
        assert_relays(a, b, "after-restart")
        a.close()
        b.close()
    finally:
        assert again.stop() == 0


def test_confirmation_after_running_long_enough(tmp_path, packaged_wasm, alt_wasm):
    hub = start_hub(tmp_path, packaged_wasm, "--module-confirm-seconds", "1")
    try:
        assert run_upload("--host", hub.host, "--port", hub.port, "--token", TOKEN, alt_wasm).returncode == 0
        deadline = time.monotonic() + 5
        while "module confirmed" not in hub.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "module confirmed: it stays active across restarts" in hub.log()
        assert ModuleStore(tmp_path / "mods").state()["trial"] is False
    finally:
        assert hub.stop() == 0


def test_unconfirmed_module_that_keeps_dying_is_dropped(tmp_path, packaged_wasm, alt_wasm):
    """Like a board reset within CONFIG_PIGEONHUB_MODULE_CONFIRM_S: one fresh try, then fallback."""
    hub = start_hub(tmp_path, packaged_wasm)
    assert run_upload("--host", hub.host, "--port", hub.port, "--token", TOKEN, alt_wasm).returncode == 0
    hub.stop(sig=signal.SIGKILL)                          # dies before the 60 s confirmation
    second = start_hub(tmp_path, packaged_wasm, name="second")
    assert "module source: hubmod0" in second.log()       # its fresh try
    second.stop(sig=signal.SIGKILL)                       # and dies again
    third = start_hub(tmp_path, packaged_wasm, name="third")
    try:
        log = third.log()
        assert "W (" in log and "module in hubmod0 did not run 60 s before the last restart: falling back" in log
        assert "module source: packaged" in log
        assert stats(third)["module"]["sha256"] == sha_of(packaged_wasm)
    finally:
        assert third.stop() == 0


def test_boot_falls_back_to_previous_then_packaged(tmp_path, packaged_wasm, alt_wasm, abi1_wasm):
    alt = alt_wasm.read_bytes()
    # previous = a good module, active = the same bytes corrupted on disk after they were recorded
    store = ModuleStore(tmp_path / "mods")
    store.activate(store.store(alt))
    store.confirm()
    store.activate(store.store(alt))
    store.slot_path(1).write_bytes(alt[:-1] + bytes([alt[-1] ^ 1]))
    hub = start_hub(tmp_path, packaged_wasm, name="prev")
    try:
        log = hub.log()
        assert "W (" in log and "module hubmod1 skipped: hubmod1: SHA-256 of the contents differs from the recorded one" in log
        assert "module source: hubmod0" in log
        assert stats(hub)["module"]["sha256"] == sha_of(alt)
    finally:
        assert hub.stop() == 0

    # previous = a module the bridge refuses (ABI 1), active = corrupted: both fall, packaged runs
    store2 = ModuleStore(tmp_path / "mods2")
    store2.activate(store2.store(abi1_wasm))
    store2.activate(store2.store(alt))
    garbage = b"\0asm\x01\0\0\0garbage"
    store2.slot_path(1).write_bytes(garbage)
    hub = start_hub(tmp_path, packaged_wasm, name="packaged", module_dir=tmp_path / "mods2")
    try:
        log = hub.log()
        assert f"module hubmod1 skipped: hubmod1 holds {len(garbage)} bytes, {len(alt)} were recorded" in log
        assert "E (" in log and "module hubmod0 refused: module implements hub ABI version 1" in log
        assert "module source: packaged" in log
        assert stats(hub)["module"]["sha256"] == sha_of(packaged_wasm)
        a, b = joined_pair(hub.url)
        assert_relays(a, b, "packaged")
        a.close()
        b.close()
    finally:
        assert hub.stop() == 0
    state = ModuleStore(tmp_path / "mods2").state()
    assert state["active"] is None and state["slots"] == {"0": None, "1": None}

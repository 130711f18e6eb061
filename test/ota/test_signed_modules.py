"""Signed modules on the PC hub, end to end: `pigeonhub keygen`, `pigeonhub build --sign`, and
`pigeonhub serve --module-key` refusing what its key did not sign while the running module keeps
serving its peers; plus the upload limits of issue 12 (one upload at a time, a stalled one cut off).

Real parts only: the CLI as a user runs it, `pigeonhub serve` subprocesses on loopback, WebSocket
peers, `cryptography` signing and verifying. The reasons are ph_module_sig.c's, word for word the
board's (test/board/test_signed_uploads.py).
"""
import hashlib
import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from ota_support import ROOT, TOKEN, run_upload
from hubclient import assert_relays, joined_pair
from hubprocess import http_get, start_pc_hub
from pigeonhub import _bridge
from pigeonhub.module import signing

pytestmark = pytest.mark.slow


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([sys.executable, "-m", "pigeonhub.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


def post(hub, body):
    """POST /module by hand (for bodies the CLI would refuse to send). Returns (status, json)."""
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    conn.request("POST", "/module", body, {"Authorization": f"Bearer {TOKEN}",
                                            "X-Module-SHA256": hashlib.sha256(body).hexdigest()})
    resp = conn.getresponse()
    out = resp.status, json.loads(resp.read())
    conn.close()
    return out


def running_sha(hub):
    return json.loads(http_get(hub, "/stats")[2])["module"]["sha256"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two key pairs made by `pigeonhub keygen`: the hub's and a stranger's."""
    tmp = tmp_path_factory.mktemp("keys")
    for name in ("owner", "stranger"):
        proc = cli("keygen", tmp / name)
        assert proc.returncode == 0, proc.stderr
    return tmp


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(keys):
    owner = keys / "owner"
    assert stat.S_IMODE(owner.stat().st_mode) == 0o600
    assert owner.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert (keys / "owner.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    before = owner.read_bytes()
    proc = cli("keygen", owner)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"E (keygen) {owner} exists; keygen never overwrites a key (choose another name)"
    assert owner.read_bytes() == before


def test_build_sign_appends_a_signature_the_bridge_core_verifies(keys, tmp_path):
    # signing.py writes the section that ph_module_sig.c reads: one format
    assert (signing.SECTION_NAME.decode(), signing.FORMAT, signing.KEY_ID_BYTES, signing.SIG_BYTES,
            signing.SECTION_BYTES) == (_bridge.SIG_SECTION_NAME, _bridge.SIG_FORMAT,
                                       _bridge.SIG_KEY_ID_BYTES, _bridge.SIG_BYTES, _bridge.SIG_SECTION_BYTES)
    out = tmp_path / "hub.wasm"
    proc = cli("build", "--out", out, "--sign", keys / "owner")
    assert proc.returncode == 0, proc.stderr
    public = signing.load_public_key(keys / "owner.pub")
    kid = signing.key_id(public)
    assert f"signed     key id {kid.hex()}" in proc.stdout
    wasm = out.read_bytes()
    assert wasm[-89:-72] == b"\x00\x57\x0dpigeonhub.sig\x01" and wasm[-72:-64] == kid
    _bridge.check_signature(wasm, kid, signing.verifier(public))   # raises when refused
    _bridge.check_module(wasm)                                      # WASM3 skips the section
    # Signing again replaces the signature instead of stacking a second one.
    assert signing.sign(wasm, signing.load_private_key(keys / "owner"))[:-89] == wasm[:-89]
    assert "signature  key id " + kid.hex() in cli("info", out).stdout


@pytest.fixture(scope="module")
def keyed_hub(tmp_path_factory, keys, packaged_wasm):
    """A hub with --module-key owner.pub, running the (unsigned) packaged module, two peers on it."""
    tmp = tmp_path_factory.mktemp("signed-hub")
    hub = start_pc_hub(tmp / "hub.log", "--module-dir", tmp / "mods", "--upload-token", TOKEN,
                       "--module-key", keys / "owner.pub", module=packaged_wasm)
    a, b = joined_pair(hub.url)
    yield hub, a, b
    a.close()
    b.close()
    assert hub.stop() == 0


def test_keyed_hub_runs_its_own_packaged_module_with_a_warning(keyed_hub, keys):
    hub, _a, _b = keyed_hub
    kid = signing.key_id(signing.load_public_key(keys / "owner.pub")).hex()
    assert f"I (" in hub.log() and f"pigeonhub: module key {kid}: only modules signed by it are accepted" in hub.log()
    assert "pigeonhub: the packaged module hub.wasm runs although module is not signed" in hub.log()


def _refusals(wasm, keys):
    owner = signing.load_private_key(keys / "owner")
    stranger = signing.load_private_key(keys / "stranger")
    owner_id = signing.key_id(owner.public_key()).hex()
    stranger_id = signing.key_id(stranger.public_key()).hex()
    signed = signing.sign(wasm, owner)
    tampered = bytearray(signed)
    tampered[200] ^= 0x01
    return [
        ("unsigned", wasm, "module rejected: module is not signed; this hub runs only modules "
                           "signed by its module key (sign it with `pigeonhub build --sign KEY`)"),
        ("other key", signing.sign(wasm, stranger),
         f"module rejected: module is signed by key {stranger_id}; this hub's module key is {owner_id}"),
        ("tampered", bytes(tampered),
         f"module rejected: module signature does not match its {len(wasm)} signed bytes (changed "
         f"after signing, or signed by another key with the same id {owner_id})"),
        ("section after the signature", signed + b"\x00\x05\x04name",
         f"module rejected: module signature unreadable: the signature section at offset {len(wasm)} "
         f"is not the module's last section (another starts at {len(wasm) + 89}): sign the finished module"),
    ]


def test_keyed_hub_refuses_unsigned_foreign_and_altered_modules_and_keeps_serving(keyed_hub, keys, alt_wasm):
    hub, a, b = keyed_hub
    before = running_sha(hub)
    for name, body, reason in _refusals(alt_wasm.read_bytes(), keys):
        assert post(hub, body) == (422, {"error": reason}), name
        assert f"W (" in hub.log() and f"pigeonhub: /module 422 Unprocessable Entity: {reason}" in hub.log()
        assert running_sha(hub) == before, name
        assert_relays(a, b, name.replace(" ", "-"))


def test_upload_cli_names_the_fix_for_an_unsigned_module(keyed_hub, alt_wasm):
    hub, a, b = keyed_hub
    proc = run_upload("--host", hub.host, "--port", hub.port, "--token", TOKEN, "--no-progress", alt_wasm)
    assert proc.returncode == 4
    assert proc.stderr.splitlines()[0] == (
        "Error: the hub rejected the module: module rejected: module is not signed; this hub runs "
        "only modules signed by its module key (sign it with `pigeonhub build --sign KEY`)")
    assert "fix: sign it with `pigeonhub build --sign KEY`" in proc.stderr
    assert_relays(b, a, "after-cli-refusal")


def test_keyed_hub_swaps_in_a_module_its_key_signed_keeping_peers(keyed_hub, keys, alt_wasm, tmp_path):
    hub, a, b = keyed_hub
    signed = tmp_path / "alt-signed.wasm"
    signed.write_bytes(signing.sign(alt_wasm.read_bytes(), signing.load_private_key(keys / "owner")))
    proc = run_upload("--host", hub.host, "--port", hub.port, "--token", TOKEN, "--no-progress", signed)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("2 peers kept")
    assert running_sha(hub) == hashlib.sha256(signed.read_bytes()).hexdigest()
    assert_relays(a, b, "signed-swap")


# ---- a key provisioned later; the upload limits --------------------------------------------------

def test_key_set_later_refuses_an_unsigned_uploaded_slot_at_boot(tmp_path, keys, packaged_wasm, alt_wasm,
                                                                   trap_wasm):
    """Without a key a signed module is accepted like any other; with the key set at the next start,
    the unsigned module uploaded last is refused and the signed one before it runs."""
    mods = tmp_path / "mods"
    signed = signing.sign(alt_wasm.read_bytes(), signing.load_private_key(keys / "owner"))
    hub = start_pc_hub(tmp_path / "hub1.log", "--module-dir", mods, "--upload-token", TOKEN,
                       "--module-confirm-seconds", "0.2", module=packaged_wasm)
    try:
        assert post(hub, signed)[0] == 200
        time.sleep(0.5)   # confirmed: it becomes the previous module, the fallback
        status, answer = post(hub, trap_wasm.read_bytes())
        assert status == 200, answer
    finally:
        assert hub.stop() == 0
    hub = start_pc_hub(tmp_path / "hub2.log", "--module-dir", mods, "--upload-token", TOKEN,
                       "--module-key", keys / "owner.pub", module=packaged_wasm)
    try:
        assert ("pigeonhub: module hubmod1 refused: module is not signed; this hub runs only modules "
                "signed by its module key") in hub.log()
        assert running_sha(hub) == hashlib.sha256(signed).hexdigest()
    finally:
        assert hub.stop() == 0


def test_one_upload_at_a_time_and_a_stalled_upload_is_cut_off(tmp_path, packaged_wasm, alt_wasm):
    hub = start_pc_hub(tmp_path / "hub.log", "--module-dir", tmp_path / "mods", "--upload-token", TOKEN,
                       "--request-timeout", "1", module=packaged_wasm)
    wasm = alt_wasm.read_bytes()
    try:
        stalled = socket.create_connection((hub.host, hub.port), timeout=10)
        stalled.sendall(f"POST /module HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nX-Module-SHA256: "
                        f"{hashlib.sha256(wasm).hexdigest()}\r\nContent-Length: {len(wasm)}\r\n\r\n"
                        .encode() + wasm[:1000])
        time.sleep(0.2)   # its headers are in: the hub is receiving its body
        assert post(hub, wasm) == (409, {"error": "another module upload is in progress; retry when "
                                                  "it has finished"})
        answer = b""
        while chunk := stalled.recv(4096):   # the hub cuts it off after 1 s
            answer += chunk
        stalled.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ")
        assert json.loads(body) == {"error": "the request did not arrive within 1 s"}
        assert "pigeonhub: /module 400 Bad Request: the request did not arrive within 1 s" in hub.log()
        status, answer = post(hub, wasm)   # the slot is free again
        assert status == 200, answer
    finally:
        assert hub.stop() == 0

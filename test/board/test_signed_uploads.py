"""Signed modules on the emulated board: ONE board whose module key is provisioned in NVS (`mod_key`,
as the console's `modkey` stores it) refuses an unsigned and a tampered upload with the reasons of the bridge core (lib/pigeonhub_bridge/src/ph_module_sig.c, word for word the PC
hub's: test/ota/test_signed_modules.py), swaps in a module its key signed, and keeps serving a pair
of peers throughout. mbedtls verifies on the board (main/module_sig.c).

The firmware under test is built without CONFIG_PIGEONHUB_MODULE_SIGNING_KEY, so its embedded
module is unsigned: the board runs it with a warning (it is part of the firmware) and refuses
anything uploaded that the key did not sign.

The verify's cost (time in QEMU, heap at its peak, the hub task's stack left) is printed for
docs/SIGNED_MODULES.md: run with -s to read it.
"""

import pytest

from ota_board import (LOG_TIMEOUT, P, REFUSED, UPLOAD_TOKEN, assert_relays, cli, cli_upload, health,
                       joined_pair, mark, modules, outcome, raw_post, running, sha256_of, started_board)

pytestmark = pytest.mark.slow

VERIFIED = (P + r"module signature of key ([0-9a-f]{16}) verified: (\d+) bytes in (\d+) ms, (\d+) "
                r"bytes of heap at its peak, stack high-water (\d+) -> (\d+) bytes free")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from pigeonhub.module import signing
    tmp = tmp_path_factory.mktemp("board-keys")
    proc = cli("keygen", tmp / "owner")
    assert proc.returncode == 0, proc.stderr
    return {"owner": signing.load_private_key(tmp / "owner")}


@pytest.fixture(scope="module")
def signed_board(board_build, tmp_path_factory, keys):
    from pigeonhub.module import signing
    settings = {"upload_token": UPLOAD_TOKEN,
                "mod_key": signing.public_base64(keys["owner"].public_key())}
    board = started_board(board_build, tmp_path_factory.mktemp("signed-board"), settings)
    yield board
    board.stop()


@pytest.fixture
def board(signed_board, request):
    request.node._boards = [signed_board]   # test/board/conftest.py shows its serial log on a failure
    return signed_board


def test_keyed_board_refuses_what_its_key_did_not_sign_and_runs_what_it_did(board, keys,
                                                                             tmp_path_factory, tmp_path):
    from pigeonhub.module import signing
    owner_id = signing.key_id(keys["owner"].public_key()).hex()
    board.wait_for(P + f"module key {owner_id} \\(NVS mod_key\\): only modules signed by it run", LOG_TIMEOUT)
    board.wait_for(r"W \(\d+\) " + P + r"the embedded module runs although module is not signed; ",
                   LOG_TIMEOUT)
    plain = modules(tmp_path_factory)["mvp"].read_bytes()
    signed = signing.sign(plain, keys["owner"])
    # The signature is checked before anything parses the module, so the altered one can be small.
    # A refused upload costs about 5 s on the emulated esp32 (two sector erases, whatever its size):
    # the one signed by another key is left to the PC hub's and the bridge core's tests (the same
    # ph_module_sig.c decides it).
    small = b"\0asm\x01\x00\x00\x00" + b"\x00\x09\x04name" + bytes(range(4))
    tampered = bytearray(signing.sign(small, keys["owner"]))
    tampered[12] ^= 0x01
    before = running(board)
    heap_before = health(board)["memory"]
    a, b = joined_pair(board.url)
    try:
        refusals = [
            ("unsigned", plain, "module rejected: module is not signed; this hub runs only modules "
                                "signed by its module key (sign it with `pigeonhub build --sign KEY`)"),
            ("tampered", bytes(tampered),
             f"module rejected: module signature does not match its {len(small)} signed bytes (changed "
             f"after signing, or signed by another key with the same id {owner_id})"),
        ]
        for name, body, reason in refusals:
            since = mark(board)
            assert raw_post(board, body) == (422, {"error": reason}), name
            logged = board.wait_for(REFUSED, LOG_TIMEOUT, since=since)
            assert logged.groups() == ("422", reason), name
            assert running(board)["sha256"] == before["sha256"], name
            assert_relays(a, b, name)

        path = tmp_path / "signed.wasm"
        path.write_bytes(signed)
        since = mark(board)
        proc = cli_upload(board, path, UPLOAD_TOKEN, "--no-progress")
        assert proc.returncode == 0, outcome(proc)
        verified = board.wait_for(VERIFIED, LOG_TIMEOUT, since=since)
        assert verified.group(1) == owner_id and int(verified.group(2)) == len(signed)
        assert running(board)["sha256"] == sha256_of(signed)
        assert_relays(a, b, "signed")
        assert_relays(b, a, "signed-back")
        after = health(board)["memory"]
        print(f"\nsigned-module verify on {board.build.name}: {verified.group(3)} ms (QEMU), "
              f"{verified.group(4)} bytes of heap at its peak, the verify's stack high-water "
              f"{verified.group(5)} -> {verified.group(6)}; free heap {heap_before['freeHeap']} -> "
              f"{after['freeHeap']}, hub task stack left {heap_before['hubStackFree']} -> "
              f"{after['hubStackFree']} of {after['hubStackSize']}")
    finally:
        a.close()
        b.close()

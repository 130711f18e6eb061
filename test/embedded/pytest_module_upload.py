"""Over-the-air module upload, as a user does it: `pigeonhub upload --host IP --port P --token T FILE`
with the IP and port the hub printed, while peers stay connected; the console tells what happened.

Board: POST /module in main/http_endpoints.c, swap in main/hub_task.c (the swap is logged as a new
"module hub.wasm loaded: …" line). PC twin: src/pigeonhub/hub/ota.py ("module swapped: …").
Broken modules are refused twice over: by the CLI before anything is sent (exit 2), and, for a
client that skips those checks (curl, a script), by the hub itself (HTTP 422, logged); either way
the old module keeps serving.
"""

import hashlib
import http.client
import json
import os
from pathlib import Path

import pytest

from embedded_support import (ROOT, build_module, cli, code_section, corrupt, expect_line, line,
                              running_module, sha256_of, wrong_abi_module)
from hubclient import assert_relays, joined_pair

pytestmark = pytest.mark.slow


# ---- modules -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def standard_module(tmp_path_factory) -> Path:
    """The module a hub normally runs: $HUB_WASM, the packaged one, or one built from wasm/."""
    if os.environ.get("HUB_WASM"):
        return Path(os.environ["HUB_WASM"])
    packaged = ROOT / "src" / "pigeonhub" / "data" / "hub.wasm"
    if packaged.exists():
        return packaged
    return build_module(tmp_path_factory.mktemp("standard") / "hub.wasm")


@pytest.fixture(scope="session")
def other_good_module(tmp_path_factory):
    """other_good_module(running_sha) -> (path, maxPeers): a real hub module that is not the one
    running, so a swap is visible in /stats (maxPeers) and in the SHA-256. $HUB_ALT_WASM if set."""
    built = {}

    def pick(running_sha):
        if os.environ.get("HUB_ALT_WASM"):
            path = Path(os.environ["HUB_ALT_WASM"])
            if sha256_of(path.read_bytes()) != running_sha:
                return path, None
        for max_peers in (10, 12):
            if max_peers not in built:
                out = tmp_path_factory.mktemp("alt") / f"hub-max{max_peers}.wasm"
                built[max_peers] = build_module(out, "--max-peers", str(max_peers))
            if sha256_of(built[max_peers].read_bytes()) != running_sha:
                return built[max_peers], max_peers
        pytest.fail("no hub module that differs from the running one could be built")

    return pick


@pytest.fixture(scope="session")
def broken_modules(standard_module, tmp_path_factory):
    """name -> (bytes, reason the CLI prints, reason the hub answers and logs)."""
    good = standard_module.read_bytes()
    start, size = code_section(good)
    abi_wasm, abi_reason = wrong_abi_module(tmp_path_factory.mktemp("variants"))
    return {
        # Inverted bytes inside function bodies: the header and every section size are intact, so
        # only compiling the code finds it (the bridge compiles every function before swapping).
        "corrupt": (corrupt(good), "would be rejected by the hub: WASM3 cannot compile the module: ",
                    "WASM3 cannot compile the module: "),
        # A download cut off inside the code section.
        "truncated": (good[: start + size // 2], "is not a valid WebAssembly module: ",
                      "module is truncated: its code section (id 10) "),
        # A real module that implements another hub ABI version.
        "wrong-abi": (abi_wasm, f"would be rejected by the hub: {abi_reason}", abi_reason),
    }


def post_module(boot, body: bytes, token: str):
    """POST /module without the CLI's checks, as `curl --data-binary @x.wasm` does: (status, json)."""
    conn = http.client.HTTPConnection(*boot.address, timeout=30)
    try:
        conn.request("POST", "/module", body=body, headers={
            "Authorization": f"Bearer {token}", "X-Module-SHA256": hashlib.sha256(body).hexdigest(),
            "Content-Type": "application/wasm"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def upload(boot, token, path):
    host, port = boot.address   # the logged IP and port (forwarded ones for an emulated board)
    return cli("upload", "--host", host, "--port", port, "--token", token, path)


def outcome(proc):
    """Exit status and the CLI's last words (the progress bar redraws with \\r: only its end)."""
    return f"exit {proc.returncode}: {proc.stdout.strip()!r} {proc.stderr.splitlines()[-3:]}"


def expect_swap(dut, data: bytes, peers: int):
    """The console lines of an accepted upload: written, checked, swapped (board or twin wording)."""
    sha, size = sha256_of(data).encode(), len(data)
    expect_line(dut, "module upload written", line(
        rb"module upload: %d bytes written to slot (\d+), checking it" % size))
    expect_line(dut, "module swapped", line(
        rb"(?:module swapped: " + sha[:8] + rb" \(%d bytes\), %d peers kept" % (size, peers)
        + rb"|module \S+ loaded: %d bytes, sha256 " % size + sha + rb")"))


# ---- a good module ---------------------------------------------------------------------------------

def test_upload_swaps_the_module_and_peers_stay_connected(boot, dut, upload_token, other_good_module,
                                                          standard_module):
    before = running_module(boot)
    assert before["sha256"] == boot.module_sha256
    path, max_peers = other_good_module(boot.module_sha256)
    data = path.read_bytes()
    sha, size = sha256_of(data), len(data)
    a, b = joined_pair(boot.ws_url)
    try:
        proc = upload(boot, upload_token, path)
        assert proc.returncode == 0, outcome(proc)
        assert proc.stdout.strip() == (f"module {sha[:12]}\u2026 ({size} bytes) is now active on "
                                       "%s:%d, 2 peers kept" % boot.address)
        assert f"100%  {size}/{size} bytes" in proc.stderr          # the progress bar finished
        expect_swap(dut, data, peers=2)

        # The peers noticed nothing (no second `connected`, no repeated discovery) and are served
        # by the new module.
        assert [m["type"] for m in a.drain() + b.drain()] == []
        assert_relays(a, b, "after-swap")
        assert_relays(b, a, "after-swap-back")
        now = running_module(boot)
        assert (now["sha256"], now["bytes"]) == (sha, size)
        if max_peers is not None:
            assert now["maxPeers"] == max_peers

        # Leave the hub as it was found, which also proves a second swap: when the module that ran
        # before is the standard one, it goes back (a board otherwise keeps the test module once
        # it has run 60 s).
        original = standard_module.read_bytes()
        if sha256_of(original) == before["sha256"]:
            proc = upload(boot, upload_token, standard_module)
            assert proc.returncode == 0, outcome(proc)
            expect_swap(dut, original, peers=2)
            assert_relays(a, b, "restored")
            assert running_module(boot)["sha256"] == before["sha256"]
    finally:
        a.close()
        b.close()


# ---- refusals --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["corrupt", "truncated", "wrong-abi"])
def test_broken_module_is_refused_and_the_old_one_keeps_serving(kind, boot, dut, upload_token,
                                                               broken_modules, tmp_path):
    data, cli_reason, hub_reason = broken_modules[kind]
    path = tmp_path / f"{kind}.wasm"
    path.write_bytes(data)
    before = running_module(boot)
    a, b = joined_pair(boot.ws_url)
    try:
        # The CLI checks the file first and sends nothing: exit 2 with the reason and the fix.
        proc = upload(boot, upload_token, path)
        assert proc.returncode == 2, outcome(proc)
        assert f"Error: {path}" in proc.stderr and cli_reason in proc.stderr
        assert "fix: rebuild it with `pigeonhub build`" in proc.stderr

        # Sent anyway (no CLI): the hub checks it itself, answers 422 with the reason, logs it.
        status, answer = post_module(boot, data, upload_token)
        assert status == 422, answer
        assert answer["error"].startswith("module rejected: ") and hub_reason in answer["error"]
        # A hub short of memory refuses every module, good or bad, with the same "cannot compile"
        # prefix (WASM3's "memory allocation failed ..."): that would prove nothing about this one.
        assert "memory allocation failed" not in answer["error"], answer
        refused = expect_line(dut, "/module 422 refusal", line(
            rb"/module 422 Unprocessable Entity: module rejected: ([^\r\n\x1b]*)"))
        assert hub_reason in refused.group(1).decode()

        # The old module still serves the peers it had, and nothing changed for them.
        assert running_module(boot) == before
        assert_relays(a, b, kind)
        assert [m["type"] for m in a.drain() + b.drain()] == []
    finally:
        a.close()
        b.close()


def test_wrong_token_is_refused_with_exit_3(boot, dut, upload_token, standard_module):
    before = running_module(boot)
    proc = upload(boot, "not-" + upload_token, standard_module)
    assert proc.returncode == 3, outcome(proc)
    assert "Error: the hub refused the upload: wrong upload token" in proc.stderr
    expect_line(dut, "/module 403 refusal", line(rb"/module 403 Forbidden: wrong upload token"))
    assert running_module(boot) == before

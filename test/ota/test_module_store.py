"""pigeonhub.hub.module_store: the module store's policy (the bridge core's ph_module_store.c, the
firmware's too) over the PC hub's directory of slot files and state file."""
import hashlib
import json

import pytest

from pigeonhub.hub.module_store import PACKAGED, ModuleStore, StoreError

A = b"\0asm\x01\0\0\0" + b"module A" * 10
B = b"\0asm\x01\0\0\0" + b"module B" * 12
C = b"\0asm\x01\0\0\0" + b"module C" * 14


@pytest.fixture
def packaged(tmp_path):
    p = tmp_path / "packaged.wasm"
    p.write_bytes(b"\0asm\x01\0\0\0packaged")
    return p


@pytest.fixture
def store(tmp_path, packaged):
    return ModuleStore(tmp_path / "mods", packaged=packaged, confirm_after=60)


def test_store_writes_free_slot_atomically_and_records_it(store):
    slot = store.store(A, hashlib.sha256(A).hexdigest())
    assert slot == 0
    assert store.slot_path(0).read_bytes() == A
    assert sorted(p.name for p in store.directory.iterdir()) == ["hubmod0.wasm", "state.json"]  # no temp files
    state = json.loads(store.state_path.read_text())
    assert state["slots"]["0"] == {"size": len(A), "sha256": hashlib.sha256(A).hexdigest()}
    assert state["active"] is None   # stored is not active: only a successful swap activates
    assert store.open(0) == A


def test_upload_never_overwrites_the_running_slot(store):
    store.activate(store.store(A))          # running 0
    assert store.store(B) == 1
    store.activate(1)
    assert store.store(C) == 0              # running 1: slot 0 (the previous) is reused
    state = store.state()
    assert state["active"] == 1 and state["previous"] is None   # its old module is gone
    assert store.open(1) == B and store.open(0) == C


def test_sha_mismatch_and_size_refused_without_trace(store):
    with pytest.raises(StoreError, match="SHA-256 mismatch: received .*, X-Module-SHA256 says 00"):
        store.store(A, "00" * 32)
    with pytest.raises(StoreError, match="module is 0 bytes; a slot holds 1 to 65536"):
        store.store(b"")
    with pytest.raises(StoreError, match="module is 65537 bytes"):
        store.store(b"x" * 65537)
    assert not store.slot_path(0).exists() and store.state()["slots"]["0"] is None


def test_activate_keeps_previous_and_boot_order(store):
    assert store.boot_order() == [PACKAGED]
    store.activate(store.store(A))
    store.activate(store.store(B))
    assert store.state()["active"] == 1 and store.state()["previous"] == 0
    assert store.boot_order() == [1, 0, PACKAGED]
    store.mark_bad(1)   # active fails to load: previous becomes active
    assert store.state()["active"] == 0 and store.boot_order() == [0, PACKAGED]


def test_open_checks_recorded_size_and_hash(store):
    store.activate(store.store(A))
    data = bytearray(A)
    data[-1] ^= 1
    store.slot_path(0).write_bytes(bytes(data))
    with pytest.raises(StoreError, match="hubmod0: SHA-256 of the contents differs from the recorded one"):
        store.open(0)
    store.slot_path(0).write_bytes(A[:-1])
    with pytest.raises(StoreError, match=f"hubmod0 holds {len(A) - 1} bytes, {len(A)} were recorded"):
        store.open(0)
    with pytest.raises(StoreError, match="hubmod1 is empty"):
        store.open(1)
    assert store.open(PACKAGED) == b"\0asm\x01\0\0\0packaged"


def test_unconfirmed_module_gets_one_fresh_boot_then_falls_back(store, capsys):
    store.activate(store.store(A))
    store.confirm()
    store.activate(store.store(B))          # on trial, previous A (confirmed)
    assert store.needs_confirm()
    assert store.boot_order() == [1, 0, PACKAGED]   # fresh: tried once
    store.note_boot(1)                      # booted... and the hub died before confirming it
    assert store.boot_order() == [0, PACKAGED]      # like a board reset within the confirm time
    assert store.state()["slots"]["1"] is None and store.state()["active"] == 0


def test_clean_shutdown_and_confirm_keep_the_module(store):
    store.activate(store.store(A))
    store.note_boot(0)
    store.clean_shutdown()                  # stopped on purpose: not the module's fault
    assert store.boot_order() == [0, PACKAGED]
    store.note_boot(0)
    store.confirm()
    assert not store.needs_confirm()
    store.note_boot(0)
    assert store.boot_order() == [0, PACKAGED]      # confirmed: stays across any restart


def test_discard_forgets_a_refused_upload(store):
    store.activate(store.store(A))
    slot = store.store(B)
    store.discard(slot)
    assert not store.slot_path(slot).exists()
    assert store.state()["active"] == 0 and store.boot_order() == [0, PACKAGED]


def test_broken_state_file_falls_back_to_packaged(store):
    store.activate(store.store(A))
    store.state_path.write_text("{not json")
    assert store.boot_order() == [PACKAGED]


def test_a_state_file_that_cannot_be_written_stops_the_upload(store):
    """The policy saves through the store's callback: its error reaches the caller (the upload
    answers 507), never a decision that was silently not kept."""
    store.state_path.mkdir()   # os.replace() cannot put a file there, even for root
    with pytest.raises(OSError):
        store.store(A)
    assert store.boot_order() == [PACKAGED]

"""Where the PC hub keeps uploaded hub modules. Which one runs is decided by the module store's
policy in the bridge core (lib/pigeonhub_bridge/src/ph_module_store.c, pigeonhub._bridge.Store),
the same C code as the firmware's; this file only keeps the state and the modules on disk, as the
board keeps them in NVS and flash partitions.

A directory holds two slots and a state file:

    hubmod0.wasm, hubmod1.wasm   uploaded modules (the names of the board's flash partitions)
    state.json                   {"active": 0|1|null, "previous": 0|1|null, "trial": bool,
                                  "trialBoots": int, "slots": {"0": {"size", "sha256"} | null, ...}}

A module is written to a temporary file, fsync'ed and renamed over its slot, so a crash never
leaves half a module under a slot's name; the state file is replaced the same way. The PC hub gives
a module on trial one fresh boot after a restart (the board none: see ph_module_store.h).
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .. import _bridge

SLOT_COUNT = len(_bridge.STORE_SLOT_NAMES)
PACKAGED = _bridge.STORE_BUILTIN           # the board's embedded module
SLOT_NAMES = _bridge.STORE_SLOT_NAMES
SLOT_BYTES = _bridge.STORE_SLOT_BYTES
DEFAULT_CONFIRM_SECONDS = float(_bridge.STORE_CONFIRM_SECONDS)   # Kconfig's default too
FRESH_BOOTS = 1
STATE_FILE = "state.json"


class StoreError(Exception):
    """A module could not be stored or opened; the message is the user-facing reason."""


def default_directory() -> Path:
    """~/.local/share/pigeonhub/modules (or $XDG_DATA_HOME/pigeonhub/modules)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "pigeonhub" / "modules"


def slot_name(slot: int) -> str:
    return SLOT_NAMES[slot] if 0 <= slot < SLOT_COUNT else "packaged"


def _empty_state():
    return {"active": None, "previous": None, "trial": False, "trialBoots": 0,
            "slots": {str(i): None for i in range(SLOT_COUNT)}}


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return   # not possible on every platform (Windows): the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes):
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


class ModuleStore:
    def __init__(self, directory=None, packaged=None, confirm_after=DEFAULT_CONFIRM_SECONDS,
                 slot_bytes=SLOT_BYTES, log=None):
        self.directory = Path(directory) if directory is not None else default_directory()
        self.packaged = Path(packaged) if packaged is not None else None
        self.confirm_after = float(confirm_after)
        self.slot_bytes = slot_bytes
        self.log = log
        self.directory.mkdir(parents=True, exist_ok=True)
        self.policy = _bridge.Store(self._load, self._save, self._exists, self._log,
                                    builtin_name="packaged", restart="restart",
                                    confirm_after=int(self.confirm_after), fresh_boots=FRESH_BOOTS)

    # ---- the state, as the policy reads and writes it ------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    def slot_path(self, slot: int) -> Path:
        return self.directory / f"{SLOT_NAMES[slot]}.wasm"

    def state(self) -> dict:
        """The state file, or an empty state when it is missing or unreadable (then only the
        packaged module is used; a broken state file must never stop the hub from booting)."""
        try:
            raw = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return _empty_state()
        except (OSError, ValueError) as exc:
            self._warn(f"module state {self.state_path} unreadable ({exc}): using the packaged module")
            return _empty_state()
        state = _empty_state()
        if isinstance(raw, dict):
            for key in ("active", "previous"):
                state[key] = raw.get(key) if raw.get(key) in range(SLOT_COUNT) else None
            state["trial"] = bool(raw.get("trial"))
            state["trialBoots"] = raw.get("trialBoots") if isinstance(raw.get("trialBoots"), int) else 0
            slots = raw.get("slots") if isinstance(raw.get("slots"), dict) else {}
            for i in range(SLOT_COUNT):
                rec = slots.get(str(i))
                if (isinstance(rec, dict) and isinstance(rec.get("size"), int)
                        and isinstance(rec.get("sha256"), str) and _is_sha(rec["sha256"])):
                    state["slots"][str(i)] = {"size": rec["size"], "sha256": rec["sha256"]}
        return state

    def _load(self):
        state = self.state()
        records = tuple(None if rec is None else (rec["size"], bytes.fromhex(rec["sha256"]))
                        for rec in (state["slots"][str(i)] for i in range(SLOT_COUNT)))
        return (_slot_or_packaged(state["active"]), _slot_or_packaged(state["previous"]),
                int(state["trial"]), state["trialBoots"], records)

    def _save(self, raw):
        active, previous, trial, boots, records = raw
        state = {"active": active if active >= 0 else None,
                 "previous": previous if previous >= 0 else None,
                 "trial": bool(trial), "trialBoots": boots,
                 "slots": {str(i): None if rec is None else {"size": rec[0], "sha256": rec[1].hex()}
                           for i, rec in enumerate(records)}}
        _atomic_write(self.state_path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())

    def _exists(self, slot):
        return self.slot_path(slot).exists()

    def _log(self, level, text):
        if self.log is not None:
            self.log.line(level, text)

    def _warn(self, text):
        if self.log is not None:
            self.log.warning(text)

    # ---- upload --------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return self.policy.running

    def store(self, data: bytes, expected_sha256: str | None = None) -> int:
        """Write `data` to the free slot (atomically) and record it; returns the slot.
        Raises StoreError on a size or SHA-256 mismatch (nothing is recorded then)."""
        data = bytes(data)
        if not 0 < len(data) <= self.slot_bytes:
            raise StoreError(f"module is {len(data)} bytes; a slot holds 1 to {self.slot_bytes}")
        got = hashlib.sha256(data)
        if expected_sha256 is not None and got.hexdigest() != expected_sha256.lower():
            raise StoreError(f"SHA-256 mismatch: received {got.hexdigest()}, X-Module-SHA256 says "
                             f"{expected_sha256.lower()}")
        slot = self.policy.free_slot()
        self.policy.mark_bad(slot)   # its old module is about to disappear: no reference may stay
        _atomic_write(self.slot_path(slot), data)
        self.policy.record_upload(slot, len(data), got.digest())
        return slot

    def discard(self, slot: int):
        """An upload was refused: leave no module and no record behind (upload_abort)."""
        self.policy.mark_bad(slot)
        try:
            self.slot_path(slot).unlink()
        except FileNotFoundError:
            pass

    # ---- lifecycle (the policy's) ----------------------------------------------------------------

    def boot_order(self) -> list:
        return self.policy.boot_order()

    def note_boot(self, slot: int):
        self.policy.note_boot(slot)

    def mark_bad(self, slot: int):
        self.policy.mark_bad(slot)

    def activate(self, slot: int):
        self.policy.activate(slot)

    def needs_confirm(self) -> bool:
        return self.policy.needs_confirm()

    def confirm(self):
        self.policy.confirm()

    def clean_shutdown(self):
        self.policy.clean_shutdown()

    def trial_trapped(self, traps: int):
        """The running module trapped `traps` times: the slot given up, or None (see ota.py)."""
        return self.policy.trial_trapped(traps)

    def note_fallback(self, failed: int, traps: int, now: int):
        self.policy.note_fallback(failed, traps, now)

    def trial_failure(self):
        """/stats: the last module given up for trapping on trial since the hub started, or None."""
        failure = self.policy.trial_failure
        if failure is None:
            return None
        slot, traps, now = failure
        return {"slot": slot_name(slot), "traps": traps, "replacedBy": slot_name(now)}

    def open(self, slot: int) -> bytes:
        """The bytes of a slot (or the packaged module), checked against the recorded size and
        SHA-256. Raises StoreError with the reason."""
        if slot == PACKAGED:
            if self.packaged is None:
                raise StoreError("no packaged module")
            try:
                return self.packaged.read_bytes()
            except OSError as exc:
                raise StoreError(f"{self.packaged}: {exc.strerror or exc}")
        if self.policy.recorded_len(slot) == 0:   # before reading a file that may be huge
            raise StoreError(f"{slot_name(slot)} is empty")
        try:
            data = self.slot_path(slot).read_bytes()
        except OSError as exc:
            raise StoreError(f"{slot_name(slot)}: {exc.strerror or exc}")
        try:
            self.policy.verify(slot, len(data), hashlib.sha256(data).digest())
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        return data


def _slot_or_packaged(slot):
    return PACKAGED if slot is None else slot


def _is_sha(text):
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)

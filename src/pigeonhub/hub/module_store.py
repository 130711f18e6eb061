"""Where the PC hub keeps uploaded hub modules: the same rules as the firmware's main/module_store.c.

A directory holds two slots and a state file:

    hubmod0.wasm, hubmod1.wasm   uploaded modules (the names of the board's flash partitions)
    state.json                   {"active": 0|1|null, "previous": 0|1|null, "trial": bool,
                                  "trialBoots": int, "slots": {"0": {"size", "sha256"} | null, ...}}

(the board keeps the same facts in NVS: mod_active, mod_prev, mod_trial, mod_lenN, mod_shaN).

- An upload goes to the slot that is NOT running (the running module's bytes are in use), written
  to a temporary file, fsync'ed and renamed over the slot, so a crash never leaves half a module
  under a slot's name. Its size and SHA-256 are recorded; every boot checks them again.
- Activating a slot makes it the active module "on trial" and the old active one the previous.
  After it has run `confirm_after` seconds (the firmware's CONFIG_PIGEONHUB_MODULE_CONFIRM_S, 60 s)
  it is confirmed and stays across restarts.
- Boot order: the active slot → the previous slot → the packaged module (the board's embedded one).
  A module on trial is tried once more after a restart ("fresh"): a PC hub is restarted on purpose
  far more often than a board crashes. If the hub then dies again before confirming it, the next boot
  treats it as bad, like the firmware after a reset within the confirmation time. A slot that fails
  to load is marked bad (its record forgotten) and the next candidate is tried.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

SLOT_COUNT = 2
PACKAGED = -1                      # MODULE_SLOT_EMBEDDED in main/module_store.h
SLOT_NAMES = ("hubmod0", "hubmod1")
SLOT_BYTES = 0x10000               # partitions.csv: hubmod0/hubmod1 are 64 KiB each
DEFAULT_CONFIRM_SECONDS = 60.0     # CONFIG_PIGEONHUB_MODULE_CONFIRM_S default
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
        self.running = PACKAGED    # which slot the hub runs now (module_store_set_running)
        self.directory.mkdir(parents=True, exist_ok=True)

    # ---- state ---------------------------------------------------------------------------------

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
                        and isinstance(rec.get("sha256"), str)):
                    state["slots"][str(i)] = {"size": rec["size"], "sha256": rec["sha256"]}
        return state

    def _save(self, state: dict):
        _atomic_write(self.state_path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())

    def _warn(self, text):
        if self.log is not None:
            self.log.warning(text)

    # ---- upload --------------------------------------------------------------------------------

    def free_slot(self) -> int:
        """The slot an upload may overwrite: never the running one."""
        return 1 if self.running == 0 else 0

    def store(self, data: bytes, expected_sha256: str | None = None) -> int:
        """Write `data` to the free slot (atomically) and record it; returns the slot.
        Raises StoreError on a size or SHA-256 mismatch (nothing is recorded then)."""
        data = bytes(data)
        if not 0 < len(data) <= self.slot_bytes:
            raise StoreError(f"module is {len(data)} bytes; a slot holds 1 to {self.slot_bytes}")
        got = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and got != expected_sha256.lower():
            raise StoreError(f"SHA-256 mismatch: received {got}, X-Module-SHA256 says "
                             f"{expected_sha256.lower()}")
        slot = self.free_slot()
        # The slot's old module is about to disappear: stop every reference to it first.
        self.mark_bad(slot)
        _atomic_write(self.slot_path(slot), data)
        state = self.state()
        state["slots"][str(slot)] = {"size": len(data), "sha256": got}
        self._save(state)
        return slot

    def discard(self, slot: int):
        """An upload was refused: leave no module and no record behind (upload_abort)."""
        self.mark_bad(slot)
        try:
            self.slot_path(slot).unlink()
        except FileNotFoundError:
            pass

    # ---- lifecycle -----------------------------------------------------------------------------

    def mark_bad(self, slot: int):
        """Forget the slot's record; if it was active, the previous module becomes active."""
        if not 0 <= slot < SLOT_COUNT:
            return
        state = self.state()
        state["slots"][str(slot)] = None
        if state["active"] == slot:
            state["active"] = state["previous"]
            state["previous"] = None
            state["trial"] = False
            state["trialBoots"] = 0
        elif state["previous"] == slot:
            state["previous"] = None
        self._save(state)

    def activate(self, slot: int):
        """The hub now runs this slot: it becomes active (on trial), the old active the previous."""
        state = self.state()
        if state["active"] != slot:
            state["previous"] = state["active"]
        state["active"] = slot
        state["trial"] = True
        state["trialBoots"] = 0
        self._save(state)
        self.running = slot

    def needs_confirm(self) -> bool:
        return self.state()["trial"]

    def confirm(self):
        state = self.state()
        if state["trial"]:
            state["trial"] = False
            state["trialBoots"] = 0
            self._save(state)
            if self.log is not None:
                self.log.info("module confirmed: it stays active across restarts")

    def clean_shutdown(self):
        """The hub stopped on purpose (Ctrl-C, SIGTERM): not the module's fault, so a module on trial
        gets its fresh try again at the next boot."""
        state = self.state()
        if state["trial"] and state["trialBoots"]:
            state["trialBoots"] = 0
            self._save(state)

    def boot_order(self) -> list:
        """Slots to try at boot, best first; PACKAGED is always last."""
        state = self.state()
        active, prev = state["active"], state["previous"]
        if state["trial"] and active is not None and state["trialBoots"] >= 1:
            self._warn(f"module in {slot_name(active)} did not run {self.confirm_after:g} s before "
                       f"the hub last stopped: falling back")
            self.mark_bad(active)
            active, prev = prev, None
        order = []
        if active is not None and self.slot_path(active).exists():
            order.append(active)
        if prev is not None and prev != active and self.slot_path(prev).exists():
            order.append(prev)
        order.append(PACKAGED)
        return order

    def note_boot(self, slot: int):
        """The hub booted `slot`: running it now; a module on trial has used its fresh try."""
        self.running = slot
        if slot < 0:
            return
        state = self.state()
        if state["trial"] and state["active"] == slot:
            state["trialBoots"] += 1
            self._save(state)

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
        rec = self.state()["slots"].get(str(slot))
        if not rec:
            raise StoreError(f"{slot_name(slot)} is empty")
        try:
            data = self.slot_path(slot).read_bytes()
        except OSError as exc:
            raise StoreError(f"{slot_name(slot)}: {exc.strerror or exc}")
        if len(data) != rec["size"]:
            raise StoreError(f"{slot_name(slot)}: file is {len(data)} bytes, {rec['size']} were recorded")
        if hashlib.sha256(data).hexdigest() != rec["sha256"]:
            raise StoreError(f"{slot_name(slot)}: SHA-256 of the file differs from the recorded one")
        return data

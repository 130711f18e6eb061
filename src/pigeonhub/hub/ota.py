"""`POST /module` on the PC hub: the firmware's over-the-air module upload (main/http_endpoints.c),
answered the same way, so `pigeonhub upload` and its tests work against both.

    POST /module
    Authorization: Bearer <token>      403 when missing/wrong, or when no token is configured
    X-Module-SHA256: <64 hex>          400 when missing or malformed
    Content-Length: <bytes>            411 when missing or 0; 413 when above one module slot (64 KiB)
    <the .wasm file>

The module is written to the slot that is not running (ModuleStore), checked by the bridge core
(the same checks as the board: 422 "module rejected: <reason>") and swapped in place: open
connections and their announces are replayed into the new module (Bridge.swap). Every refusal
answers {"error": "<specific reason>"} and leaves the running module untouched. Success:

    200 {"ok":true,"slot":"hubmod1","bytes":N,"sha256":"..","hubId":"..",
         "confirmAfterSeconds":60,"peersReplayed":K}

(the board, main/hub_task.c, answers the same members.)

With `serve --module-key PUB.pem`, the module must also be signed by that key (signing.py;
422 "module rejected: module is not signed; ..." and the other reasons of ph_module_sig.c), checked
before the module is stored or parsed.

The request reaches UploadService through the hub's one HTTP router (endpoints.py), which gives
a request 10 s (serve --request-timeout) to arrive whole: a 64 KiB module takes well under a second
on a LAN. One upload at a time: a second POST /module while a body arrives is answered 409.
"""

import hashlib
import re

from .. import _bridge
from .endpoints import REASONS
from .module_store import PACKAGED, SLOT_BYTES, StoreError, slot_name

_DECIMAL_RE = re.compile(r"[0-9]+")
TOKEN_HINT = ("pigeonhub serve --upload-token <secret>; on a board: console `token <secret>` or "
              "CONFIG_PIGEONHUB_UPLOAD_TOKEN")


def precheck(headers, token, slot_bytes=SLOT_BYTES):
    """The checks that need no body, the board's own (ph_upload_check.c). Returns (status, reason)
    or None."""
    return _bridge.upload_check(token or None, TOKEN_HINT, _c_string(headers.get("authorization")),
                                _c_string(headers.get("x-module-sha256")),
                                _c_string(headers.get("content-length")), slot_bytes)


def _c_string(value):
    """A header as the board's C code sees it: up to its first NUL byte."""
    return None if value is None else value.split("\0", 1)[0]


def content_length(headers):
    """The Content-Length header's value, None when absent or not ASCII digits (str.isdigit
    accepts other scripts' digits, which int() refuses)."""
    raw = headers.get("content-length")
    if raw is None or not _DECIMAL_RE.fullmatch(raw.strip()):
        return None
    return int(raw.strip())


def handle_upload(headers, body, hub, store):
    """POST /module once its headers passed precheck() (the router runs it before reading the
    body) and the body was read. `hub` provides swap(wasm) -> replayed connections (raising
    hub.SwapError / BridgeError with the reason), check(wasm) (raises with the reason), hub_id and
    log, and check_signature(wasm) (raises with the reason when a module key is set and the module
    is not signed by it). Returns (status, json object)."""
    length = content_length(headers)
    if len(body) != length:
        return 400, {"error": f"body ended after {len(body)} of {length} bytes"}
    expected = headers["x-module-sha256"].strip().lower()
    got = hashlib.sha256(body).hexdigest()
    if got != expected:
        # Checked before anything is written: a bad transfer never touches a slot.
        return 400, {"error": f"SHA-256 mismatch: received {got}, X-Module-SHA256 says {expected}"}
    try:
        hub.check_signature(body)   # before anything is written or parsed: an unsigned module is not
    except Exception as exc:        # even stored (BridgeError: ph_module_sig.c's reason)
        return 422, {"error": f"module rejected: {exc}"}
    try:
        slot = store.store(body, expected)
    except (StoreError, OSError) as exc:
        return 507, {"error": f"storing the module failed: {exc}"}
    hub.log.info(f"module upload: {len(body)} bytes written to slot {slot}, checking it")
    try:
        hub.check(body)
    except Exception as exc:  # BridgeError: the bridge's specific reason
        store.discard(slot)
        return 422, {"error": f"module rejected: {exc}"}
    try:
        replayed = hub.swap(body)
    except Exception as exc:
        store.discard(slot)
        return 500, {"error": f"swap failed, the previous module keeps running: {exc}"}
    store.activate(slot)
    return 200, {"ok": True, "slot": slot_name(slot), "bytes": len(body),
                 "sha256": got, "hubId": hub.hub_id, "confirmAfterSeconds": store.confirm_after,
                 "peersReplayed": replayed}


class UploadService:
    """POST /module for a running PC hub (pigeonhub.hub.server.PcHub or anything with its `bridge`,
    `bridge_mod`, `log` and `module_info` attributes). Called on the event loop thread, between
    bridge calls, so the swap never races a frame."""

    def __init__(self, hub, store, token):
        self.hub = hub
        self.store = store
        self.token = token or ""
        self.confirm_timer = None
        self.receiving = None          # the connection whose upload body is arriving
        self.trap_base = 0             # the bridge's trap count when the running module started

    # what handle_upload needs
    @property
    def log(self):
        return self.hub.log

    @property
    def hub_id(self):
        return self.hub.bridge.hub_id if self.hub.bridge is not None else None

    def check(self, wasm):
        self.hub.bridge_mod.check_module(wasm)

    def check_signature(self, wasm):
        self.hub.check_signature(wasm)

    # one upload at a time, as on the board (whose one httpd task reads one request at a time): a
    # second one is refused before its body, so two never race for the free slot
    def begin(self, conn):
        """A POST /module whose headers passed: may its body come? False while another does."""
        if self.receiving is not None and self.receiving is not conn:
            return False
        self.receiving = conn
        return True

    def end(self, conn):
        if self.receiving is conn:
            self.receiving = None

    def swap(self, wasm):
        if self.hub.bridge is None:
            raise RuntimeError("the hub is not running a module")
        replayed = self.hub.bridge.swap(wasm)
        self.module_started()
        return replayed

    def module_started(self):
        """A module starts running: only its own traps count against its trial."""
        b = self.hub.bridge
        self.trap_base = b.traps if b is not None else 0

    # what the router (endpoints.py) calls
    def body_length(self, headers):
        return content_length(headers) or 0

    def precheck(self, method, path, headers):
        if path.split("?", 1)[0] != "/module":
            return self.refuse(path, 404, f"no such endpoint: {method} {path.split('?', 1)[0]} "
                                           "(modules are uploaded with POST /module)")
        if method != "POST":
            return self.refuse(path, 405, f"{method} /module is not supported: use POST")
        refused = precheck(headers, self.token, self.store.slot_bytes)
        return self.refuse(path, *refused) if refused else None

    def __call__(self, method, path, headers, body):
        status, obj = handle_upload(headers, body, self, self.store)
        if status != 200:
            return self.refuse(path, status, obj["error"])
        import asyncio
        info = {"path": str(self.store.slot_path(self.store.running)), "size": obj["bytes"],
                "sha256": obj["sha256"], "source": obj["slot"]}
        self.hub.module_info = info
        self.log.info(f"module swapped: {obj['sha256'][:8]} ({obj['bytes']} bytes), "
                      f"{obj['peersReplayed']} peers kept")
        self.schedule_confirm(asyncio.get_running_loop())
        return status, obj

    def schedule_confirm(self, loop):
        """Confirm the active module once it has run store.confirm_after seconds."""
        if self.confirm_timer is not None:
            self.confirm_timer.cancel()
        self.confirm_timer = loop.call_later(self.store.confirm_after, self._confirm)

    def _confirm(self):
        self.confirm_timer = None
        if not self._give_up_if_trapped():   # a trap since the last tick still counts
            self.store.confirm()

    def check_trial(self):
        """Every tick: only while a module is on trial (its confirmation pending), so a confirmed
        module's traps cost no state file read."""
        return self.confirm_timer is not None and self._give_up_if_trapped()

    def _give_up_if_trapped(self):
        """The module store's policy (ph_store_trial_trapped): a module that trapped while on trial
        is given up and the first module of the boot order that loads is swapped back in live,
        peers kept, as the board does (main/hub_task.c). True when given up."""
        store, b = self.store, self.hub.bridge
        if store is None or b is None:
            return False
        traps = b.traps - self.trap_base
        failed = store.trial_trapped(traps)
        if failed is None:
            return False
        if self.confirm_timer is not None:
            self.confirm_timer.cancel()
            self.confirm_timer = None
        for slot in store.boot_order():
            try:
                wasm = store.open(slot)
                b.swap(wasm)
            except Exception as exc:  # StoreError, BridgeError: the specific reason
                self.log.error(f"module {slot_name(slot)} could not be swapped back in: {exc}")
                if slot != PACKAGED:
                    store.mark_bad(slot)
                continue
            self.module_started()
            path = self.hub.module_path if slot == PACKAGED else store.slot_path(slot)
            self.hub.module_info = {"path": str(path), "size": len(wasm), "source": slot_name(slot),
                                    "sha256": hashlib.sha256(wasm).hexdigest()}
            store.note_fallback(failed, traps, slot)
            return True
        self.log.error(f"no module could be swapped back in: {slot_name(failed)} keeps running")
        return True

    def refuse(self, path, status, reason):
        # The board's send_error() line: "W (..) pigeonhub: /module 403 Forbidden: <reason>".
        self.log.warning(f"{path.split('?', 1)[0]} {status} {REASONS.get(status, 'Error')}: {reason}")
        return status, {"error": reason}

"""`pigeonhub serve`: run hub.wasm on this PC as a real PeerPigeon hub.

The protocol logic is the module; the bridge core (the C extension pigeonhub._bridge, the same C
code as the firmware) runs it in WASM3. This file is only the socket layer: it feeds the bridge the
WebSocket connections (ws.py, on websockets' Sans-I/O layer) that the HTTP router (endpoints.py)
accepted, their frames, pongs and closes, and carries out what the bridge asks for (send, close,
ping, dial a hub link). Everything above that line is shared with the board, which is what makes
tests of the PC hub count for the board.
"""

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import platform
import signal
import socket
import ssl
import sys
import time
from pathlib import Path

from .. import DATA_DIR, __version__, _bridge, event_loop
from ..log import Logger
from . import ws
from .endpoints import REQUEST_TIMEOUT, SERVER_HEADER, HubConnection, Router

DEFAULT_MODULE = DATA_DIR / "hub.wasm"
FORCE_CLOSE_AFTER = 1.0       # s a requested close may wait behind a blocked send before it jumps the queue
SHUTDOWN_GRACE = 3.0          # s for clients to answer the 1001 close on Ctrl-C / reset
LINK_OPEN_TIMEOUT = 10.0      # s for a bootstrap hub to complete the WebSocket handshake


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "examples:\n"
        "  pigeonhub serve                      # ws://127.0.0.1:3000, the packaged hub.wasm\n"
        "  pigeonhub serve --host 0.0.0.0       # reachable from the LAN (browsers, phones)\n"
        "  pigeonhub serve --host 0.0.0.0 --mdns   # ...and found by name: pigeonhub discover\n"
        "  pigeonhub serve --module build/hub.wasm --port 0\n"
        "  pigeonhub serve --port 3001 --bootstrap ws://127.0.0.1:3000/   # link to another hub\n"
        "  pigeonhub serve --host 0.0.0.0 --tls-cert cert.pem --tls-key key.pem   # wss://, https://\n"
        "clients connect to ws://HOST:PORT/?peerId=<40 hex> (wss:// with --tls-cert; any path works).")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 for the LAN)")
    parser.add_argument("--port", type=int, default=3000,
                        help="TCP port (default 3000, as PeerPigeon; 0 = any free port, see the "
                             "'listening on' log line)")
    parser.add_argument("--module", type=Path, default=None,
                        help=f"hub module to run (default: the packaged {DEFAULT_MODULE.name}, "
                             "built from wasm/ first if missing)")
    parser.add_argument("--max-peers", type=int, default=None, metavar="N",
                        help="refuse connection N+1 with 1008 'Maximum connections reached'. "
                             "The default module allows MAX_PEERS peers (/stats server.maxPeers) "
                             "and refuses the next itself; more need a module built with "
                             "`pigeonhub build --max-peers N`")
    parser.add_argument("--device-id", default=None, metavar="S",
                        help="device id the hub id is derived from (default pc-<hostname>-<port>; "
                             "a board uses its MAC address)")
    parser.add_argument("--upload-token", default=None, metavar="T",
                        help="secret for over-the-air module uploads (POST /module, `pigeonhub "
                             "upload --token T`); while unset every upload is refused with 403, "
                             "as on a board without a token")
    parser.add_argument("--module-key", type=Path, default=None, metavar="PUB.pem",
                        help="public key (`pigeonhub keygen KEY` writes KEY.pub): every uploaded "
                             "module must then be signed by its private key (`pigeonhub build --sign "
                             "KEY`); unsigned, wrongly signed or altered ones are refused with 422")
    parser.add_argument("--request-timeout", type=float, default=None, metavar="S",
                        help="seconds an HTTP request, upload body included, has to arrive whole "
                             "(default 10); a stalled upload is then cut off")
    parser.add_argument("--module-dir", type=Path, default=None, metavar="DIR",
                        help="where uploaded modules are kept (two slots + state.json; default "
                             "~/.local/share/pigeonhub/modules). Used when this or --upload-token is "
                             "given: boot then runs the uploaded module, falling back to the previous "
                             "one and then to --module / the packaged one")
    parser.add_argument("--module-confirm-seconds", type=float, default=None, metavar="S",
                        help="an uploaded module counts as good after running this long "
                             "(default 60, as CONFIG_PIGEONHUB_MODULE_CONFIRM_S); one that has not "
                             "when the hub dies is skipped at the next boot")
    parser.add_argument("--bootstrap", action="append", default=[], metavar="URL",
                        help="a hub to link to (ws:// or wss://, e.g. a PigeonHub or another "
                             "pigeonhub serve): clients on both hubs discover and signal each other. "
                             "Repeatable and/or comma-separated, like PigeonHub's BOOTSTRAP_HUBS; a "
                             "URL naming this hub itself is skipped. The module dials each and "
                             "re-dials with backoff when a link drops")
    parser.add_argument("--tls-cert", type=Path, default=None, metavar="CERT",
                        help="serve wss:// and https:// (WebSocket, /health, /stats, the status page, "
                             "POST /module) with this PEM certificate (chain); with --tls-key")
    parser.add_argument("--tls-key", type=Path, default=None, metavar="KEY",
                        help="the certificate's private key (PEM, unencrypted)")
    parser.add_argument("--ca", type=Path, default=None, metavar="FILE",
                        help="also trust this CA certificate (PEM) for wss:// bootstrap hubs, e.g. "
                             "the one that signed a board's self-signed certificate")
    parser.add_argument("--max-links", type=int, default=None, metavar="N",
                        help="hub link slots reserved next to the client slots (default: the "
                             "number of --bootstrap hubs, at least the board's default)")
    parser.add_argument("--mdns", action="store_true",
                        help="advertise the hub on the LAN as pigeonhub-<4 hex of the hub id> "
                             "(mDNS service _pigeonhub._tcp; `pigeonhub discover` lists it). Use with "
                             "--host 0.0.0.0: a hub on 127.0.0.1 is advertised on loopback only")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print debug lines (connections opened/closed)")


def run(args, hub_class=None) -> int:
    """`pigeonhub serve`; hub_class: PcHub (default) or a subclass, e.g. test/embedded/pc_twin.py's,
    which adds a board-like serial console."""
    log = Logger(level="D" if getattr(args, "verbose", False) else "I")
    if args.max_peers is not None and args.max_peers < 1:
        log.error(f"--max-peers must be at least 1, not {args.max_peers}")
        return 2
    if not 0 <= args.port <= 65535:
        log.error(f"--port must be 0..65535, not {args.port}")
        return 2
    try:
        args.bootstrap_urls = parse_bootstrap(getattr(args, "bootstrap", None) or [])
    except ValueError as exc:
        log.error(f"--bootstrap: {exc}")
        return 2
    token = getattr(args, "upload_token", None)
    if token is not None and not _bridge.UPLOAD_TOKEN_MIN <= len(token) <= _bridge.UPLOAD_TOKEN_MAX:
        log.error(f"--upload-token must be {_bridge.UPLOAD_TOKEN_MIN} to {_bridge.UPLOAD_TOKEN_MAX} "
                  f"characters (as a board's console `token`), not {len(token)}")
        return 2
    args.tls_context, args.tls_summary = None, None
    if getattr(args, "tls_cert", None) is not None or getattr(args, "tls_key", None) is not None:
        from .tls import TlsError, load_identity
        try:
            args.tls_context, args.tls_summary = load_identity(args.tls_cert, args.tls_key)
        except TlsError as exc:
            log.error(str(exc))
            return 2
    args.client_tls = None
    if getattr(args, "ca", None) is not None:
        try:
            args.client_tls = ws.client_ssl_context(args.ca)
        except (OSError, ValueError) as exc:   # ssl.SSLError is an OSError
            log.error(f"--ca {args.ca} is not a readable PEM CA certificate "
                      f"({getattr(exc, 'strerror', None) or exc}); give the CA's certificate file")
            return 2
    max_links = getattr(args, "max_links", None)
    if max_links is not None and not 0 <= max_links <= _bridge.MAX_LINKS:
        log.error(f"--max-links must be 0..{_bridge.MAX_LINKS}, not {max_links}")
        return 2
    timeout = getattr(args, "request_timeout", None)
    if timeout is not None and not 0 < timeout <= 3600:
        log.error(f"--request-timeout must be more than 0 and at most 3600 s, not {timeout:g}")
        return 2
    args.module_public_key = None
    if getattr(args, "module_key", None) is not None:
        from ..module.signing import KeyFileError, load_public_key
        try:
            args.module_public_key = load_public_key(args.module_key)
        except KeyFileError as exc:
            log.error(f"--module-key: {exc}")
            return 2
    module_path = args.module if args.module is not None else DEFAULT_MODULE
    if args.module is None and not module_path.exists():
        try:
            from ..module.build import build_module
            log.info(f"{module_path.name} not found: building it from wasm/")
            build_module(module_path)
        except Exception as exc:  # any build failure ends here with its own message
            log.error(f"cannot build {module_path}: {exc}")
            return 2
    if not module_path.is_file():
        log.error(f"cannot load module {module_path}: no such file")
        return 2
    hub = (hub_class or PcHub)(_bridge, module_path, args, log)
    try:
        return event_loop.run(hub.main())
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


def parse_bootstrap(values):
    """--bootstrap values (each may be a comma-separated list) -> [URL]; ValueError says which
    entry is wrong. Empty entries are dropped (a trailing comma is harmless)."""
    from urllib.parse import urlsplit
    urls = []
    for value in values:
        for url in (part.strip() for part in value.split(",")):
            if not url:
                continue
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 — raises ValueError for a bad port
            except ValueError as exc:
                raise ValueError(f"{url!r} is not a valid URL ({exc})") from None
            if parts.scheme not in ("ws", "wss") or not parts.hostname:
                raise ValueError(f"{url!r} is not a ws:// or wss:// URL with a host")
            if len(url) > _bridge.MAX_BOOTSTRAP_URL:
                raise ValueError(f"{url[:40]}... is {len(url)} characters long; at most "
                                 f"{_bridge.MAX_BOOTSTRAP_URL}")
            if url not in urls:
                urls.append(url)
    return urls


_LOOPBACK = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


def _is_self(url, bind_host, port):
    """Does url name this hub (the reference skips a bootstrap URI whose host and port are its
    own)? Loopback names count as the same host, and so does any name when bound to all
    interfaces with a loopback or this machine's host name."""
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    url_port = parts.port or (443 if parts.scheme == "wss" else 80)
    if url_port != port:
        return False
    host = (parts.hostname or "").lower()
    bind = bind_host.lower().strip("[]")
    if host == bind:
        return True
    local = _LOOPBACK | {socket.gethostname().lower()}
    if bind in ("0.0.0.0", "::", ""):
        return host in local or host.startswith("127.")
    return (host in _LOOPBACK or host.startswith("127.")) and (bind in _LOOPBACK or bind.startswith("127."))


def _public_url(url):
    """The dialed URL without its query (the module appends ?peerId=<our hub id>) for log lines."""
    return url.split("?", 1)[0]


class BootError(Exception):
    """Boot failed; the message is already the user-facing reason."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


class Connection:
    """One WebSocket and the bridge's id for it: accepted, or an outgoing hub link (url set; ws
    stays None while it is dialing). It is its socket's handler (ws.py)."""

    __slots__ = ("hub", "ws", "conn", "close_requested", "gone", "url", "dialer")

    def __init__(self, hub, ws, conn, url=None):
        self.hub = hub
        self.ws = ws
        self.conn = conn
        self.close_requested = False
        self.gone = False              # b.closed() was called: no more b.* calls for this id
        self.url = url                 # hub links: the URL the module dialed
        self.dialer = None             # hub links: the task running the attempt

    def ws_message(self, _ws, data):
        hub = self.hub
        b = hub.bridge
        if self.gone or b is None or self.conn is None:
            return
        totals = hub.totals
        totals["frames_in"] += 1
        totals["bytes_in"] += len(data)
        if self.close_requested:
            return  # the module is done with it; frames racing the close are dropped
        # b.frame() checks the size itself (too big: closed 1009, the frame dropped), so no
        # separate accepts() call; called directly, not through _call(): once per frame.
        try:
            b.frame(self.conn, data)
        except Exception as exc:  # noqa: BLE001 — as _call(): logged, never fatal
            hub.log.error(f"bridge.frame failed: {type(exc).__name__}: {exc}")

    def ws_sent(self, _ws, nbytes, written):
        if written:
            self.hub.totals["frames_out"] += 1
            self.hub.totals["bytes_out"] += nbytes
        if self.conn is not None and not self.gone:
            self.hub._call("sent", self.conn, nbytes)

    def ws_pong(self, _ws):
        if not self.gone and self.conn is not None:
            self.hub._call("pong", self.conn)

    def ws_closed(self, ws):
        if self.conn is None or self.gone:
            return
        self.gone = True
        hub = self.hub
        hub.conns.pop(self.conn, None)
        hub._call("closed", self.conn)
        hub.log.debug(f"conn {self.conn} closed {ws.close_code} {ws.close_reason or ''}".rstrip())


class PcHub:
    """The PC transport of the bridge core. Its send/close/ping/connect/device_id methods are the
    transport callbacks (the clocks are the extension's own, see _Transport); the bridge calls them
    synchronously on the loop thread."""

    def __init__(self, bridge_mod, module_path, args, log):
        self.bridge_mod = bridge_mod
        self.module_path = Path(module_path)
        self.args = args
        self.log = log
        self.bridge = None
        self.server = None
        self.router = None
        self.port = args.port
        self.conns = {}                # bridge conn id -> Connection
        self.opening = None            # the Connection whose b.open() is running
        self.waiting = []              # (socket, request): upgrades that came before the bridge ran
        self.ready = None              # asyncio.Event: bridge started, handlers may call b.open
        self.started = time.monotonic()
        self.module_info = {}
        self.store = None              # module_store.ModuleStore when uploads/slots are on
        self.uploads = None            # ota.UploadService (POST /module)
        upload_token = getattr(args, "upload_token", None)
        module_dir = getattr(args, "module_dir", None)
        if upload_token or module_dir is not None:
            from .module_store import DEFAULT_CONFIRM_SECONDS, ModuleStore
            confirm = getattr(args, "module_confirm_seconds", None)
            self.store = ModuleStore(module_dir, packaged=self.module_path, log=log,
                                     confirm_after=DEFAULT_CONFIRM_SECONDS if confirm is None else confirm)
        self.stop_event = None
        self.reset_requested = None    # asyncio.Event made by main(): setting it resets the hub
        self.tasks = set()
        self.totals = {"connections": 0, "refused": 0, "frames_in": 0, "frames_out": 0,
                       "bytes_in": 0, "bytes_out": 0, "link_attempts": 0, "link_failures": 0}
        self.bootstrap = list(getattr(args, "bootstrap_urls", None) or [])  # after self-skip: boot()
        self.bootstrap_skipped = []
        self.link_errors = {}          # URL without query -> last failure text (for /stats)
        self.advertiser = None         # mdns.Advertiser with --mdns

    # ---- transport callbacks (called by the bridge, on the loop thread, must not block) ---------

    def _lookup(self, conn):
        c = self.conns.get(conn)
        if c is None and self.opening is not None and self.opening.conn in (None, conn):
            c = self.opening
            c.conn = conn
            self.conns[conn] = c
        return c

    def send(self, conn, frame):
        """frame: bytes, the module's text. Returns 1 when it was written at once (the bridge then
        counts it sent itself: no b.sent() call), 0 when queued behind a congested socket (b.sent()
        follows once it is written or dropped), -1 when the connection is gone."""
        c = self.conns.get(conn) or self._lookup(conn)   # per frame: the common case inline
        if c is None or c.gone or c.close_requested or c.ws is None:
            return -1  # per ph_transport_ops.send: <0 = connection already gone, frame not taken
        rc = c.ws.send(frame)
        if rc == 1:
            totals = self.totals
            totals["frames_out"] += 1
            totals["bytes_out"] += len(frame)
        return rc

    def close(self, conn, code, reason):
        c = self._lookup(conn)
        if c is None or c.gone or c.close_requested:
            return
        c.close_requested = True
        if c.ws is None:               # a hub link still dialing: give the attempt up
            if c.dialer is not None:
                c.dialer.cancel()
            return
        # A close behind frames a client does not read (the 1013 case) jumps the queue after a
        # short grace.
        c.ws.close(code, reason, grace=FORCE_CLOSE_AFTER)

    def ping(self, conn):
        c = self._lookup(conn)
        if c is None or c.gone or c.close_requested or c.ws is None:
            return -1
        return c.ws.ping()

    def connect(self, conn, url):
        """Dial a hub link for the module (ws_connect): one attempt; the module re-dials."""
        c = Connection(self, None, conn, url=url)
        self.conns[conn] = c
        self.totals["link_attempts"] += 1
        self.log.info(f"connecting to bootstrap hub {_public_url(url)}")
        c.dialer = self._spawn(self._dial(c))
        return 0

    def device_id(self):
        return self.args.device_id or f"pc-{socket.gethostname()}-{self.port}"

    # ---- signed modules (serve --module-key) -------------------------------------------------------

    def check_signature(self, wasm):
        """Raises BridgeError with ph_module_sig.c's reason when a module key is set and wasm is not
        signed by it; without a key every module passes (a signature section is ignored)."""
        key = getattr(self.args, "module_public_key", None)
        if key is None:
            return
        from ..module.signing import key_id, verifier
        self.bridge_mod.check_signature(wasm, key_id(key), verifier(key))

    def _warn_unsigned_packaged(self, exc):
        """--module / the packaged module is the operator's own file, as the board's embedded module
        is part of its firmware: it runs even when the key did not sign it, with a warning."""
        self.log.warning(f"the packaged module {self.module_path.name} runs although {exc} "
                         "(sign it with `pigeonhub build --sign KEY`)")

    # ---- boot / shutdown -------------------------------------------------------------------------

    def _load_module(self):
        try:
            wasm = self.module_path.read_bytes()
        except OSError as exc:
            raise BootError(f"cannot load module {self.module_path}: {exc.strerror or exc}")
        self.module_info = {"path": str(self.module_path), "size": len(wasm),
                            "sha256": hashlib.sha256(wasm).hexdigest()}
        return wasm

    def _boot_from_store(self, slots):
        """The firmware's load_boot_module(): active uploaded slot -> previous -> packaged; the
        first that loads wins, a slot that does not is marked bad (never tried again)."""
        from .module_store import PACKAGED, StoreError, slot_name
        store, log = self.store, self.log
        for slot in store.boot_order():
            name = slot_name(slot)
            try:
                wasm = store.open(slot)
            except StoreError as exc:
                log.warning(f"module {name} skipped: {exc}")
                store.mark_bad(slot)
                continue
            path = self.module_path if slot == PACKAGED else store.slot_path(slot)
            try:
                self.check_signature(wasm)
            except self.bridge_mod.BridgeError as exc:
                if slot != PACKAGED:   # uploaded: only what the key signed runs
                    log.warning(f"module {name} refused: {exc}")
                    store.mark_bad(slot)
                    continue
                self._warn_unsigned_packaged(exc)
            try:
                bridge = self.bridge_mod.Bridge(wasm, _Transport(self), max_connections=slots,
                                                **self._link_options())
            except self.bridge_mod.BridgeError as exc:
                if slot == PACKAGED:
                    raise BootError(f"cannot load module {path}: {exc}")
                log.error(f"module {name} refused: {exc}")
                store.mark_bad(slot)
                continue
            store.note_boot(slot)
            self.module_info = {"path": str(path), "size": len(wasm), "source": name,
                                "sha256": hashlib.sha256(wasm).hexdigest()}
            return bridge, path
        raise BootError("no module could be loaded")   # not reached: PACKAGED raises above

    async def boot(self):
        """Load the module, listen, start the hub; the boot log is what a board prints."""
        log = self.log
        log.info(f"PigeonHub-WASM {__version__} PC hub (Python {platform.python_version()}, "
                 f"websockets {_websockets_version()})")
        key = getattr(self.args, "module_public_key", None)
        if key is not None:
            from ..module.signing import key_id
            log.info(f"module key {key_id(key).hex()}: only modules signed by it are accepted")
        if self.store is None:
            wasm = self._load_module()
            try:
                self.check_signature(wasm)
            except self.bridge_mod.BridgeError as exc:
                self._warn_unsigned_packaged(exc)
        self.ready = asyncio.Event()
        if self.server is None:
            await self._listen()
        slots = (self.args.max_peers if self.args.max_peers is not None
                 else self.bridge_mod.DEFAULTS["max_connections"])
        self._pick_bootstrap()
        if self.store is not None:
            self.bridge, path = self._boot_from_store(slots)
        else:
            path = self.module_path
            try:
                self.bridge = self.bridge_mod.Bridge(wasm, _Transport(self), max_connections=slots,
                                                     **self._link_options())
            except self.bridge_mod.BridgeError as exc:
                raise BootError(f"cannot load module {self.module_path}: {exc}")
        self.uploads.module_started()
        info = self.module_info
        log.info(f"module {path.name} loaded: {info['size']} bytes, "
                 f"sha256 {info['sha256']}")
        if self.store is not None:
            log.info(f"module source: {info['source']} (module dir {self.store.directory})")
            if self.store.running >= 0 and self.store.needs_confirm():
                self.uploads.schedule_confirm(asyncio.get_running_loop())
        log.info(f"hub id {self.bridge.hub_id}")
        if self.args.max_peers is not None:
            log.info(f"max peers {self.args.max_peers} (beyond: 1008 Maximum connections reached)")
        if self.bootstrap:
            log.info(f"bootstrap hubs: {', '.join(self.bootstrap)} "
                     f"({self._link_options()['max_links']} link slots)")
        rc = self._call("start", self.port)
        if rc is None or rc < 0:
            raise BootError(f"the module refused to start on port {self.port} (start_server -> {rc})",
                            code=1)
        self.ready.set()
        self._release_waiting()
        tls = getattr(self.args, "tls_context", None) is not None
        if tls:   # the board's line (main/http_endpoints.c)
            log.info(f"HTTPS server on port {self.port} (TLS, certificate {self.args.tls_summary})")
        log.info(f"listening on {'wss' if tls else 'ws'}://{_url_host(self.args.host)}:{self.port}")
        # The two lines a board prints (main/wifi.c, main/hub_task.c): tests and users key on them.
        log.info(f"IPv4 address: {_ipv4_address(self.args.host)}")
        log.info(f"WebSocket server listening on port {self.port}")

    def _pick_bootstrap(self):
        """The --bootstrap URLs minus this hub itself (known once the port is bound)."""
        keep, self.bootstrap_skipped = [], []
        for url in getattr(self.args, "bootstrap_urls", None) or []:
            if _is_self(url, self.args.host, self.port):
                self.bootstrap_skipped.append(url)
                self.log.info(f"bootstrap hub {url} is this hub itself: skipped")
            else:
                keep.append(url)
        self.bootstrap = keep

    def _link_options(self):
        max_links = getattr(self.args, "max_links", None)
        if max_links is None:
            max_links = min(self.bridge_mod.MAX_LINKS,
                            max(self.bridge_mod.DEFAULTS["max_links"], len(self.bootstrap)))
        return {"bootstrap": self.bootstrap, "max_links": max_links}

    async def _listen(self):
        from .ota import UploadService
        # POST /module on the same port as the WebSocket hub, as on a board (pigeonhub/hub/ota.py).
        self.uploads = UploadService(self, self.store, getattr(self.args, "upload_token", None))
        timeout = getattr(self.args, "request_timeout", None)
        self.router = router = Router(self, self.uploads,
                                      timeout if timeout is not None else REQUEST_TIMEOUT)
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(lambda: HubConnection(router), self.args.host,
                                                   self.port,
                                                   ssl=getattr(self.args, "tls_context", None))
        except OSError as exc:
            raise BootError(f"cannot listen on {self.args.host}:{self.port}: {exc.strerror or exc}",
                            code=1)
        self.port = self.server.sockets[0].getsockname()[1]

    async def shutdown(self, close_listener=True):
        """Close every connection 1001 "Server shutting down" (the module's stop_server does it),
        wait briefly for the handshakes, then stop listening."""
        if self.bridge is not None:
            self.ready.clear()
            self._call("stop")
            deadline = time.monotonic() + SHUTDOWN_GRACE + FORCE_CLOSE_AFTER
            while self.conns and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for c in list(self.conns.values()):  # peers that never answered the close
                if c.ws is not None:
                    c.ws.abort()
                elif c.dialer is not None:
                    c.dialer.cancel()
            while self.conns and time.monotonic() < deadline + 1:
                await asyncio.sleep(0.02)
            self.bridge = None
        if close_listener and self.server is not None:
            self.server.close()
            for sock in list(self.router.sockets):   # requests still being read, refused sockets
                sock.abort()
            await self.server.wait_closed()
            self.server = None

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        self.reset_requested = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop_event.set)
            except (NotImplementedError, RuntimeError):  # not on this platform: Ctrl-C still works
                pass
        try:
            await self.boot()
        except BootError as exc:
            self.log.error(str(exc))
            await self.shutdown()
            return exc.code
        if getattr(self.args, "mdns", False) and not await self._advertise():
            await self.shutdown()
            return 2
        ticker = self._spawn(self._tick_loop())
        while True:
            stop = asyncio.ensure_future(self.stop_event.wait())
            reset = asyncio.ensure_future(self.reset_requested.wait())
            await asyncio.wait({stop, reset}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            reset.cancel()
            if self.stop_event.is_set():
                break
            self.reset_requested.clear()
            if not await self._reset():
                ticker.cancel()
                if self.advertiser is not None:
                    await self.advertiser.stop()
                await self.shutdown()
                return 1
        ticker.cancel()
        if self.advertiser is not None:   # first, so nobody is sent to a hub that is closing
            await self.advertiser.stop()
        await self.shutdown()
        if self.store is not None:
            self.store.clean_shutdown()   # a stop on purpose is not the module's fault
        t = self.totals
        self.log.info(f"stopped after {time.monotonic() - self.started:.1f} s: "
                      f"{t['connections']} connections ({t['refused']} refused), "
                      f"{t['frames_in']} frames in, {t['frames_out']} frames out")
        return 0

    async def _advertise(self) -> bool:
        """--mdns: the service is advertised once for the process (a console reset keeps port
        and hub id, hence the name); registration probes in the background."""
        from ..mdns import Advertiser, MdnsError
        self.advertiser = Advertiser(self.log, self.bridge.hub_id, self.args.host, self.port,
                                     self.bridge_mod.ABI_VERSION)
        try:
            addresses = self.advertiser.prepare()
        except MdnsError as exc:
            self.log.error(f"--mdns: {exc}")
            self.advertiser = None
            return False
        self._spawn(self.advertiser.register(addresses))
        return True

    async def _reset(self) -> bool:
        """What a board does on reset: drop every connection, boot again from the module file
        (picking up a replaced module), print the boot log, keep the port and hence the hub id."""
        self.log.info("reset requested on the console")
        await self.shutdown(close_listener=False)
        self.started = time.monotonic()
        self.log.start = self.started  # millis restart at 0, as on a board
        try:
            await self.boot()
        except BootError as exc:
            self.log.error(str(exc))
            return False
        return True

    # ---- connections -----------------------------------------------------------------------------

    def upgrade(self, sock, request):
        """The router's WebSocket requests: answered once the bridge runs (until then, during
        boot or a reset, they wait)."""
        if not self.ready.is_set():
            self.waiting.append((sock, request))
            return
        if not sock.upgrade():
            self.log.debug(f"websocket handshake refused from {_peer_addr(sock)}: {sock.refusal()}")
            return
        c = Connection(self, sock, None)
        # The module answers inside open() (on_peer_connected sends `connected`, or closes a bad
        # id): callbacks for a not yet known id during open() belong to this connection.
        self.opening = c
        try:
            conn = self._call("open", request.target)   # path + query, as the client sent it
        finally:
            self.opening = None
        self.totals["connections"] += 1
        if conn is None or conn < 0:
            self.totals["refused"] += 1
            sock.start(c)                # frames racing the 1008 are not the module's
            sock.close(self.bridge_mod.CLOSE_POLICY, self.bridge_mod.REASON_FULL)
            return
        c.conn = conn
        self.conns[conn] = c
        self.log.debug(f"conn {conn} open {request.target} from {_peer_addr(sock)}")
        sock.start(c)

    def _release_waiting(self):
        waiting, self.waiting = self.waiting, []
        for sock, request in waiting:
            if not sock._lost:
                self.upgrade(sock, request)

    async def _dial(self, c):
        """One attempt at a hub link (transport.connect): open -> b.link_open + frames; refused,
        unreachable, timed out or given up by the module -> b.closed (its on_peer_disconnected;
        the module decides when to dial again)."""
        public = _public_url(c.url)
        try:
            c.ws = await ws.dial(c.url, LINK_OPEN_TIMEOUT, user_agent=SERVER_HEADER,
                                 ssl_context=getattr(self.args, "client_tls", None))
        except asyncio.CancelledError:
            c.ws = None
            self.log.debug(f"hub link {public}: attempt given up")
        except Exception as exc:  # noqa: BLE001 — refused, DNS, timeout, bad handshake: all one outcome
            c.ws = None
            self.totals["link_failures"] += 1
            reason = _link_error(exc)
            self.link_errors[public] = reason
            self.log.warning(f"bootstrap hub {public} unreachable: {reason}")
        if c.ws is None:
            c.gone = True
            self.conns.pop(c.conn, None)
            self._call("closed", c.conn)
            return
        self.link_errors.pop(public, None)
        if c.close_requested or c.gone or self.bridge is None:
            c.ws.start(c)               # its close reaches ws_closed -> b.closed
            c.ws.close(1001, "Server shutting down")
            return
        self.totals["connections"] += 1
        self.log.debug(f"conn {c.conn} hub link open {public} to {_peer_addr(c.ws)}")
        self._call("link_open", c.conn)
        c.ws.start(c)

    async def _tick_loop(self):
        while True:
            await asyncio.sleep(1.0)
            if self.bridge is not None and self.ready.is_set():
                self._call("tick")
                try:
                    self.uploads.check_trial()
                except Exception as exc:  # noqa: BLE001 — e.g. a state file that cannot be written
                    self.log.error(f"module trial check failed: {type(exc).__name__}: {exc}")

    # ---- HTTP (same port, as the reference; endpoints.py routes) --------------------------------

    def module_stats(self):
        if self.bridge is None:
            return {}
        try:
            return json.loads(self.bridge.stats())
        except (ValueError, self.bridge_mod.BridgeError) as exc:
            self.log.warning(f"bridge stats unreadable: {exc}")
            return {}

    def health(self):
        stats = self.module_stats()
        module = stats.get("module", {}) if isinstance(stats.get("module"), dict) else {}
        b = self.bridge
        memory = {"rss": _rss_bytes()}
        bridge = stats.get("bridge") if isinstance(stats.get("bridge"), dict) else {}
        for key, value in bridge.items():  # the bridge's memory figures, whatever it reports
            if "memory" in key.lower() or key.lower().endswith("bytes"):
                memory[key] = value
        return {
            "status": "healthy" if b is not None else "starting",
            "timestamp": _iso_now(),
            "uptime": round(time.monotonic() - self.started, 6),
            "isHub": True,
            "connections": b.connection_count if b else 0,
            "peers": b.peer_count if b else 0,
            "hubs": _int(module.get("hubs")),
            "networks": _int(module.get("networks")),
            "memory": memory,
        }

    def stats(self):
        stats = self.module_stats()
        module = stats.get("module") if isinstance(stats.get("module"), dict) else {}
        stats["module"] = {**module, **self.module_info}
        if self.store is not None:
            stats["module"]["trialFailure"] = self.store.trial_failure()
        b = self.bridge
        stats["links"] = self._links(module, stats.get("bridge"))
        stats.update({
            "hubId": b.hub_id if b else None,
            "uptime": round(time.monotonic() - self.started, 6),
            # the status page's figures, in the board's shape: the bridge's peer list, and this
            # process's memory where a board gives its heap
            "peers": self._peers(),
            "memory": {"rss": _rss_bytes()},
            "server": {
                "version": __version__,
                "host": self.args.host,
                "port": self.port,
                "maxPeers": self.args.max_peers if self.args.max_peers is not None
                else self.bridge_mod.MAX_PEERS,
                "inputBufferSize": b.input_buffer_size if b else None,
                "connections": b.connection_count if b else 0,
                "peers": b.peer_count if b else 0,
                "totals": dict(self.totals),
                "bootstrap": list(self.bootstrap),
                "bootstrapSkipped": list(self.bootstrap_skipped),
            },
        })
        return stats

    def _peers(self):
        """The bridge's open accepted connections (docs/PROTOCOL.md §10, /stats "peers")."""
        if self.bridge is None:
            return []
        try:
            return json.loads(self.bridge.peers())
        except (ValueError, RuntimeError) as exc:
            self.log.warning(f"bridge peer list unreadable: {exc}")
            return []

    def _links(self, module, bridge):
        """One entry per hub link: the module's view (state incl. backoff, peers learned, frames
        relayed, reconnects) merged with the bridge's (conn, frames in/out) and the last
        transport error. Matched by URL (the bridge's carries the module's ?peerId=...)."""
        mod_links = module.get("links") if isinstance(module.get("links"), list) else []
        br_links = bridge.get("links") if isinstance(bridge, dict) and isinstance(bridge.get("links"), list) else []
        out, used = [], set()
        for ml in mod_links:
            if not isinstance(ml, dict):
                continue
            entry = dict(ml)
            url = str(ml.get("url", ""))
            for i, bl in enumerate(br_links):
                if i not in used and (bl.get("url") == url or _public_url(bl.get("url", "")) == _public_url(url)):
                    used.add(i)
                    entry.update({"conn": bl.get("conn"), "framesIn": bl.get("framesIn"),
                                  "framesOut": bl.get("framesOut"), "socket": bl.get("state")})
                    break
            if _public_url(url) in self.link_errors:
                entry["lastError"] = self.link_errors[_public_url(url)]
            out.append(entry)
        for i, bl in enumerate(br_links):   # a module that does not report links (or not this one)
            if i not in used:
                entry = {"url": bl.get("url"), "state": bl.get("state"), "conn": bl.get("conn"),
                         "framesIn": bl.get("framesIn"), "framesOut": bl.get("framesOut"),
                         "socket": bl.get("state")}
                if _public_url(bl.get("url", "")) in self.link_errors:
                    entry["lastError"] = self.link_errors[_public_url(bl.get("url", ""))]
                out.append(entry)
        return out

    # ---- helpers -----------------------------------------------------------------------------

    def _call(self, name, *args):
        """Every bridge call goes through here: a bridge error is logged, never fatal to the hub."""
        b = self.bridge
        if b is None:
            return None
        try:
            return getattr(b, name)(*args)
        except Exception as exc:  # noqa: BLE001 — one bad call must not stop serving the others
            self.log.error(f"bridge.{name} failed: {type(exc).__name__}: {exc}")
            return None

    def _spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


class _Transport:
    """The object handed to the bridge: forwards to the hub, with the module's log lines printed
    at the module's own level."""

    def __init__(self, hub):
        self.send = hub.send
        self.connect = hub.connect
        self.close = hub.close
        self.ping = hub.ping
        # None: the extension's own clocks (millis from the Bridge's creation, as a board counts
        # from boot), not a Python call each; the module asks for both on every frame.
        self.millis = None
        self.wall_clock_ms = None
        self.device_id = hub.device_id
        self._hub = hub

    def log(self, level, msg):
        self._hub.log.line(level, msg)


def _iso_now():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource  # not Linux: peak instead of current (KiB on Linux, bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _int(value):
    return value if isinstance(value, int) else 0


def _ipv4_address(host):
    """The address peers on the LAN would use: the bound one, or this machine's for a wildcard."""
    if host not in ("0.0.0.0", "", "::"):
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _url_host(host):
    return f"[{host}]" if ":" in host else host


def _peer_addr(sock):
    addr = sock.remote
    return f"{addr[0]}:{addr[1]}" if addr else "?"


def _link_error(exc):
    """A short reason for a failed link attempt: "connection refused", "timed out", "HTTP 404"."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"no handshake within {LINK_OPEN_TIMEOUT:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate not trusted ({exc.verify_message}): pass its CA with --ca")
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code} instead of a WebSocket handshake"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"{type(exc).__name__}: {exc}"


def _websockets_version():
    try:
        import websockets
        return websockets.__version__
    except Exception:  # noqa: BLE001
        return "?"

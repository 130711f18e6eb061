"""`pigeonhub upload`: send a hub module to a running hub (a board, or `pigeonhub serve`) over the air.

    pigeonhub upload --host 192.168.1.50 --token SECRET build/hub.wasm
    pigeonhub upload --host 192.168.1.50 --ca ca.pem --token SECRET build/hub.wasm   # https://
    pigeonhub upload --host pigeonhub-ab12 --token SECRET build/hub.wasm   # a name from `pigeonhub discover`

The file is checked here first (WebAssembly header, size against a 64 KiB module slot, the exports
of wasm/pigeonhub_abi.h, and, when the bridge extension is built, the bridge's own load checks), then
streamed to POST /module (main/http_endpoints.c) with its SHA-256. The hub checks it again, swaps it in
place and keeps every connected peer.

Exit status:
    0  the module is active on the hub
    2  the file cannot be uploaded (missing, not a hub module, too big) — nothing was sent
    3  the hub refused the upload token (HTTP 403), or uploads are disabled on it
    4  the hub rejected the module (HTTP 400/411/413/422: the hub's reason is printed)
    5  the hub could not switch modules (HTTP 5xx) or another upload was in progress (HTTP 409);
       its previous module keeps running
    6  something answered at HOST:PORT, but not a PigeonHub
    7  the hub cannot be reached (connection refused, timeout, unknown host, a name no hub answers to)
"""

import argparse
import hashlib
import http.client
import os
import json
import socket
import ssl
import sys
from pathlib import Path

from .hub.module_store import SLOT_BYTES

DEFAULT_PORT = 3000
CHUNK = 1024                  # bytes per write: the bar moves smoothly over Wi-Fi
DEFAULT_TIMEOUT = 30.0        # s per socket operation; a board checks and swaps in well under that
IP_HINT = "is the board on this network? check its IP in the serial log line 'IPv4 address: ...'"

EXIT_OK, EXIT_LOCAL, EXIT_TOKEN, EXIT_REJECTED, EXIT_HUB_FAILED, EXIT_NOT_A_HUB, EXIT_UNREACHABLE = (
    0, 2, 3, 4, 5, 6, 7)


class UploadError(Exception):
    """An upload failed; `problem` says what, `fix` what to do, `exit_code` as documented above."""

    def __init__(self, problem, fix, exit_code, status=None):
        super().__init__(problem)
        self.problem, self.fix, self.exit_code, self.status = problem, fix, exit_code, status


def check_module_file(path) -> bytes:
    """The file's bytes if it looks like a hub module this hub can take; UploadError otherwise."""
    path = Path(path)
    try:
        wasm = path.read_bytes()
    except OSError as exc:
        raise UploadError(f"cannot read {path}: {exc.strerror or exc}",
                          "give the path of a built module (pigeonhub build writes pigeonhub/data/hub.wasm)",
                          EXIT_LOCAL)
    rebuild = "rebuild it with `pigeonhub build` and inspect it with `pigeonhub info`"
    if wasm[:4] != b"\0asm":
        raise UploadError(f"{path} is not a WebAssembly module (it starts with {wasm[:4].hex(' ') or 'nothing'}, "
                          "expected 00 61 73 6d)", rebuild, EXIT_LOCAL)
    if len(wasm) > SLOT_BYTES:
        raise UploadError(f"{path} is {len(wasm)} bytes; a module slot holds {SLOT_BYTES}", rebuild,
                          EXIT_LOCAL)
    from .module.build import WasmFormatError, inspect_module, parse_abi_header
    try:
        info = inspect_module(wasm)
    except (WasmFormatError, IndexError, ValueError) as exc:
        raise UploadError(f"{path} is not a valid WebAssembly module: {exc}", rebuild, EXIT_LOCAL)
    try:
        abi = parse_abi_header()
    except (OSError, ValueError):
        abi = None   # installed without the sources: the hub checks the exports itself
    if abi is not None:
        missing = sorted(set(abi.exports) - info.export_names("func"))
        if missing:
            raise UploadError(f"{path} is not a hub module: it has no export {', '.join(missing)} "
                              f"(ABI v{abi.version})", rebuild, EXIT_LOCAL)
    try:
        from . import _bridge
    except ImportError:
        _bridge = None
    if _bridge is not None:
        try:
            _bridge.check_module(wasm)   # exactly what the hub will check (ABI version, init()...)
        except _bridge.BridgeError as exc:
            raise UploadError(f"{path} would be rejected by the hub: {exc}", rebuild, EXIT_LOCAL)
    return wasm


class _Progress:
    """A plain progress bar on stderr: `upload [########........]  45%  7168/16338 bytes`."""

    def __init__(self, total, stream=None, width=30):
        self.total, self.stream, self.width = total, stream or sys.stderr, width

    def update(self, done):
        filled = self.width * done // self.total if self.total else self.width
        pct = 100 * done // self.total if self.total else 100
        self.stream.write(f"\rupload [{'#' * filled}{'.' * (self.width - filled)}] {pct:3d}%  "
                          f"{done}/{self.total} bytes")
        self.stream.flush()

    def finish(self):
        self.stream.write("\n")
        self.stream.flush()


def _unreachable(host, port, exc):
    if isinstance(exc, ssl.SSLCertVerificationError):
        return UploadError(f"the hub at {host}:{port} has a TLS certificate this PC does not trust "
                           f"({exc.verify_message})",
                           "pass the CA certificate that signed it with --ca (for a self-signed "
                           "board certificate: the file you provisioned it from)", EXIT_UNREACHABLE)
    if isinstance(exc, ssl.SSLError):
        return UploadError(f"TLS handshake with {host}:{port} failed ({exc.reason or exc})",
                           "drop --tls/--ca if the hub serves plain http:// (its log says "
                           "'listening on ws://')", EXIT_UNREACHABLE)
    what = ("connection refused" if isinstance(exc, ConnectionRefusedError)
            else "timed out" if isinstance(exc, (socket.timeout, TimeoutError))
            else "unknown host" if isinstance(exc, socket.gaierror)
            else getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
    return UploadError(f"cannot reach the hub at {host}:{port}: {what}",
                       f"{IP_HINT}; a PC hub needs `pigeonhub serve --upload-token T` on that port",
                       EXIT_UNREACHABLE)


def upload_module(host, token, path, port=DEFAULT_PORT, progress=True, timeout=DEFAULT_TIMEOUT,
                  stream=None, tls=False, ca=None) -> dict:
    """Upload the module at `path` to the hub at host:port. Returns the hub's JSON answer
    ({"ok": true, "sha256", "bytes"/"size", "slot", "peersReplayed" (PC hub)...}); raises
    UploadError (problem, fix, exit_code) on any failure. Used by the CLI and by the PlatformIO
    target (scripts/pio_support.py). tls (or a CA file `ca`): https://, trusting the system's CAs
    and `ca`."""
    wasm = check_module_file(path)
    sha = hashlib.sha256(wasm).hexdigest()
    if tls or ca is not None:
        from .hub.ws import client_ssl_context
        try:
            context = client_ssl_context(ca)
        except (OSError, ValueError) as exc:
            raise UploadError(f"cannot use --ca {ca}: {getattr(exc, 'strerror', None) or exc}",
                              "give the CA certificate file (PEM)", EXIT_LOCAL)
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    bar = _Progress(len(wasm), stream) if progress else None
    sent_all = False
    try:
        try:
            conn.putrequest("POST", "/module", skip_accept_encoding=True)
            conn.putheader("Authorization", f"Bearer {token or ''}")
            conn.putheader("X-Module-SHA256", sha)
            conn.putheader("Content-Type", "application/wasm")
            conn.putheader("Content-Length", str(len(wasm)))
            conn.endheaders()
        except (OSError, http.client.HTTPException) as exc:
            raise _unreachable(host, port, exc)
        try:
            for offset in range(0, len(wasm), CHUNK):
                conn.send(wasm[offset:offset + CHUNK])
                if bar:
                    bar.update(min(offset + CHUNK, len(wasm)))
            sent_all = True
        except (BrokenPipeError, ConnectionResetError):
            pass   # the hub answered before reading everything (e.g. 403): read its answer below
        except (socket.timeout, TimeoutError) as exc:
            raise _unreachable(host, port, exc)
        finally:
            if bar:
                bar.finish()
        try:
            response = conn.getresponse()
            status, body = response.status, response.read()
        except (socket.timeout, TimeoutError):
            raise UploadError(f"the hub at {host}:{port} did not answer within {timeout:g} s after "
                              f"{'the upload' if sent_all else 'part of the upload'}",
                              "check the hub's log; retry the upload", EXIT_HUB_FAILED)
        except (OSError, http.client.HTTPException) as exc:
            raise UploadError(f"{host}:{port} closed the connection without an HTTP answer "
                              f"({type(exc).__name__}: {exc})",
                              f"check that a PigeonHub listens on port {port}; one serving "
                              "wss:// needs --tls (and --ca for a self-signed certificate)",
                              EXIT_NOT_A_HUB)
    finally:
        conn.close()
    return _interpret(host, port, status, body)


def _interpret(host, port, status, body) -> dict:
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or ("ok" not in answer and "error" not in answer):
        snippet = body[:60].decode("utf-8", "replace").strip()
        raise UploadError(f"{host}:{port} answered HTTP {status}, but not as a PigeonHub "
                          f"({snippet!r})",
                          "check --host and --port: the hub's port is 3000 unless configured "
                          "otherwise (CONFIG_PIGEONHUB_PORT, pigeonhub serve --port)",
                          EXIT_NOT_A_HUB, status)
    reason = str(answer.get("error", ""))
    if status == 200 and answer.get("ok"):
        return answer
    if status == 403:
        fix = ("pass the hub's upload token with --token (board: console `token <secret>` or "
               "CONFIG_PIGEONHUB_UPLOAD_TOKEN; PC hub: pigeonhub serve --upload-token)")
        if "disabled" in reason:
            fix = ("set an upload token on the hub first (board console: `token <secret>`; "
                   "PC hub: pigeonhub serve --upload-token <secret>), then pass it with --token")
        raise UploadError(f"the hub refused the upload: {reason}", fix, EXIT_TOKEN, status)
    if status == 422 and ("signed" in reason or "signature" in reason):
        raise UploadError(f"the hub rejected the module: {reason}",
                          "sign it with `pigeonhub build --sign KEY`, KEY being the private key whose "
                          "public half the hub holds (pigeonhub serve --module-key KEY.pub; board: "
                          "console `modkey` or CONFIG_PIGEONHUB_MODULE_PUBKEY); the hub keeps running "
                          "its previous module", EXIT_REJECTED, status)
    if status == 409:
        raise UploadError(f"the hub is busy: {reason}",
                          "wait for the other upload to finish, then retry; the hub keeps running its "
                          "previous module", EXIT_HUB_FAILED, status)
    if status in (400, 411, 413, 422):
        raise UploadError(f"the hub rejected the module: {reason}",
                          "rebuild it with `pigeonhub build` and check it with `pigeonhub info`; "
                          "the hub keeps running its previous module", EXIT_REJECTED, status)
    if status >= 500:
        raise UploadError(f"the hub could not switch modules (HTTP {status}): {reason}",
                          "the previous module keeps running; check the hub's log and retry",
                          EXIT_HUB_FAILED, status)
    raise UploadError(f"{host}:{port} answered HTTP {status}: {reason}",
                      "check --host and --port (the hub's upload endpoint is POST /module)",
                      EXIT_NOT_A_HUB, status)


def summary(host, port, answer) -> str:
    size = answer.get("size", answer.get("bytes", "?"))
    text = f"module {str(answer.get('sha256', ''))[:12]}… ({size} bytes) is now active on {host}:{port}"
    if "peersReplayed" in answer:
        n = answer["peersReplayed"]
        text += f", {n} peer{'' if n == 1 else 's'} kept"
    return text


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "exit status: 0 ok, 2 bad file (nothing sent), 3 token refused, 4 module rejected by the hub,\n"
        "5 hub failed to switch or busy with another upload (previous module keeps running),\n"
        "6 not a PigeonHub, 7 hub unreachable")
    parser.add_argument("--host", required=True,
                        help="the hub's IP address (a board prints it: 'IPv4 address: ...') or its "
                             "name on the LAN from `pigeonhub discover` (pigeonhub-ab12[.local])")
    parser.add_argument("--port", type=int, default=None,
                        help="the hub's port (default: the one a named hub advertises, else 3000)")
    parser.add_argument("--token", default=None,
                        help="upload token (board: console `token`/CONFIG_PIGEONHUB_UPLOAD_TOKEN; "
                             "PC hub: serve --upload-token). Default: $PIGEONHUB_TOKEN")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for the hub (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--tls", action="store_true",
                        help="the hub serves https:// (a board with a certificate, serve --tls-cert)")
    parser.add_argument("--ca", type=Path, default=None, metavar="FILE",
                        help="also trust this CA certificate (PEM), e.g. the one that signed the "
                             "board's self-signed certificate; implies --tls")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("module", type=Path, metavar="MODULE.wasm", help="the module to upload")


def resolve_host(host, port):
    """(address, port) to connect to: a name from `pigeonhub discover` is looked up over mDNS (its
    advertised port unless one was given); anything else is passed on as it is."""
    from . import mdns
    if not mdns.is_mdns_name(host):
        return host, DEFAULT_PORT if port is None else port
    try:
        hub = mdns.resolve(host)
    except mdns.MdnsError as exc:
        raise UploadError(f"cannot look up {host} on the LAN: {exc}",
                          "give the hub's IP address instead (a board prints it: 'IPv4 address: ...')",
                          EXIT_UNREACHABLE)
    except mdns.NameNotFound as exc:
        if "." not in host:   # maybe a name of the system resolver's (/etc/hosts, DNS)
            try:
                socket.getaddrinfo(host, None)
                return host, DEFAULT_PORT if port is None else port
            except OSError:
                pass
        raise UploadError(str(exc), mdns.not_found_fix(), EXIT_UNREACHABLE)
    sys.stderr.write(f"{host} is {hub.address}:{hub.port} (mDNS, hub id {hub.hub_id[:8]}…)\n")
    return hub.address, hub.port if port is None else port


def run(args) -> int:
    token = args.token if args.token is not None else os.environ.get("PIGEONHUB_TOKEN", "")
    try:
        host, port = resolve_host(args.host, args.port)
        answer = upload_module(host, token, args.module, port=port,
                               progress=not args.no_progress, timeout=args.timeout,
                               tls=getattr(args, "tls", False), ca=getattr(args, "ca", None))
    except UploadError as exc:
        sys.stderr.write(f"Error: {exc.problem}\n  fix: {exc.fix}\n")
        return exc.exit_code
    print(summary(host, port, answer) + ("" if host == args.host else f" ({args.host})"))
    return EXIT_OK

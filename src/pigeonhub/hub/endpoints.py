"""The PC hub's HTTP side, on its WebSocket port as on a board (main/http_endpoints.c): every
request is read here and goes through one router.

    GET /health, GET /stats     JSON (docs/PROTOCOL.md §10)
    GET / from a browser        the status page, data/status.html (its Accept names text/html)
    GET <anything else>         the reference server's plain-text line
    GET + Upgrade: websocket    the WebSocket handshake (ws.py), on any path: the module judges it
    POST /module, OPTIONS       over-the-air module upload (ota.py)

A response ends the connection (Connection: close), as on the board. A request has 10 s (serve
--request-timeout) to arrive whole, body included: a stalled upload is cut off with 400. One module
upload at a time: another POST /module while a body arrives is answered 409 before its body.
"""

import asyncio
import json

from .. import DATA_DIR, __version__
from .module_store import SLOT_BYTES
from .ws import ServerWebSocket

MAX_HEAD_BYTES = 8192              # request line + headers
MAX_DRAIN = 2 * SLOT_BYTES         # a refused body larger than this is not read: the client sees a reset
REQUEST_TIMEOUT = 10.0             # s for the whole request (websockets' opening-handshake default)
UPLOAD_BUSY = "another module upload is in progress; retry when it has finished"
SERVER_HEADER = f"PigeonHub-WASM/{__version__}"
HTTP_BANNER = "PeerPigeon WebSocket Signaling Server"   # the reference server's answer
STATUS_PAGE = DATA_DIR / "status.html"
# The page may only talk to this hub: a browser enforces what the page promises (no CDN, no fonts).
STATUS_PAGE_HEADERS = ("Cache-Control: no-cache", "Vary: Accept",
                       "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
                       "style-src 'unsafe-inline'; connect-src 'self'")
CORS_PREFLIGHT = ("Access-Control-Allow-Methods: GET, POST, OPTIONS",
                  "Access-Control-Allow-Headers: Content-Type, Authorization, X-Module-SHA256")

REASONS = {101: "Switching Protocols", 200: "OK", 204: "No Content", 400: "Bad Request",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           409: "Conflict",
           411: "Length Required", 413: "Payload Too Large", 422: "Unprocessable Entity",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable", 507: "Insufficient Storage"}


class Request:
    """A request line and its headers (names lower-cased; a repeated header keeps its last value)."""

    __slots__ = ("method", "target", "headers", "head")

    def __init__(self, method, target, headers, head):
        self.method, self.target, self.headers, self.head = method, target, headers, head

    @property
    def upgrade(self):
        return self.method == "GET" and self.headers.get("upgrade", "").lower() == "websocket"


def parse_request(head):
    """head: the bytes up to and including the blank line. Raises ValueError with the reason."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise ValueError(f"malformed request line {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"malformed header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return Request(parts[0], parts[1], headers, head)


def wants_html(accept):
    """Does an Accept header name text/html? Browsers list it first; curl and WebSocket clients
    send */* or nothing and keep the banner. A q of 0 refuses it. The board applies the same
    rule (main/status_page.c)."""
    for media_range in accept.split(","):
        kind, *params = media_range.split(";")
        if kind.strip().lower() != "text/html":
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def response(status, body=b"", content_type="application/json", extra=()):
    """A whole HTTP/1.1 response that closes the connection."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
             f"Server: {SERVER_HEADER}",
             f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}",
             "Access-Control-Allow-Origin: *",
             "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_response(status, obj):
    return response(status, b"" if obj is None else json.dumps(obj).encode())


class Router:
    """Decides what each request gets. `hub` is the PcHub (health(), stats(), upgrade()); `uploads`
    the UploadService (ota.py)."""

    def __init__(self, hub, uploads, request_timeout=REQUEST_TIMEOUT):
        self.hub = hub
        self.uploads = uploads
        self.request_timeout = request_timeout
        self.sockets = set()   # every open connection, for the hub's shutdown
        self._status_page = None   # data/status.html, read on first use

    def route(self, conn, request):
        """A request whose head is complete: answer it, upgrade it, or ask for its body."""
        method, target = request.method, request.target
        if request.upgrade:
            self.hub.upgrade(conn, request)
        elif method == "GET":
            if target == "/health":   # the reference answers /health?x with the banner
                conn.respond(json_response(200, self.hub.health()))
            elif target == "/stats":
                conn.respond(json_response(200, self.hub.stats()))
            elif target == "/" and wants_html(request.headers.get("accept", "")):
                conn.respond(response(200, self.status_page(), "text/html; charset=utf-8",
                                      STATUS_PAGE_HEADERS))
            else:
                conn.respond(response(200, HTTP_BANNER.encode(), "text/plain; charset=utf-8"))
        elif method == "OPTIONS":
            conn.respond(response(204, extra=CORS_PREFLIGHT))
        elif method == "POST":
            refused = self.uploads.precheck(method, request.target, request.headers)
            if refused is None and not self.uploads.begin(conn):
                refused = self.uploads.refuse(request.target, 409, UPLOAD_BUSY)
            if refused is not None:   # before the body, as the board does
                conn.respond(json_response(*refused), drain=refused[0] != 413)
            else:
                conn.read_body(self.uploads.body_length(request.headers))
        else:
            conn.respond(json_response(*self.uploads.refuse(
                request.target, 405, f"{method} is not supported here: GET, POST /module or OPTIONS")))

    def status_page(self):
        if self._status_page is None:
            self._status_page = STATUS_PAGE.read_bytes()
        return self._status_page

    def body(self, conn, request, body):
        conn.respond(json_response(*self.uploads(request.method, request.target,
                                                 request.headers, body)))

    def incomplete(self, request, reason):
        """The client ended or stalled before the request was whole."""
        if request is None:
            return json_response(400, {"error": reason})
        return json_response(*self.uploads.refuse(request.target, 400, reason))


class HubConnection(ServerWebSocket):
    """One accepted TCP connection: an HTTP request for the router; an upgrade turns it into a
    WebSocket (ServerWebSocket)."""

    def __init__(self, router):
        super().__init__()
        self.router = router
        self._bytes = b""            # the request so far
        self._request = None         # its head, once complete
        self._body_length = None     # a POST waiting for this many body bytes
        self._drain = 0              # a refused body still coming: read and dropped
        self._answered = False
        self._deadline = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self.router.sockets.add(self)
        self._deadline = asyncio.get_running_loop().call_later(self.router.request_timeout,
                                                               self._timed_out)

    def connection_lost(self, exc):
        if self._deadline is not None:
            self._deadline.cancel()
        self.router.uploads.end(self)
        self.router.sockets.discard(self)
        super().connection_lost(exc)

    def data_received(self, data):
        if self.protocol is not None:
            return super().data_received(data)
        if self._answered:
            self._drain -= len(data)
            if self._drain <= 0:
                self.transport.close()
            return
        self._bytes += data
        if self._request is None:
            end = self._bytes.find(b"\r\n\r\n")
            if end < 0:
                if len(self._bytes) > MAX_HEAD_BYTES:
                    self.respond(json_response(431, {"error": "request headers larger than 8 KiB"}))
                return
            head, self._bytes = self._bytes[:end + 4], self._bytes[end + 4:]
            try:
                self._request = parse_request(head)
            except ValueError as exc:
                self.respond(json_response(400, {"error": str(exc)}))
                return
            self.transport.pause_reading()   # until the router has decided
            self._run(self.router.route, self._request)
            if self.protocol is None and not self._answered:
                self.transport.resume_reading()
        if self._body_length is not None and len(self._bytes) >= self._body_length:
            body, self._body_length = self._bytes[:self._body_length], None
            self._run(self.router.body, self._request, body)

    def _run(self, step, *args):
        """A router step. A bug behind it answers 500 with its name and is logged: the client
        never sees a dropped connection, the hub keeps serving."""
        try:
            step(self, *args)
        except Exception as exc:  # noqa: BLE001 — whatever it is, this request ends here
            reason = f"internal error: {type(exc).__name__}: {exc}"
            self.router.hub.log.error(f"{self._request.method} {self._request.target}: {reason}")
            if not self._answered and self.protocol is None:
                self.respond(json_response(500, {"error": reason}))

    def eof_received(self):
        if self.protocol is not None:
            return super().eof_received()
        if not self._answered:
            if self._request is None:
                reason = "request ended inside its headers (no blank line after them)"
            else:
                reason = f"body ended after {len(self._bytes)} of {self._body_length or 0} bytes"
            self.respond(self.router.incomplete(self._request, reason))
        return False

    # ---- what the router calls -------------------------------------------------------------

    def respond(self, answer, drain=False):
        """Send a whole response and close. drain: first read (and drop) the rest of a body of
        acceptable size, so that the client gets the answer instead of a reset for unread data."""
        self._answered = True
        self.router.uploads.end(self)
        if self._deadline is not None:
            self._deadline.cancel()
        self.transport.write(answer)
        self.transport.resume_reading()
        request = self._request
        if drain and request is not None:
            remaining = self.router.uploads.body_length(request.headers) - len(self._bytes)
            self._drain = remaining if remaining <= MAX_DRAIN else 0
        if self._drain <= 0:
            self.transport.close()

    def read_body(self, length):
        self._body_length = length

    def upgrade(self):
        """The hub is ready for this WebSocket: answer the handshake. True when open (start()
        next), False when the library refused it (refusal() says why)."""
        if self._deadline is not None:
            self._deadline.cancel()
        rest, self._bytes = self._bytes, b""
        return self.accept(self._request.head, rest, SERVER_HEADER)

    def _timed_out(self):
        self._deadline = None
        if self._answered or self.protocol is not None:
            return
        if self._request is not None and self._request.upgrade:
            self.transport.abort()   # the hub never got ready for it
        else:
            self.respond(self.router.incomplete(
                self._request, f"the request did not arrive within {self.router.request_timeout:g} s"))

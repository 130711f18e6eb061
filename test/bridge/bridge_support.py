"""Helpers shared by the bridge extension tests (imported by conftest.py and the tests)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "test" / "native" / "bridge" / "fixtures"


def _load_variants():
    spec = importlib.util.spec_from_file_location("bridge_fixture_variants", FIXTURES / "variants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The broken fixture variants and the exact refusal each must get (shared with the C tests).
variants = _load_variants()


class RecordingTransport:
    """The socket layer reduced to what the bridge asks of it, recorded for assertions.

    Like an event loop, pump() later reports written bytes (except for connections marked slow)
    and finishes requested closes.
    """

    def __init__(self):
        self.frames = {}       # conn -> [bytes]
        self.closes = {}       # conn -> (code, reason)
        self.close_calls = {}  # conn -> count
        self.pings = []
        self.logs = []         # "L text"
        self.unacked = {}
        self.slow = set()
        self.reported = set()
        self.bridge = None
        self.now = 1000

    # --- the transport interface -----------------------------------------------------------------
    def send(self, conn, frame):
        if conn in self.reported:
            return -1
        self.frames.setdefault(conn, []).append(bytes(frame))
        self.unacked[conn] = self.unacked.get(conn, 0) + len(frame)

    def close(self, conn, code, reason):
        self.close_calls[conn] = self.close_calls.get(conn, 0) + 1
        self.closes.setdefault(conn, (code, reason))

    def ping(self, conn):
        self.pings.append(conn)
        return 0

    def log(self, level, msg):
        self.logs.append(f"{level} {msg}")

    def millis(self):
        return self.now

    def wall_clock_ms(self):
        return 1795721113692 + self.now

    def device_id(self):
        return "24:6f:28:aa:bb:cc"

    # --- test helpers ----------------------------------------------------------------------------
    def pump(self):
        for conn, n in list(self.unacked.items()):
            if n and conn not in self.slow:
                self.bridge.sent(conn, n)
                self.unacked[conn] = 0
        for conn in list(self.closes):
            if conn not in self.reported:
                self.reported.add(conn)
                self.bridge.closed(conn)

    def open(self, url="/"):
        conn = self.bridge.open(url)
        self.pump()
        return conn

    def frame(self, conn, data):
        self.bridge.frame(conn, data.encode() if isinstance(data, str) else data)
        self.pump()

    def last(self, conn):
        return self.frames.get(conn, [b""])[-1]

    def count_logs(self, needle):
        return sum(needle in line for line in self.logs)

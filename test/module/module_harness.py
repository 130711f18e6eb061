"""Run hub.wasm under a real engine (WASM3 via pywasm3, or wasmtime) with a recording host.

The host side stands where a bridge stands: it provides every import of pigeonhub_abi.h, checks
each pointer/length against linear memory (as the bridge core does), and records what the module
asked for: frames sent (per connection), closes, pings, log lines. Time is fake and moves only when
a test moves it. Connections follow the bridge contract: a connection the module asked to close
gets no more frames and is reported gone with on_peer_disconnected when the test says so.
"""

import json

from pigeonhub._bridge import json_string_end, json_value_end
from pigeonhub.module.build import parse_abi_header

ABI = parse_abi_header()
WALL_CLOCK_START = 1795721113692   # ms since epoch, a value captured on the wire
ENGINES = ("wasm3", "wasmtime")


class HostError(AssertionError):
    """The module passed the host something a bridge would refuse (e.g. a pointer out of memory)."""


class Hub:
    # test/conftest.py shows `hub.log()` of a failing test that used a fixture named `hub`; this
    # one is an in-process module, so its "log" is what it passed to log_message().
    kind = "wasm-module"

    def log(self):
        return "\n".join(self.logs)

    def __init__(self, wasm: bytes, engine: str, device_id: str = "24:0a:c4:12:34:56", init=True):
        self.engine = engine
        self.device_id = device_id
        self.now = 0                    # millis()
        self.wall = WALL_CLOCK_START    # wall_clock_ms()
        self.urls = {}                  # conn -> request URL
        self.open = set()               # connections the transport holds
        self.closing = set()            # ... of which the module asked to close
        self.sent = []                  # (conn, bytes) in order
        self.closes = []                # (conn, code, reason)
        self.pings = []                 # conn
        self.logs = []                  # "L text"
        self.broadcasts = []            # (bytes, exclude)
        self.server = []                # ("start", port) / ("stop",)
        self.send_result = 0            # what ws_send_to_peer returns for a known connection
        self.bootstrap = []             # get_bootstrap_hub's list of hub URLs
        self.dials = []                 # (conn, URL) ws_connect was asked for, in order
        self.next_link = 1000           # connection ids handed out for links
        self.connect_result = None      # set to a negative int: ws_connect refuses
        self.host_errors = []
        self._load(wasm)
        if init:
            assert self.call("init") == 0

    # --- engines ---------------------------------------------------------------------------------
    def _load(self, wasm):
        impls = {name: getattr(self, "_imp_" + name) for name in ABI.imports}
        if self.engine == "wasm3":
            import wasm3
            self._env = wasm3.Environment()
            # Far above what the module needs (test_wasm3_stack.py checks the bridge default covers it).
            self._rt = self._env.new_runtime(16 * 1024)
            mod = self._env.parse_module(wasm)
            self._rt.load(mod)          # link after load: linking first segfaults (toolchain.md)
            for name, entry in ABI.imports.items():
                mod.link_function("env", name, entry.signature, self._guard(impls[name]))
            self._mod = mod
            self._funcs = {}
        elif self.engine == "wasmtime":
            import wasmtime
            kinds = {"i": wasmtime.ValType.i32(), "I": wasmtime.ValType.i64()}

            def functype(sig):
                ret, params = sig.replace("*", "i").split("(")
                return wasmtime.FuncType([kinds[c] for c in params.rstrip(")")],
                                         [] if ret == "v" else [kinds[ret]])

            self._store = wasmtime.Store()
            linker = wasmtime.Linker(self._store.engine)
            for name, entry in ABI.imports.items():
                linker.define_func("env", name, functype(entry.signature), self._guard(impls[name]))
            module = wasmtime.Module(self._store.engine, wasm)
            self._inst = linker.instantiate(self._store, module)
            self._exports = self._inst.exports(self._store)
            self._memory = self._exports["memory"]
        else:
            raise ValueError(f"unknown engine {self.engine!r}")

    def _guard(self, fn):
        def wrapper(*args):
            try:
                return fn(*args)
            except Exception as exc:  # surfaces as a trap; remember why for the assertion
                self.host_errors.append(f"{fn.__name__}{args}: {exc!r}")
                raise
        wrapper.__name__ = fn.__name__
        return wrapper

    def call(self, name, *args):
        if self.engine == "wasm3":
            if name not in self._funcs:
                self._funcs[name] = self._rt.find_function(name)
            result = self._funcs[name](*args)
        else:
            result = self._exports[name](self._store, *args)
        assert not self.host_errors, self.host_errors
        return result

    def memory_size(self):
        if self.engine == "wasm3":
            return len(self._rt.get_memory(0))
        return self._memory.data_len(self._store)

    def read(self, ptr, n):
        if ptr < 0 or n < 0 or ptr + n > self.memory_size():
            raise HostError(f"read {ptr}+{n} outside linear memory ({self.memory_size()})")
        if self.engine == "wasm3":
            return bytes(self._rt.get_memory(0)[ptr:ptr + n])   # fresh view per access
        return bytes(self._memory.read(self._store, ptr, ptr + n))

    def write(self, ptr, data):
        if ptr < 0 or ptr + len(data) > self.memory_size():
            raise HostError(f"write {ptr}+{len(data)} outside linear memory")
        if self.engine == "wasm3":
            self._rt.get_memory(0)[ptr:ptr + len(data)] = data
        else:
            self._memory.write(self._store, data, ptr)

    # --- imports -------------------------------------------------------------------------------
    def _imp_ws_server_start(self, port):
        self.server.append(("start", port))
        return 0

    def _imp_ws_server_stop(self):
        self.server.append(("stop",))

    def _deliverable(self, conn):
        return conn in self.open and conn not in self.closing

    def _imp_ws_send_to_peer(self, conn, ptr, n):
        data = self.read(ptr, n)
        if not self._deliverable(conn):
            return -1
        if self.send_result == 0:
            self.sent.append((conn, data))
        return self.send_result

    def _imp_ws_broadcast(self, ptr, n, exclude):
        data = self.read(ptr, n)
        self.broadcasts.append((data, exclude))
        targets = sorted(c for c in self.open if c != exclude and self._deliverable(c))
        self.sent.extend((c, data) for c in targets)
        return len(targets)

    def _imp_log_message(self, ptr, n):
        text = self.read(ptr, n).decode("utf-8")
        assert text[:2] in ("E ", "W ", "I ", "D ", "V "), text
        self.logs.append(text)

    def _imp_get_device_id(self, ptr, n):
        data = self.device_id.encode()[:n - 1] + b"\0"
        self.write(ptr, data)

    def _imp_millis(self):
        return self.now & 0xFFFFFFFF

    def _imp_ws_get_request_url(self, conn, ptr, n):
        url = self.urls.get(conn)
        if url is None:
            return -1
        data = url.encode()
        if n > 0:                       # snprintf's contract, as the bridge core implements it
            self.write(ptr, data[:n - 1] + b"\0")
        return len(data)

    def _imp_ws_close_peer(self, conn, code, ptr, n):
        reason = self.read(ptr, n).decode("utf-8")
        assert len(reason.encode()) <= 123, "RFC 6455 limits close reasons to 123 bytes"
        self.closes.append((conn, code, reason))
        self.closing.add(conn)

    def _imp_ws_ping_peer(self, conn):
        self.pings.append(conn)
        return 0 if self._deliverable(conn) else -1

    def _imp_wall_clock_ms(self):
        return self.wall

    def _imp_ws_connect(self, ptr, n):
        url = self.read(ptr, n).decode("utf-8")
        if self.connect_result is not None:
            self.dials.append((self.connect_result, url))
            return self.connect_result
        conn = self.next_link
        self.next_link += 1
        self.dials.append((conn, url))
        self.urls[conn] = url           # ws_get_request_url returns the dialed URL
        return conn

    def _imp_get_bootstrap_hub(self, index, ptr, n):
        if not 0 <= index < len(self.bootstrap):
            return -1
        data = self.bootstrap[index].encode()
        if n > 0:                       # snprintf's contract
            self.write(ptr, data[:n - 1] + b"\0")
        return len(data)

    def _imp_json_string_end(self, ptr, n):
        if n < 0 or ptr < 0 or ptr + n > self.memory_size():
            return -3                   # PH_JSON_STRING_BAD_ARGS, as the bridge core
        return json_string_end(self.read(ptr, n))   # the bridge core's C, through the extension

    def _imp_json_value_end(self, ptr, n):
        if n < 0 or ptr < 0 or ptr + n > self.memory_size():
            return -3
        return json_value_end(self.read(ptr, n))

    # --- what a bridge does --------------------------------------------------------------------
    def connect(self, conn, peer_id=None, url=None):
        self.urls[conn] = url if url is not None else f"/?peerId={peer_id}"
        self.open.add(conn)
        self.call("on_peer_connected", conn)

    def disconnect(self, conn):
        self.open.discard(conn)
        self.closing.discard(conn)
        self.call("on_peer_disconnected", conn)

    def open_link(self, conn):
        """The link's handshake completed (the bridge calls on_link_open)."""
        self.open.add(conn)
        self.call("on_link_open", conn)

    def fail_link(self, conn):
        """The link closed or could not be opened: on_peer_disconnected, exactly once."""
        self.disconnect(conn)

    def input_buffer(self):
        return self.call("get_input_buffer"), self.call("get_input_buffer_size")

    def send_raw(self, conn, data: bytes):
        ptr, size = self.input_buffer()
        assert len(data) <= size, "the bridge refuses larger frames (1009) before the module"
        self.write(ptr, data)
        self.call("on_message", conn, ptr, len(data))

    def send(self, conn, frame):
        data = frame if isinstance(frame, bytes) else json.dumps(frame, separators=(",", ":")).encode()
        self.send_raw(conn, data)

    def pong(self, conn):
        self.call("on_pong", conn)

    def loop(self):
        self.call("loop")

    def take(self):
        """Frames sent since the last take, as (conn, parsed JSON); each must be valid UTF-8 JSON."""
        out, self.sent = self.sent, []
        return [(conn, json.loads(data.decode("utf-8", "strict"))) for conn, data in out]

    def take_raw(self):
        out, self.sent = self.sent, []
        return out

    def stats(self, size=4096):
        ptr, _ = self.input_buffer()
        self.call("get_stats", ptr, size)
        raw = self.read(ptr, size)
        assert b"\0" in raw, "get_stats must NUL-terminate"
        return raw[:raw.index(b"\0")].decode()

    def stats_json(self):
        return json.loads(self.stats())

    def hub_id(self):
        ptr = self.call("get_hub_id")
        raw = self.read(ptr, 41)
        assert raw[40] == 0
        return raw[:40].decode()

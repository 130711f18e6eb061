"""`pigeonhub soak URL --seconds N`: a bounded load-and-churn run against any hub, with a verdict.

  pigeonhub soak ws://127.0.0.1:3000 --seconds 60 --hub-pid PID --csv soak.csv --plot soak.png

One asyncio loop plays a bounded population of peers (at most --peers active plus --silent
silent ones, never more than the hub's MAX_PEERS 20) in one network:

  * churn, at --churn events per second: a peer joins (connects with ?peerId=, waits for
    `connected`, announces), leaves abruptly (SO_LINGER 0, then close: the hub sees a TCP RST),
    leaves politely (`goodbye` frame, then a 1000 close), or goes silent (the generator stops
    reading and sending on it, so it answers neither frames nor the hub's pings) whenever fewer
    than --silent peers are;
  * relay, at --rate frames per second: 4.5 KB offers and 360 B ICE candidates between random
    pairs of active peers (load.FrameFactory: the client's frame shapes); each one is matched
    on arrival (type, fromPeerId, targetPeerId) and its latency recorded. A frame whose two ends
    are both still there and that has not arrived within --relay-timeout is lost.

Silent peers: the hub pings a connection after HEARTBEAT_INTERVAL (30 s) of silence and closes it
after PEER_TIMEOUT (60 s, wasm/pigeonhub_abi.h). Each silent peer is checked once it has been
silent for --peer-timeout + --timeout-grace seconds: the generator reads again and the connection
must have been closed by the hub (else FAIL). While a silent peer is between --peer-timeout and
that check, a count check accepts the hub's count with or without it. In a run shorter than about
--peer-timeout + --timeout-grace no silent peer reaches its check: the summary says how many were
verified and how many were still within the timeout at the end (those the generator closes itself).

Every --interval seconds the run goes quiet: churn and new relays pause, frames in flight arrive,
and then it samples
  * the hub process's RSS (/proc/PID/status VmRSS) and open descriptors (/proc/PID/fd) with
    --hub-pid (a local PC hub); without it, `memory.rss` from /health when the hub reports one;
  * `memory.freeHeap` / `memory.minFreeHeap` from /health (a board);
  * p50 / p99 relay latency of the frames relayed since the last sample;
  * `connections` and `peers` from /health, polled for up to --settle seconds until they equal
    what the generator holds open (the hub may still be processing the last closes).

Verdict (the last line printed): `PASS`, or `FAIL: <reasons>` for
  * a mismatch: a quiet sample whose hub counts never reached the generator's within --settle;
  * an RSS leak: a sample after the warm-up outside ±--rss-tolerance % of the first one after it;
  * a descriptor leak: descriptors minus hub connections above its warm-up value + --fd-slack;
  * a heap leak (board): the median free heap of the last third of the samples after warm-up
    lower than that of the first third by more than --heap-tolerance %;
  * lost or wrong relayed frames, refused connections, a silent peer the hub never dropped, the
    hub process gone or /health unreachable.

The hub should be used by this run only: other clients' connections count as mismatches.
"""

import asyncio
import csv
import json
import os
import random
import socket
import statistics
import struct
import sys
import time
import urllib.parse

from websockets.exceptions import InvalidHandshake

from pigeonhub import _bridge, event_loop
from pigeonhub.hub import ws
from pigeonhub.bench.load import (ICE_FRAME_BYTES, NETWORK, OFFER_FRAME_BYTES,
                                  FrameFactory, _loads, percentile, random_peer_id)

MAX_PEERS = _bridge.MAX_PEERS                    # the stock module's (wasm/pigeonhub_abi.h)
PEER_TIMEOUT = _bridge.PEER_TIMEOUT_MS / 1000    # s
CSV_FIELDS = ["t", "phase", "rss_bytes", "fds", "fd_excess", "free_heap", "min_free_heap",
              "p50_ms", "p99_ms", "relayed", "lost", "expected_connections", "hub_connections",
              "hub_peers", "uncertain", "match", "settle_ms", "joins", "abrupt", "polite",
              "silenced", "silent_dropped"]


def log(msg):
    print(f"I ({int(time.monotonic() * 1000) % 10_000_000}) soak: {msg}", file=sys.stderr,
          flush=True)


def add_arguments(parser):
    parser.add_argument("url", help="the hub: ws://host:port (a PC hub, the emulated board, a board)")
    parser.add_argument("--seconds", type=float, required=True, help="length of the run")
    parser.add_argument("--hub-pid", type=int,
                        help="pid of a local hub process: sample its RSS and open descriptors")
    parser.add_argument("--csv", metavar="FILE", help="write one row per sample")
    parser.add_argument("--plot", metavar="FILE", help="draw the samples (needs matplotlib)")
    parser.add_argument("--peers", type=int, default=10,
                        help="active peers kept connected (default 10)")
    parser.add_argument("--silent", type=int, default=2,
                        help="silent peers at a time, each replaced once checked (default 2); "
                             "--peers + --silent <= 18 leaves the hub 2 slots for closes in flight")
    parser.add_argument("--rate", type=float, default=40.0,
                        help="relayed frames per second, offers and candidates (default 40)")
    parser.add_argument("--churn", type=float, default=2.0,
                        help="churn events per second (default 2)")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="seconds between quiet samples (default 5)")
    parser.add_argument("--warmup", type=float,
                        help="seconds before the leak baselines (default: a quarter of the run; "
                             "docs/RELIABILITY.md says why)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds a quiet sample waits for the hub's counts (default 5)")
    parser.add_argument("--rss-tolerance", type=float, default=5.0,
                        help="RSS after warm-up stays within this %% of its baseline (default 5)")
    parser.add_argument("--fd-slack", type=int, default=2,
                        help="descriptors beyond connections may exceed the warm-up value by "
                             "this many (default 2: the /health request itself)")
    parser.add_argument("--heap-tolerance", type=float, default=5.0,
                        help="free heap may fall this %% from the first to the last third after "
                             "warm-up (default 5)")
    parser.add_argument("--peer-timeout", type=float, default=PEER_TIMEOUT,
                        help="the hub's silent-peer timeout in s (default 60, PEER_TIMEOUT)")
    parser.add_argument("--timeout-grace", type=float, default=20.0,
                        help="seconds after --peer-timeout by which a silent peer must be gone "
                             "(default 20)")
    parser.add_argument("--relay-timeout", type=float, default=5.0,
                        help="a relayed frame not arrived after this long is lost (default 5)")
    parser.add_argument("--seed", type=int, help="random seed (default: random)")


# --- the hub's side -------------------------------------------------------------------------------

async def http_get_json(http_base, path, timeout=5.0):
    """GET http_base+path with a minimal HTTP/1.1 client (Connection: close); the JSON body."""
    parts = urllib.parse.urlsplit(http_base)
    host, port = parts.hostname, parts.port or 80

    async def get():
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
                         f"Accept: application/json\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            # a board's httpd may keep the connection open: read what Content-Length says
            body = await (reader.readexactly(length) if length is not None else reader.read())
        finally:
            writer.close()
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or status[1] != b"200":
            raise OSError(f"GET {path}: {head[:80]!r}")
        if b"transfer-encoding: chunked" in head.lower():
            body = _unchunk(body)
        return json.loads(body)
    return await asyncio.wait_for(get(), timeout)


def _unchunk(body):
    out, pos = bytearray(), 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


def proc_sample(pid):
    """(RSS bytes, open descriptors) of a local process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, ValueError):
        return None


# --- the load generator ---------------------------------------------------------------------------

class Peer:
    __slots__ = ("peer_id", "ws", "state", "silent_since", "reader")

    def __init__(self):
        self.peer_id = random_peer_id()
        self.ws = None
        self.state = "joining"     # joining, active, silent, gone
        self.silent_since = None
        self.reader = None


class Soak:
    def __init__(self, args):
        self.args = args
        url = args.url.rstrip("/")
        self.url = url
        parts = urllib.parse.urlsplit(url)
        scheme = "https" if parts.scheme == "wss" else "http"
        self.http = f"{scheme}://{parts.netloc}"
        self.rng = random.Random(args.seed)
        self.peers = {}                       # peer_id -> Peer (not gone)
        self.factories = {"offer": FrameFactory("offer", OFFER_FRAME_BYTES),
                          "ice": FrameFactory("ice", ICE_FRAME_BYTES)}
        self.seq = 0
        self.pending = {}                     # seq -> (sent_at, sender id, target id, kind)
        self.forgotten = {}                   # seq -> when its sender or target departed
        self.latencies = []                   # ms, since the last sample
        self.relayed_total = 0
        self.lost = 0
        self.errors = []                      # wrong frames and other protocol findings
        self.failures = []                    # verdict reasons found during the run
        self.refused = 0
        self.mismatches = []                  # quiet count checks the hub failed
        self.unreachable = []                 # samples whose /health did not answer
        self.counts = {"joins": 0, "abrupt": 0, "polite": 0, "silenced": 0, "silent_dropped": 0,
                       "silent_unverified": 0}
        self.quiet = asyncio.Event()          # set: churn and relay paused
        self.busy = False                     # a churn step is in progress
        self.rows = []
        self.start = None

    # -- peers ------------------------------------------------------------------------------------

    def _active(self):
        return [p for p in self.peers.values() if p.state == "active"]

    def _silent(self):
        return [p for p in self.peers.values() if p.state == "silent"]

    async def join(self):
        peer = Peer()
        self.peers[peer.peer_id] = peer
        connected = asyncio.get_running_loop().create_future()

        def dispatch(raw):
            self._dispatch(peer, raw, connected)
        try:
            peer.ws = await ws.dial(f"{self.url}/?peerId={peer.peer_id}", 10)
            peer.ws.start(ws.Callbacks(dispatch))
            peer.reader = asyncio.ensure_future(self._watch(peer, connected))
            await asyncio.wait_for(connected, 10)
            peer.ws.send(json.dumps({"type": "announce", "data": {"peerId": peer.peer_id},
                                     "maxPeers": 3, "networkName": NETWORK},
                                    separators=(",", ":")).encode())
        except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
            self.refused += 1
            self.failures.append(f"join failed: {type(exc).__name__} {exc}"[:200])
            await self._drop(peer, abrupt=True)
            return
        peer.state = "active"
        self.counts["joins"] += 1

    async def _watch(self, peer, connected):
        await peer.ws.wait_closed()
        if not connected.done():
            connected.set_exception(ConnectionError(
                f"closed {peer.ws.close_code} {peer.ws.close_reason or ''}".strip()))
        if peer.state == "active":   # the hub closed a peer it had no reason to close
            self.failures.append(f"hub closed active peer {peer.peer_id[:8]}: "
                                 f"{peer.ws.close_code} {peer.ws.close_reason}")
            peer.state = "gone"
            self.peers.pop(peer.peer_id, None)

    def _dispatch(self, peer, raw, connected):
        if peer.state in ("silent", "gone"):
            return   # read again only to see the hub's close: what was buffered is not news
        msg = _loads(raw)
        kind = msg.get("type")
        if kind in ("offer", "ice-candidate"):
            factory = self.factories["offer" if kind == "offer" else "ice"]
            seq = factory.seq_of(msg.get("data") or {})
            entry = self.pending.pop(seq, None)
            if entry is None and self.forgotten.pop(seq, None) is not None:
                return   # in flight when its sender or receiver departed or went silent
            if entry is None:
                self.errors.append(f"unexpected {kind} seq {seq}")
                return
            sent_at, sender, target, want = entry
            if want != kind or msg.get("fromPeerId") != sender or \
                    msg.get("targetPeerId") != target or target != peer.peer_id:
                self.errors.append(f"{kind} seq {seq} relayed wrong: {str(raw)[:160]}")
                return
            self.latencies.append((time.perf_counter() - sent_at) * 1000.0)
            self.relayed_total += 1
        elif kind == "connected" and not connected.done():
            connected.set_result(True)

    async def _drop(self, peer, abrupt):
        """Close a peer: abrupt = RST (SO_LINGER 0), else a 1000 close handshake."""
        peer.state = "gone"
        self.peers.pop(peer.peer_id, None)
        self._forget(peer.peer_id)
        sock = peer.ws
        if sock is None:
            return
        if abrupt:
            transport = sock.transport
            raw = transport.get_extra_info("socket") if transport else None
            if raw is not None:
                try:
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            if transport is not None:
                transport.abort()
        else:
            sock.close(1000, "Client disconnect")
            try:
                await asyncio.wait_for(sock.wait_closed(), 5)
            except asyncio.TimeoutError:
                sock.abort()
        if peer.reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(peer.reader), 3)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - best effort
                pass

    def _forget(self, peer_id):
        """Frames from or to a peer that departs or goes silent are not lost when they never
        arrive (nobody reads them), nor wrong when they do (sent before the departure)."""
        now = time.perf_counter()
        for seq in [s for s, e in self.pending.items() if peer_id in (e[1], e[2])]:
            del self.pending[seq]
            self.forgotten[seq] = now

    async def leave_polite(self, peer):
        peer.state = "leaving"
        peer.ws.send(json.dumps({"type": "goodbye", "data": {
            "peerId": peer.peer_id, "timestamp": int(time.time() * 1000)},
            "networkName": NETWORK}, separators=(",", ":")).encode())
        await self._drop(peer, abrupt=False)
        self.counts["polite"] += 1

    async def leave_abrupt(self, peer):
        await self._drop(peer, abrupt=True)
        self.counts["abrupt"] += 1

    def go_silent(self, peer):
        peer.state = "silent"
        peer.silent_since = time.monotonic()
        self._forget(peer.peer_id)
        peer.ws.transport.pause_reading()    # no frames, no pongs: the hub must time it out
        self.counts["silenced"] += 1

    async def check_silent(self, final=False):
        """Silent peers past timeout + grace must have been closed by the hub."""
        deadline = self.args.peer_timeout + self.args.timeout_grace
        now = time.monotonic()
        for peer in self._silent():
            if now - peer.silent_since < deadline:
                continue
            peer.ws.transport.resume_reading()
            try:
                await asyncio.wait_for(asyncio.shield(peer.ws.wait_closed()), 3)
                self.counts["silent_dropped"] += 1
            except asyncio.TimeoutError:
                self.failures.append(f"silent peer {peer.peer_id[:8]} still open after "
                                     f"{now - peer.silent_since:.0f} s")
            await self._drop(peer, abrupt=True)

    # -- the two activities -------------------------------------------------------------------------

    async def churn_loop(self):
        a = self.args
        while True:
            await asyncio.sleep(self.rng.expovariate(a.churn) if a.churn > 0 else 1.0)
            if a.churn <= 0:
                continue      # --churn 0: relay only, the first peers stay
            while self.quiet.is_set():
                await asyncio.sleep(0.05)
            self.busy = True
            try:
                await self._churn_step()
            finally:
                self.busy = False

    async def _churn_step(self):
        a = self.args
        active = self._active()
        if len(active) < a.peers:
            await self.join()
            return
        victim = self.rng.choice(active)
        # silent peers are replaced first: a short run then still verifies some against the timeout
        if len(self._silent()) < a.silent:
            self.go_silent(victim)
        elif self.rng.random() < 0.5:
            await self.leave_abrupt(victim)
        else:
            await self.leave_polite(victim)

    async def relay_loop(self):
        a = self.args
        period = 1.0 / a.rate
        next_at = time.monotonic()
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if self.quiet.is_set():
                next_at = time.monotonic()
                continue
            active = self._active()
            if len(active) < 2:
                continue
            src, dst = self.rng.sample(active, 2)
            kind = "offer" if self.rng.random() < 0.3 else "ice"
            seq = self.seq
            self.seq += 1
            self.pending[seq] = (time.perf_counter(), src.peer_id, dst.peer_id,
                                 "offer" if kind == "offer" else "ice-candidate")
            if src.ws.send(self.factories[kind].frame(seq, dst.peer_id).encode()) < 0:
                self.pending.pop(seq, None)   # its connection is closing

    def _expire_pending(self):
        limit = time.perf_counter() - self.args.relay_timeout
        for seq in [s for s, at in self.forgotten.items() if at < limit]:
            del self.forgotten[seq]
        for seq in [s for s, e in self.pending.items() if e[0] < limit]:
            del self.pending[seq]
            self.lost += 1

    # -- samples ----------------------------------------------------------------------------------

    async def sample(self, phase):
        a = self.args
        self.quiet.set()
        try:
            deadline = time.monotonic() + 15
            while self.busy and time.monotonic() < deadline:   # a churn step in progress ends
                await asyncio.sleep(0.02)
            deadline = time.monotonic() + a.relay_timeout
            while self.pending and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            self._expire_pending()
            await self.check_silent()
            row = {"t": round(time.monotonic() - self.start, 2), "phase": phase}
            now = time.monotonic()
            certain = [p for p in self.peers.values()
                       if p.state == "active" or (p.state == "silent" and
                                                  now - p.silent_since < a.peer_timeout - 1)]
            uncertain = len(self.peers) - len(certain)
            expected = len(certain)
            settle_start = time.monotonic()
            health, match = None, False
            while True:
                try:
                    health = await http_get_json(self.http, "/health")
                except (OSError, ValueError, asyncio.TimeoutError,
                        asyncio.IncompleteReadError) as exc:
                    self.unreachable.append(f"t={row['t']}: {type(exc).__name__} {exc}"[:200])
                    health = None
                    break
                conns, peers = health.get("connections"), health.get("peers")
                match = all(isinstance(v, int) and expected <= v <= expected + uncertain
                            for v in (conns, peers))
                if match or time.monotonic() - settle_start > a.settle:
                    break
                await asyncio.sleep(0.1)
            row["settle_ms"] = round((time.monotonic() - settle_start) * 1000)
            memory = (health or {}).get("memory") or {}
            row.update(expected_connections=expected, uncertain=uncertain,
                       hub_connections=(health or {}).get("connections"),
                       hub_peers=(health or {}).get("peers"), match=int(match),
                       free_heap=memory.get("freeHeap"), min_free_heap=memory.get("minFreeHeap"),
                       rss_bytes=memory.get("rss"))
            if a.hub_pid:
                got = proc_sample(a.hub_pid)
                if got is None:
                    self.failures.append(f"hub process {a.hub_pid} gone at t={row['t']}")
                else:
                    row["rss_bytes"], row["fds"] = got
                    if isinstance(row["hub_connections"], int):
                        row["fd_excess"] = got[1] - row["hub_connections"]
            if self.latencies:
                row["p50_ms"] = round(percentile(self.latencies, 50), 3)
                row["p99_ms"] = round(percentile(self.latencies, 99), 3)
            row["relayed"] = len(self.latencies)
            self.latencies = []
            row["lost"] = self.lost
            row.update({k: v for k, v in self.counts.items() if k in CSV_FIELDS})
            if health is not None and not match:
                self.mismatches.append(
                    f"t={row['t']}: hub connections={row['hub_connections']} "
                    f"peers={row['hub_peers']}, generator expects {expected}"
                    + (f"..{expected + uncertain}" if uncertain else "")
                    + f" (waited {a.settle:g} s, quiet)")
            self.rows.append(row)
            log(_row_line(row))
        finally:
            self.quiet.clear()

    async def run(self):
        a = self.args
        self.start = time.monotonic()
        end = self.start + a.seconds
        warmup = a.warmup if a.warmup is not None else a.seconds / 4
        try:
            for _ in range(a.peers):
                await self.join()
            tasks = [asyncio.ensure_future(self.churn_loop()),
                     asyncio.ensure_future(self.relay_loop())]
            try:
                next_sample = self.start + a.interval
                while True:
                    now = time.monotonic()
                    if now >= end:
                        break
                    await asyncio.sleep(min(next_sample, end) - now)
                    if time.monotonic() >= next_sample:
                        phase = "warmup" if time.monotonic() - self.start < warmup else "run"
                        await self.sample(phase)
                        next_sample += a.interval
                        for task in tasks:
                            if task.done() and task.exception():
                                raise task.exception()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if not self.rows or time.monotonic() - self.start - self.rows[-1]["t"] > 1.0:
                await self.sample("end")
        finally:
            for peer in list(self.peers.values()):
                if peer.state == "silent":
                    self.counts["silent_unverified"] += 1
                await self._drop(peer, abrupt=peer.state == "silent")
        return warmup


def _row_line(row):
    def f(key, scale=1, fmt="{:.0f}"):
        v = row.get(key)
        return "-" if v is None else fmt.format(v / scale)
    return (f"t={row['t']:.0f}s {row['phase']} rss={f('rss_bytes', 2**20, '{:.1f}')}MiB "
            f"fds={f('fds')} heap={f('free_heap')}/{f('min_free_heap')} "
            f"p50={f('p50_ms', 1, '{:.1f}')}ms p99={f('p99_ms', 1, '{:.1f}')}ms "
            f"relayed={row.get('relayed')} conns hub={row.get('hub_connections')} "
            f"peers hub={row.get('hub_peers')} expected={row['expected_connections']}"
            + (f"(+{row['uncertain']}?)" if row.get("uncertain") else "")
            + f" {'ok' if row['match'] else 'MISMATCH'} settle={row['settle_ms']}ms")


# --- verdict ---------------------------------------------------------------------------------------

def leak_findings(rows, args):
    """Trend checks on the samples after warm-up; returns (findings, summary lines)."""
    after = [r for r in rows if r["phase"] != "warmup"]
    findings, lines = [], []
    rss = [r["rss_bytes"] for r in after if r.get("rss_bytes")]
    if len(rss) >= 2:
        base = rss[0]
        lo, hi = min(rss), max(rss)
        lines.append(f"RSS after warm-up: baseline {base / 2**20:.2f} MiB, range "
                     f"{(lo - base) * 100 / base:+.2f} % .. {(hi - base) * 100 / base:+.2f} % "
                     f"(tolerance ±{args.rss_tolerance:g} %)")
        if max(abs(hi - base), abs(base - lo)) > base * args.rss_tolerance / 100:
            findings.append(f"RSS leak: {lo / 2**20:.2f}..{hi / 2**20:.2f} MiB against a "
                            f"baseline of {base / 2**20:.2f} MiB (±{args.rss_tolerance:g} %)")
    elif not any(isinstance(r.get("free_heap"), int) for r in after):
        lines.append("RSS: not sampled after warm-up (needs --hub-pid or /health memory.rss, "
                     "and samples after the warm-up)")
    excess = [r["fd_excess"] for r in after if r.get("fd_excess") is not None]
    if len(excess) >= 2:
        lines.append(f"descriptors beyond connections: {excess[0]} after warm-up, max "
                     f"{max(excess)}, last {excess[-1]} (slack {args.fd_slack})")
        if max(excess) > excess[0] + args.fd_slack:
            findings.append(f"descriptor leak: descriptors beyond connections grew from "
                            f"{excess[0]} to {max(excess)}")
    elif args.hub_pid:
        lines.append("descriptors: too few samples after warm-up")
    heap = [r["free_heap"] for r in after if isinstance(r.get("free_heap"), int)]
    if len(heap) >= 3:
        third = max(1, len(heap) // 3)
        first, last = statistics.median(heap[:third]), statistics.median(heap[-third:])
        lows = [r["min_free_heap"] for r in after if isinstance(r.get("min_free_heap"), int)]
        lines.append(f"free heap after warm-up: first third {first:.0f} B, last third {last:.0f} B"
                     + (f", minimum ever {min(lows)} B" if lows else "")
                     + f" (tolerance {args.heap_tolerance:g} %)")
        if last < first * (1 - args.heap_tolerance / 100):
            findings.append(f"heap leak: free heap fell from {first:.0f} to {last:.0f} B")
    p99 = [r["p99_ms"] for r in after if r.get("p99_ms") is not None]
    p50 = [r["p50_ms"] for r in after if r.get("p50_ms") is not None]
    if p50:
        lines.append(f"latency after warm-up: p50 {statistics.median(p50):.2f} ms (median of "
                     f"samples), p99 first {p99[0]:.2f} ms, last {p99[-1]:.2f} ms, worst "
                     f"{max(p99):.2f} ms (reported, not judged)")
    return findings, lines


def verdict(soak, warmup):
    a = soak.args
    reasons = []
    if soak.mismatches:
        reasons.append(f"count mismatch in {len(soak.mismatches)} of {len(soak.rows)} quiet "
                       f"checks, first at {soak.mismatches[0]}")
    if soak.unreachable:
        reasons.append(f"/health unreachable in {len(soak.unreachable)} of {len(soak.rows)} "
                       f"samples, first at {soak.unreachable[0]}")
    reasons += list(dict.fromkeys(soak.failures))   # keep order, drop repeats
    if soak.errors:
        reasons.append(f"{len(soak.errors)} wrong relayed frames, first: {soak.errors[0]}")
    if soak.lost:
        reasons.append(f"{soak.lost} relayed frames lost (not arrived within "
                       f"{a.relay_timeout:g} s while both peers were connected)")
    if not [r for r in soak.rows if r["phase"] != "warmup"]:
        reasons.append("no sample after the warm-up: run longer or sample more often")
    findings, lines = leak_findings(soak.rows, a)
    reasons += findings
    c = soak.counts
    lines.insert(0, f"{a.seconds:g} s against {a.url}: {len(soak.rows)} samples (warm-up "
                    f"{warmup:g} s), {soak.relayed_total} frames relayed, {soak.lost} lost, "
                    f"{c['joins']} joins, {c['abrupt']} abrupt (RST), {c['polite']} polite "
                    f"(goodbye), {c['silenced']} silent")
    mismatches = sum(1 for r in soak.rows if not r["match"])
    lines.insert(1, f"count checks: {len(soak.rows) - mismatches} of {len(soak.rows)} matched "
                    f"(connections and peers from /health against the generator's, quiet)")
    lines.insert(2, f"silent peers: {c['silent_dropped']} dropped by the hub's timeout "
                    f"(verified after {a.peer_timeout:g}+{a.timeout_grace:g} s), "
                    f"{c['silent_unverified']} still within it at the end (closed by the "
                    f"generator, unverified)")
    return reasons, lines


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def write_plot(path, rows):
    """Returns None, or why there is no plot."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'pigeonhub-wasm[bench]')"
    t = [r["t"] for r in rows]
    panels = [("RSS (MiB)", [(r.get("rss_bytes") or 0) / 2**20 or None for r in rows]),
              ("descriptors", [r.get("fds") for r in rows]),
              ("free heap (B)", [r.get("free_heap") for r in rows]),
              ("latency p50/p99 (ms)", None),
              ("connections hub/expected", None)]
    panels = [p for p in panels if p[1] is None or any(v is not None for v in p[1])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), sharex=True)
    for ax, (label, values) in zip(axes, panels):
        if label.startswith("latency"):
            ax.plot(t, [r.get("p50_ms") for r in rows], label="p50")
            ax.plot(t, [r.get("p99_ms") for r in rows], label="p99")
            ax.legend(fontsize=7)
        elif label.startswith("connections"):
            ax.plot(t, [r.get("hub_connections") for r in rows], "o-", label="hub")
            ax.plot(t, [r.get("expected_connections") for r in rows], "x--", label="expected")
            ax.legend(fontsize=7)
        else:
            ax.plot(t, values, "o-", markersize=3)
        ax.set_ylabel(label, fontsize=8)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def run(args):
    if args.seconds <= 0 or args.interval <= 0 or args.rate <= 0 or args.churn < 0:
        raise SystemExit("E soak: --seconds, --interval and --rate must be positive")
    if args.peers < 2 or args.silent < 0 or args.peers + args.silent > MAX_PEERS - 2:
        raise SystemExit(f"E soak: need 2 <= --peers and --peers + --silent <= {MAX_PEERS - 2} "
                         f"(the hub's MAX_PEERS {MAX_PEERS}, 2 slots for closes in flight)")
    if not args.url.startswith(("ws://", "wss://")):
        raise SystemExit(f"E soak: URL must look like ws://host:port, not {args.url!r}")
    soak = Soak(args)
    log(f"{args.seconds:g} s against {args.url}: {args.peers} active peers, up to {args.silent} "
        f"silent, {args.rate:g} frames/s, {args.churn:g} churn events/s, a quiet sample every "
        f"{args.interval:g} s")
    try:
        warmup = event_loop.run(soak.run())
    except KeyboardInterrupt:
        print("FAIL: interrupted")
        return 1
    reasons, lines = verdict(soak, warmup)
    for line in lines:
        print(line)
    if args.csv:
        write_csv(args.csv, soak.rows)
        print(f"CSV: {args.csv}")
    if args.plot:
        why = write_plot(args.plot, soak.rows)
        print(f"plot: {args.plot}" if why is None else f"plot: none, {why}")
    if reasons:
        print("FAIL: " + "; ".join(reasons))
        return 1
    print("PASS")
    return 0

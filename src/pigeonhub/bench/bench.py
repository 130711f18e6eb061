"""`pigeonhub bench`: load figures of a hub (PC hub vs. the reference server) and device figures.

  pigeonhub bench                          PC hub and reference Node server, alternately, 3 rounds
  pigeonhub bench --url ws://host:port     one hub (anything speaking the PeerPigeon protocol); a
                                           board's cycles per frame from its /stats too
  pigeonhub bench --url wss://host:port --ca ca.pem   the same over TLS (--ca: a self-signed one)
  pigeonhub bench --url pigeonhub-ab12     the same, by a name `pigeonhub discover` lists
  pigeonhub bench --peers 5,10,20          a sweep (the report plots it)
  pigeonhub bench --device                 hub.wasm size/layout, WASM3 heap (32-bit build),
                                           instructions per relayed frame, ESP32 projection
  pigeonhub bench --all --report DIR       both, plus DIR/report.md and DIR/bench.png

Timing figures depend on this machine and on what else runs on it; they are printed with the
method, never asserted. The device figures are counts (bytes, instructions) and repeat exactly.
"""

import asyncio
import json
import statistics
import sys
import time

from pigeonhub import event_loop
from pigeonhub.bench import board_cycles, load as bench_load, servers as bench_servers

# (key, label, unit, higher_is_better) of every load figure, in table order
FIGURES = [
    ("discovery_ms", "discovery of N·(N−1) peers", "ms", False),
    ("offer.throughput", "4.5 KB offers relayed", "msg/s", True),
    ("offer.p50_ms", "4.5 KB offer latency p50", "ms", False),
    ("offer.p99_ms", "4.5 KB offer latency p99", "ms", False),
    ("offer.hub_cpu_us", "hub CPU per 4.5 KB offer", "µs", False),
    ("ice.throughput", "360 B candidates relayed", "msg/s", True),
    ("ice.p50_ms", "360 B candidate latency p50", "ms", False),
    ("ice.p99_ms", "360 B candidate latency p99", "ms", False),
    ("ice.hub_cpu_us", "hub CPU per 360 B candidate", "µs", False),
]
OURS, REFERENCE = "PC hub", "reference"


def log(msg):
    print(f"I ({int(time.monotonic() * 1000) % 10_000_000}) bench: {msg}", file=sys.stderr,
          flush=True)


def add_arguments(parser):
    parser.add_argument("--url", help="benchmark only this hub (ws://host:port, or a name from "
                                      "`pigeonhub discover`: pigeonhub-ab12[.local]); default: start "
                                      "the PC hub and the reference server on 127.0.0.1 and compare")
    parser.add_argument("--ca", metavar="FILE",
                        help="with a wss:// --url: also trust this CA certificate (PEM), e.g. the one "
                             "that signed a board's self-signed certificate")
    parser.add_argument("--peers", default="20",
                        help="peers per run, or a comma-separated sweep (default 20; the PC hub "
                             "accepts at most MAX_PEERS=20)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per hub and peer count (default 3)")
    parser.add_argument("--relays", type=int, default=2000,
                        help="frames relayed per kind and run (default 2000)")
    parser.add_argument("--window", type=int, default=32, help="frames in flight (default 32)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds allowed per phase of a run (default 30)")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop starting new runs after this long (default 600)")
    parser.add_argument("--node-modules", help="node_modules holding peerpigeon (default "
                                               "test/interop/node_modules)")
    parser.add_argument("--device", action="store_true",
                        help="device figures only (module size, heap, instructions, projection)")
    parser.add_argument("--all", action="store_true", help="load figures and device figures")
    parser.add_argument("--module", help="hub.wasm to measure (default: build one)")
    parser.add_argument("--report", metavar="DIR", help="write DIR/report.md and DIR/bench.png")
    parser.add_argument("--json", metavar="FILE", help="also write all raw figures as JSON")


def _get(result, key):
    value = result
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _parse_peers(text):
    try:
        peers = sorted({int(p) for p in str(text).split(",") if p.strip()})
    except ValueError:
        raise SystemExit(f"E bench: --peers wants numbers like 20 or 5,10,20, not {text!r}")
    if not peers or peers[0] < 2:
        raise SystemExit("E bench: --peers must be at least 2")
    return peers


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs):
    """runs: {hub: {peers: [result|{'error':..}]}} -> {hub: {peers: {figure: median}}}"""
    out = {}
    for hub, by_peers in runs.items():
        out[hub] = {}
        for peers, results in by_peers.items():
            ok = [r for r in results if "error" not in r]
            row = {key: _median([_get(r, key) for r in ok]) for key, *_ in FIGURES}
            row["runs"] = len(ok)
            row["errors"] = [r["error"] for r in results if "error" in r]
            out[hub][peers] = row
    return out


def _fmt(value, unit=""):
    if value is None:
        return "—"
    if unit == "msg/s" or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def load_table(summary, peers):
    """Markdown table for one peer count: figure | ours | reference | ours/reference."""
    hubs = list(summary)
    head = "| figure | " + " | ".join(f"{h} (median)" for h in hubs)
    if len(hubs) == 2:
        head += " | ours/reference | better |"
    else:
        head += " |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for key, label, unit, higher in FIGURES:
        values = [summary[h].get(peers, {}).get(key) for h in hubs]
        if all(v is None for v in values):
            continue
        cells = [f"{_fmt(v, unit)} {unit}" if v is not None else "—" for v in values]
        line = f"| {label} | " + " | ".join(cells)
        if len(hubs) == 2:
            ours, ref = values
            if ours is not None and ref:
                ratio = ours / ref
                better = (ratio >= 1) if higher else (ratio <= 1)
                line += f" | {ratio:.2f}× | {'ours' if better else 'reference'} |"
            else:
                line += " | — | — |"
        else:
            line += " |"
        lines.append(line)
    return "\n".join(lines)


def verdicts(summary, peers=20):
    """The two load targets of the issue, as (text, met) pairs; empty without both hubs."""
    if OURS not in summary or REFERENCE not in summary:
        return []
    ours, ref = summary[OURS].get(peers, {}), summary[REFERENCE].get(peers, {})
    out = []
    for key, label, cmp in (("offer.throughput", "4.5 KB offer throughput ≥ reference", "ge"),
                            ("offer.p99_ms", "4.5 KB offer p99 latency ≤ reference", "le")):
        a, b = ours.get(key), ref.get(key)
        if a is None or b is None:
            out.append((f"{label} at {peers} peers: not measured", None))
            continue
        met = a >= b if cmp == "ge" else a <= b
        out.append((f"{label} at {peers} peers: {_fmt(a)} vs {_fmt(b)} → "
                    f"{'met' if met else 'NOT met'}", met))
    return out


async def _one_run(hub_name, url, peers, args, cpu_probe):
    try:
        return await bench_load.run_load(url, peers, args.relays, args.window, args.timeout,
                                         cpu_probe=cpu_probe,
                                         ssl_context=getattr(args, "ssl_context", None))
    except bench_load.BenchError as exc:
        return {"error": str(exc)}
    except asyncio.TimeoutError:
        return {"error": f"no answer within {args.timeout:.0f} s"}


def run_load_bench(args):
    """Returns {hub: {peers: [results]}} and the hub descriptions."""
    peer_counts = _parse_peers(args.peers)
    hubs = []
    meta = {"peers": peer_counts, "rounds": args.rounds, "relays": args.relays,
            "window": args.window}
    started = []
    try:
        if args.url:
            hubs.append(("hub", args.url, None))
        else:
            start_js = bench_servers.find_reference_server(args.node_modules)
            if start_js is None:
                log("reference server not found (test/interop/node_modules/peerpigeon: run "
                    "scripts/setup.sh test, or pass --node-modules); benchmarking the PC hub alone")
            candidates = [(OURS, bench_servers.pc_hub())]
            if start_js is not None:
                candidates.append((REFERENCE, bench_servers.reference_hub(start_js)))
            for name, proc in candidates:
                try:
                    proc.start()
                except RuntimeError as exc:
                    log(f"E: {exc}")
                    meta.setdefault("start_errors", {})[name] = str(exc)
                    continue
                started.append(proc)
                hubs.append((name, proc.url, proc))
                moved = "" if proc.port == proc.requested_port else \
                    f" (asked for {proc.requested_port}: it moved)"
                log(f"{name} listening on {proc.url}{moved}")
            if not hubs:
                return {}, meta
        runs = {name: {p: [] for p in peer_counts} for name, _, _ in hubs}
        deadline = time.monotonic() + args.max_seconds
        for peers in peer_counts:
            for rnd in range(args.rounds):
                # alternate the order so slow drift of the machine hits both hubs alike
                order = hubs if rnd % 2 == 0 else list(reversed(hubs))
                for name, url, proc in order:
                    if time.monotonic() > deadline:
                        log(f"--max-seconds {args.max_seconds:.0f} reached: stopping")
                        return runs, meta
                    if proc is not None and proc.proc.poll() is not None:
                        runs[name][peers].append({"error": f"{name} exited "
                                                           f"({proc.proc.returncode})"})
                        continue
                    probe = proc.cpu_seconds if proc is not None else None
                    result = event_loop.run(_one_run(name, url, peers, args, probe))
                    if proc is not None:
                        result["rss_bytes"] = proc.rss_bytes()
                    runs[name][peers].append(result)
                    if "error" in result:
                        log(f"{name}, {peers} peers, round {rnd + 1}: FAILED: {result['error']}")
                    else:
                        log(f"{name}, {peers} peers, round {rnd + 1}: discovery "
                            f"{result['discovery_ms']:.1f} ms, offers "
                            f"{result['offer']['throughput']:.0f} msg/s p99 "
                            f"{result['offer']['p99_ms']:.1f} ms, candidates "
                            f"{result['ice']['throughput']:.0f} msg/s p99 "
                            f"{result['ice']['p99_ms']:.1f} ms")
        return runs, meta
    finally:
        for proc in started:
            proc.stop()


def print_load(summary, meta):
    print(f"\nLoad figures: median of {meta['rounds']} rounds; {meta['relays']} frames per kind, "
          f"window {meta['window']}, loopback, load generator on the same CPUs (timing is noisy).")
    for peers in meta["peers"]:
        print(f"\n{peers} peers (discovery = {peers * (peers - 1)} peer-discovered frames):\n")
        print(load_table(summary, peers))
        for hub, rows in summary.items():
            for err in rows.get(peers, {}).get("errors", []):
                print(f"  {hub}: failed run: {err}")
    print()
    plain = []
    for hub, rows in summary.items():
        for peers, row in rows.items():
            if row["runs"] and row.get("offer.throughput"):
                plain.append(f"{hub} with {peers} peers relays {_fmt(row['offer.throughput'])} "
                             f"offers/s (p99 {_fmt(row['offer.p99_ms'])} ms) and "
                             f"{_fmt(row['ice.throughput'])} candidates/s; all {peers} peers "
                             f"discover each other in {_fmt(row['discovery_ms'])} ms.")
    target_peers = 20 if 20 in meta["peers"] else meta["peers"][-1]
    for text, _met in verdicts(summary, target_peers):
        plain.append("Target: " + text)
    print("Summary:\n  " + "\n  ".join(plain) if plain else "Summary: no successful run.")


def resolve_url(url):
    """--url with a discovered name in it (pigeonhub-ab12, ws://pigeonhub-ab12.local:3000) turned
    into the address it advertises; SystemExit with the fix when no hub answers to it."""
    from pigeonhub import mdns
    try:
        resolved = mdns.resolve_url(url)
    except mdns.NameNotFound as exc:
        raise SystemExit(f"E bench: {exc}\n  fix: {mdns.not_found_fix()}")
    except mdns.MdnsError as exc:
        raise SystemExit(f"E bench: cannot look up {url} on the LAN: {exc}\n  fix: give the hub's "
                         "address: --url ws://<IP>:3000")
    if resolved != url:
        log(f"{url} is {resolved} (mDNS)")
    return resolved


def run(args) -> int:
    if args.url:
        args.url = resolve_url(args.url)
    want_load = not args.device or args.all
    want_device = args.device or args.all
    results = {"load": None, "device": None}
    status = 0
    args.ssl_context = None
    if getattr(args, "ca", None):
        from pigeonhub.hub.ws import client_ssl_context
        try:
            args.ssl_context = client_ssl_context(args.ca)
        except (OSError, ValueError) as exc:
            print(f"E bench: --ca {args.ca} is not a readable PEM CA certificate "
                  f"({getattr(exc, 'strerror', None) or exc})", file=sys.stderr)
            return 2
    if want_load:
        cycles_before = board_cycles.read(args.url, ssl_context=args.ssl_context) if args.url else None
        runs, meta = run_load_bench(args)
        cycles_after = (board_cycles.read(args.url, ssl_context=args.ssl_context)
                        if cycles_before is not None else None)
        summary = summarise(runs)
        for name, err in meta.get("start_errors", {}).items():
            print(f"E bench: {name} did not start: {err}", file=sys.stderr)
        print_load(summary, meta)
        results["load"] = {"meta": meta, "runs": runs, "summary": summary}
        if cycles_after is not None:
            figures = board_cycles.delta(cycles_before, cycles_after)
            print("\n" + board_cycles.table(figures, cycles_after) + "\n")
            results["load"]["board_cycles"] = figures
        if meta.get("start_errors") or any(row["runs"] == 0 for rows in summary.values()
                                           for row in rows.values()):
            status = 1
    if want_device:
        from pigeonhub.bench import device as bench_device
        try:
            device = bench_device.measure(module=args.module, log=log)
        except bench_device.DeviceBenchError as exc:
            print(f"E bench: device figures: {exc}", file=sys.stderr)
            status = 1
        else:
            print(bench_device.format_text(device))
            results["device"] = device
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, default=str)
    if args.report:
        from pigeonhub.bench import report as bench_report
        path = bench_report.write_report(args.report, results, log=log)
        print(f"report: {path}")
    return status

"""`pigeonhub bench --report DIR`: DIR/report.md (docs style) and DIR/bench.png.

The plot needs matplotlib (optional extra `bench`: pip install "pigeonhub-wasm[bench]"); without it
the report is written and the plot is skipped with a message.
"""

import datetime
import os
import platform
from pathlib import Path

from pigeonhub.bench import bench

CLAIMS = ("The original design claimed: module ~15–20 KB, runs in 128 KB of RAM, ~100 messages/s, "
          "~50 ms relay latency (ESP32 on a local network).")


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def plot(path, load, log=print):
    """Throughput and p99 latency against peers, both hubs. Returns the path or None."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: plot skipped (pip install 'pigeonhub-wasm[bench]')")
        return None
    summary, peers = load["summary"], load["meta"]["peers"]
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"offer": "-o", "ice": "--s"}
    labels = {"offer": "4.5 KB offers", "ice": "360 B candidates"}
    colors = ["tab:blue", "tab:orange", "tab:green"]
    for number, (hub, rows) in enumerate(summary.items()):
        for kind in ("offer", "ice"):
            xs = [p for p in peers if rows.get(p, {}).get(f"{kind}.throughput") is not None]
            if not xs:
                continue
            style = dict(color=colors[number % len(colors)], label=f"{hub}, {labels[kind]}")
            ax_t.plot(xs, [rows[p][f"{kind}.throughput"] for p in xs], styles[kind], **style)
            ax_l.plot(xs, [rows[p][f"{kind}.p99_ms"] for p in xs], styles[kind], **style)
    ax_t.set(title="Relay throughput (median of rounds)", xlabel="peers", ylabel="frames/s")
    ax_l.set(title="Relay latency p99 (median of rounds)", xlabel="peers", ylabel="ms")
    for ax in (ax_t, ax_l):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(directory, results, log=print):
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# PigeonHub-WASM benchmark report", "",
             f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} by "
             f"`pigeonhub bench` on {_machine()}.", ""]
    load = results.get("load")
    if load:
        meta = load["meta"]
        lines += ["## Load (PC hub vs. reference server)", "",
                  f"Method: one asyncio load generator (websockets client on uvloop, orjson when "
                  f"installed) on 127.0.0.1; per run, "
                  f"N peers connect and announce in one network (discovery time = until all "
                  f"N·(N−1) `peer-discovered` frames arrived), then {meta['relays']} offers of "
                  f"4.5 KB and {meta['relays']} ICE candidates of 360 B are relayed between "
                  f"rotating peer pairs with {meta['window']} frames in flight. Latency = receive "
                  f"time − send time of each frame (sequence number inside the SDP / candidate). "
                  f"Hubs run alternately, {meta['rounds']} rounds each; the tables show medians. "
                  f"Hub CPU = user+system time of the hub process per relayed frame. The load "
                  f"generator shares the CPUs with the hub: figures are relative, not absolute.",
                  ""]
        target_peers = 20 if 20 in meta["peers"] else meta["peers"][-1]
        for text, met in bench.verdicts(load["summary"], target_peers):
            lines.append(f"- {'✅' if met else '❌' if met is False else '•'} {text}")
        lines.append("")
        for peers in meta["peers"]:
            lines += [f"### {peers} peers", "", bench.load_table(load["summary"], peers), ""]
            for hub, rows in load["summary"].items():
                for err in rows.get(peers, {}).get("errors", []):
                    lines.append(f"- {hub}: failed run: {err}")
        png = plot(out / "bench.png", load, log)
        if png:
            lines += ["![throughput and p99 latency against peers](bench.png)", ""]
    device = results.get("device")
    if device:
        from pigeonhub.bench import device as bench_device
        lines += ["## Device figures", "",
                  "Counts that repeat exactly: module bytes; heap bytes requested by WASM3 and the "
                  "bridge core (tools/heap_probe built with `gcc -m32`, malloc/calloc/realloc/free "
                  "wrapped); x86-32 instructions inside `ph_bridge_on_frame` counted by callgrind "
                  f"for runs of K and 2K frames (K = {device['instructions']['frames_k']}), "
                  "difference ÷ K.", "", bench_device.device_table(device), "",
                  bench_device.PROJECTION_NOTE, ""]
    lines += ["## For comparison", "", CLAIMS, "",
              "Targets: PC hub throughput ≥ reference; p99 latency no worse than the reference "
              "for 4.5 KB offers at 20 peers; hub.wasm ≤ 16 KiB; WASM3 heap with 20 peers "
              "≤ 128 KiB (32-bit build).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path

"""What a board says its frames cost: the `frameCycles` object of its /stats (main/frame_cycles.h),
read before and after a bench run, so that the figures are this run's alone.

Per kind of received frame (offer-size, candidate-size, announce) and stage (transport in, queue
wait, bridge + module, transport out): mean, minimum and maximum cycles per frame. A PC hub, or any
hub without the object, gives None and nothing is printed.
"""

import json
import urllib.request

KINDS = ("offer", "candidate", "announce")
STAGES = (("transportIn", "transport in"), ("queueWait", "queue wait"),
          ("hub", "bridge + module"), ("transportOut", "transport out"))


def stats_url(ws_url):
    return "http" + ws_url[2:].split("?", 1)[0].rstrip("/") + "/stats"


def read(ws_url, timeout=10.0, ssl_context=None):
    """The board's frameCycles object, or None (no such object, or /stats unreachable). A wss://
    URL reads https:// /stats, verified with ssl_context (default: the system's CAs)."""
    try:
        with urllib.request.urlopen(stats_url(ws_url), timeout=timeout,
                                    context=ssl_context) as resp:
            return json.loads(resp.read()).get("frameCycles")
    except (OSError, ValueError):   # URLError is an OSError
        return None


def delta(before, after):
    """{kind: {stage: (count, mean, min, max)}} for the frames between the two readings. Minimum
    and maximum are since boot (a board keeps no per-run extremes)."""
    out = {}
    for kind in KINDS:
        for stage, _ in STAGES:
            a = after.get(kind, {}).get(stage, {})
            b = (before or {}).get(kind, {}).get(stage, {})
            count = a.get("count", 0) - b.get("count", 0)
            if count > 0:
                mean = (a.get("sum", 0) - b.get("sum", 0)) / count
                out.setdefault(kind, {})[stage] = (count, mean, a.get("min", 0), a.get("max", 0))
    return out


def table(figures, reading):
    """Markdown table of delta()'s figures; `reading` (the later one) gives the clock rate."""
    mhz = reading.get("cpuMHz") or 1
    lines = [f"Cycles per frame on the board ({mhz} MHz; /stats frameCycles, this run; min/max "
             "since boot):", "",
             "| frame | stage | frames | mean cycles | µs | min | max |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind in KINDS:
        for stage, label in STAGES:
            if stage in figures.get(kind, {}):
                count, mean, low, high = figures[kind][stage]
                lines.append(f"| {kind} | {label} | {count} | {mean:,.0f} | "
                             f"{mean / mhz:,.1f} | {low:,} | {high:,} |")
    return "\n".join(lines)

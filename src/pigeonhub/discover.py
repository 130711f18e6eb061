"""`pigeonhub discover`: list the hubs on the LAN (mDNS service _pigeonhub._tcp).

    pigeonhub discover [--timeout S]

One line per hub: its name (what `pigeonhub upload --host` and `pigeonhub bench --url` accept), the
URL clients connect to, its hub id and how many peers it has now (read from its GET /health), then a
summary line. Boards advertise themselves when CONFIG_PIGEONHUB_MDNS is on (the default); PC hubs
with `pigeonhub serve --mdns`.

Exit status: 0 at least one hub found, 1 none, 2 mDNS unusable here (the message says why).
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

from . import mdns

HEALTH_TIMEOUT = 2.0   # s per hub for GET /health


def hub_peers(hub, timeout=HEALTH_TIMEOUT):
    """(peers, None) from the hub's /health, or (None, why not)."""
    url = f"http://{hub.address}:{hub.port}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            health = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return None, f"GET {url} failed: {reason}"
    peers = health.get("peers") if isinstance(health, dict) else None
    if not isinstance(peers, int):
        return None, f"GET {url} has no peer count"
    return peers, None


def table(rows):
    """Plain, aligned columns; rows[0] is the header."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("exit status: 0 hubs found, 1 none found, 2 mDNS unusable on this machine\n"
                     "then: pigeonhub upload --host NAME ...   pigeonhub bench --url NAME")
    parser.add_argument("--timeout", type=float, default=mdns.RESOLVE_TIMEOUT, metavar="S",
                        help=f"seconds to listen for answers (default {mdns.RESOLVE_TIMEOUT:g})")


def run(args) -> int:
    if args.timeout <= 0:
        sys.stderr.write(f"Error: --timeout must be more than 0 seconds, not {args.timeout:g}\n")
        return 2
    started = time.monotonic()
    try:
        hubs = mdns.browse(args.timeout)
    except mdns.MdnsError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 2
    if not hubs:
        print(f"no PigeonHub answered on the LAN within {args.timeout:g} s (mDNS _pigeonhub._tcp).\n"
              "  A board advertises itself once it has an address (CONFIG_PIGEONHUB_MDNS, on by\n"
              "  default); a PC hub only with `pigeonhub serve --mdns --host 0.0.0.0`.\n"
              "  Guest Wi-Fi and routers with client isolation block mDNS: then use the IP address\n"
              "  the board prints ('IPv4 address: ...'), or try a longer --timeout.")
        return 1
    rows = [("NAME", "URL", "HUB ID", "PEERS")]
    problems = []
    for hub in hubs:
        peers, problem = hub_peers(hub)
        rows.append((hub.name, hub.url, hub.hub_id or "?", "?" if peers is None else peers))
        if problem:
            problems.append(f"{hub.name}: {problem}")
    print(table(rows))
    for problem in problems:
        print(problem)
    n = len(hubs)
    print(f"{n} hub{'' if n == 1 else 's'} found on the LAN in {time.monotonic() - started:.1f} s")
    return 0

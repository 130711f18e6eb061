"""The status page (GET / for browsers, src/pigeonhub/data/status.html) in headless Chromium on a
phone-sized window: two raw PeerPigeon peers connect in two networks and the page, polling /stats,
must show each under its own network within 2 s, without a reload; one leaves and the page must
drop it. The assertions read what a user sees (the page's text), not the JSON behind it. Runs
against the hub under test: the PC hub, or with --emulated-board the board the session booted."""

import json
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance"))   # hubclient

from headless_chromium import Browser, chromium_path  # noqa: E402
from hubclient import Peer, new_network  # noqa: E402
from hubprocess import http_get  # noqa: E402

PHONE = (390, 844)        # CSS pixels of a common phone screen
SHOW_WITHIN = 2.0         # s from the announces to both peers on the page (issue 12)
DROP_WITHIN = 5.0         # s from a peer's close to its row leaving the page
PAGE_LOAD = 20.0          # s for the first /stats answer (an emulated board on a busy machine)

pytestmark = [pytest.mark.interop,
              pytest.mark.improvement(reason="the reference has no status page: / is its banner")]

# What the user sees: the state line, the hub id, and per network box its heading and rows.
VISIBLE = """(() => ({
  state: document.getElementById("state").innerText,
  hub: document.getElementById("hub").innerText,
  memory: document.getElementById("memlabel").innerText + ": " + document.getElementById("memory").innerText,
  sameDocument: window.loadedOnce === true,
  groups: Object.fromEntries([...document.querySelectorAll("#networks section")].map(s =>
    [s.querySelector("h3 span").innerText, [...s.querySelectorAll("li")].map(li => li.innerText)])),
  overflowsPhone: document.documentElement.scrollWidth > window.innerWidth,
  offHub: performance.getEntriesByType("resource").map(r => r.name)
    .filter(name => !name.startsWith(location.origin + "/")),
}))()"""


def shown_in(network, peer):
    """JS: is the peer's short id on a row of that network's box?"""
    return (f"[...document.querySelectorAll('#networks section')].some(s => "
            f"s.querySelector('h3 span').innerText === {json.dumps(network)} && "
            f"[...s.querySelectorAll('li')].some(li => li.innerText.includes({json.dumps(peer.id[:8])})))")


def test_status_page_follows_peers_live(hub):
    if chromium_path() is None:
        pytest.skip("needs Debian's chromium (scripts/setup.sh test installs it)")
    net_a, net_b = new_network(), new_network()
    peers = []
    with Browser(hub.http + "/", *PHONE) as page:
        try:
            page.wait_for("document.getElementById('state')?.innerText === 'live'", PAGE_LOAD)
            page.evaluate("window.loadedOnce = true")   # gone if the page reloads itself
            a, b = Peer(hub.url), Peer(hub.url)
            peers += [a, b]
            a.expect("connected")
            b.expect("connected")
            a.announce(net_a)
            b.announce(net_b)
            started = time.monotonic()
            page.wait_for(f"{shown_in(net_a, a)} && {shown_in(net_b, b)}",
                          SHOW_WITHIN - (time.monotonic() - started))
            seen = page.evaluate(VISIBLE)
            rows_a, rows_b = seen["groups"][net_a], seen["groups"][net_b]
            assert len(rows_a) == 1 and a.id[:8] in rows_a[0] and b.id[:8] not in rows_a[0], seen
            assert len(rows_b) == 1 and b.id[:8] in rows_b[0], seen
            assert seen["hub"] == json.loads(http_get(hub, "/stats")[2])["hubId"], seen
            memory = "free heap (min): " if hub.kind == "board" else "memory (RSS): "
            assert re.fullmatch(re.escape(memory) + r"[\d.]+ (B|KiB|MiB).*", seen["memory"]), seen
            assert not seen["overflowsPhone"], "the page is wider than a phone screen"
            assert not seen["offHub"], f"the page loaded resources from elsewhere: {seen['offHub']}"

            b.close()
            left = time.monotonic()
            page.wait_for(f"!{shown_in(net_b, b)} && "
                          f"!document.getElementById('networks').innerText.includes("
                          f"{json.dumps(b.id[:8])})", DROP_WITHIN)
            assert time.monotonic() - left <= DROP_WITHIN
            seen = page.evaluate(VISIBLE)
            assert net_b not in seen["groups"] and a.id[:8] in seen["groups"][net_a][0], seen
            assert seen["state"] == "live" and seen["sameDocument"], seen
        except AssertionError:
            print(f"chromium's output (tail):\n{page.log()[-3000:]}")
            raise
        finally:
            for peer in peers:
                peer.close()

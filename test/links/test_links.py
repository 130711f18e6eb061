"""Outgoing hub links between two PC hubs (`pigeonhub serve --bootstrap URL`, docs/PROTOCOL.md §7):
hub B dials hub A; clients on A and on B discover each other and signal across the link; when A
restarts, B's module re-dials with backoff and discovery works again.

Everything is real: two `pigeonhub serve` processes (bridge + module + websockets client and
server) and raw-frame clients speaking the PeerPigeon wire protocol.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from hubclient import Peer, new_network
from hubprocess import ROOT, free_port, http_get, wait_until

LINK_UP_TIMEOUT = 15.0     # s: first dial is immediate; a refused one is retried after ~1-2 s


def stats(hub):
    _status, _ctype, body = http_get(hub, "/stats")
    return json.loads(body)




def link_states(hub):
    return [link.get("state") for link in stats(hub)["links"]]


def wait_link_open(hub, timeout=LINK_UP_TIMEOUT):
    return wait_until(lambda: link_states(hub) == ["open"], timeout,
                      f"{hub.name}'s hub link never showed open in /stats: {hub.log()[-3000:]}")


def client(hub, network):
    peer = Peer(hub.url)
    peer.expect("connected")
    peer.announce(network)
    return peer


def discover_and_signal(a_hub, b_hub):
    """x on A and y on B announce in a fresh network: each learns the other, an offer and an
    answer cross the link. Returns nothing; fails with what was missing."""
    net = new_network()
    x = client(a_hub, net)
    y = client(b_hub, net)
    try:
        # y announced after x: y learns x (the module's cache of peers learned over the link, or
        # A's peer list on link open), x learns y (B forwards the new local announce to A).
        y.expect("peer-discovered", timeout=10, data__peerId=x.id)
        x.expect("peer-discovered", timeout=10, data__peerId=y.id)
        sdp = {"type": "offer", "sdp": "v=0 cross-hub offer"}
        x.signal("offer", {"offer": sdp}, targetPeerId=y.id, fromPeerId=x.id)
        got = y.expect("offer", timeout=10, fromPeerId=x.id)
        assert got["data"]["offer"] == sdp and got.get("networkName") == net
        y.signal("answer", {"answer": {"type": "answer", "sdp": "v=0 back"}}, targetPeerId=x.id,
                 fromPeerId=y.id)
        back = x.expect("answer", timeout=10, fromPeerId=y.id)
        assert back["data"]["answer"]["sdp"] == "v=0 back"
    finally:
        x.close()
        y.close()


def test_link_opens_and_clients_meet_across_it(hubs):
    a = hubs(name="A")
    b = hubs("--bootstrap", a.url + "/", name="B")
    wait_link_open(b)
    link = stats(b)["links"][0]
    assert link["url"].startswith(a.url + "/")
    assert f"connecting to bootstrap hub {a.url}/" in b.log()
    assert "hub link" in b.log() and "open" in b.log()        # the module's own line
    assert stats(b)["server"]["bootstrap"] == [a.url + "/"]
    discover_and_signal(a, b)
    # The link carried it: B's bridge counts frames both ways on it.
    link = stats(b)["links"][0]
    assert link["framesIn"] > 0 and link["framesOut"] > 0


def test_bootstrap_restart_link_comes_back(hubs):
    port = free_port()
    a = hubs("--port", port, name="A")
    b = hubs("--bootstrap", f"ws://127.0.0.1:{port}", name="B")
    wait_link_open(b)
    discover_and_signal(a, b)

    a.proc.kill()                                  # no goodbye: the link just drops
    a.proc.wait(10)
    wait_until(lambda: link_states(b) != ["open"], 10, "B never noticed A was gone")
    # B keeps serving its own clients meanwhile.
    p = Peer(b.url)
    p.expect("connected")
    p.roundtrip()
    p.close()

    a2 = hubs("--port", port, name="A-again")
    # The module re-dials with backoff (1 s, 2 s, 4 s... while A was down): bounded wait.
    wait_link_open(b, timeout=20)
    discover_and_signal(a2, b)
    reconnects = stats(b)["links"][0].get("reconnects")
    assert reconnects is None or reconnects >= 1


def test_unreachable_bootstrap_is_reported_and_hub_serves(hubs):
    dead = free_port()                              # nothing listens there
    b = hubs("--bootstrap", f"ws://127.0.0.1:{dead}/", name="B")
    wait_until(lambda: f"bootstrap hub ws://127.0.0.1:{dead}/ unreachable: connection refused" in b.log(),
               10, "no log line for the refused link")
    link = wait_until(lambda: stats(b)["links"], 5, "no link in /stats")[0]
    assert link["state"] != "open" and link.get("lastError") == "connection refused"
    p = Peer(b.url)
    p.expect("connected")
    p.roundtrip()
    p.close()


def test_bootstrap_naming_this_hub_is_skipped(hubs):
    port = free_port()
    b = hubs("--port", port, "--bootstrap", f"ws://localhost:{port},ws://127.0.0.1:{port}/x",
             name="self")
    assert f"bootstrap hub ws://localhost:{port} is this hub itself: skipped" in b.log()
    assert f"bootstrap hub ws://127.0.0.1:{port}/x is this hub itself: skipped" in b.log()
    time.sleep(1.5)
    s = stats(b)
    assert s["links"] == [] and s["server"]["bootstrap"] == []
    assert len(s["server"]["bootstrapSkipped"]) == 2
    assert "connecting to bootstrap hub" not in b.log()


@pytest.mark.parametrize("value,message", [
    ("http://127.0.0.1:3000/", "'http://127.0.0.1:3000/' is not a ws:// or wss:// URL with a host"),
    ("ws://127.0.0.1:99999/", "'ws://127.0.0.1:99999/' is not a valid URL"),
    ("ws:///nohost", "'ws:///nohost' is not a ws:// or wss:// URL with a host"),
])
def test_bad_bootstrap_url_refused_before_boot(value, message):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, "-m", "pigeonhub.cli", "serve", "--port", "0",
                           "--bootstrap", f"ws://127.0.0.1:1/,{value}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert f"--bootstrap: {message}" in out and "E (" in out
    assert "listening on" not in out

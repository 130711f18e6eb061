"""Plain HTTP on the hub's port (docs/PROTOCOL.md §10): /health, /stats, the banner, the status
page."""

import datetime
import gzip
import json
import re
import time

import pytest

from hubprocess import STATUS_PAGE, http_get, http_request
from hubclient import new_network

BANNER = "PeerPigeon WebSocket Signaling Server"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


def test_health(hub, joined):
    net = new_network()
    a, b = joined(net), joined(net)
    b.expect("peer-discovered", data__peerId=a.id)
    status, ctype, body = http_get(hub, "/health")
    assert status == 200 and ctype.startswith("application/json")
    health = json.loads(body)
    assert health["status"] == "healthy"
    stamp = datetime.datetime.strptime(health["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    if health.get("wallClock") == "unsynced":
        # a board before SNTP (the emulated board has none) counts from 1970 and says so
        assert stamp.year == 1970 and (stamp - datetime.datetime(1970, 1, 1)).total_seconds() > 0
    else:
        assert abs((datetime.datetime.utcnow() - stamp).total_seconds()) < 120
    assert isinstance(health["uptime"], (int, float)) and health["uptime"] > 0
    if hub.kind != "reference":        # start.js runs the reference as a plain server
        assert health["isHub"] is True
    assert health["connections"] >= 2
    assert health["peers"] >= 2
    assert isinstance(health["hubs"], int) and isinstance(health["networks"], int)
    assert health["networks"] >= 1
    assert isinstance(health["memory"], dict) and health["memory"]


def test_health_counts_follow_connections(hub, connect):
    before = json.loads(http_get(hub, "/health")[2])["connections"]
    peers = [connect() for _ in range(3)]
    for p in peers:
        p.expect("connected")
    assert json.loads(http_get(hub, "/health")[2])["connections"] == before + 3


@pytest.mark.improvement(reason="the Node reference has no /stats endpoint (PeerPigeon-Go has)")
def test_stats(hub, joined):
    a = joined(new_network())
    status, ctype, body = http_get(hub, "/stats")
    assert status == 200 and ctype.startswith("application/json")
    stats = json.loads(body)
    assert re.fullmatch(r"[0-9a-f]{40}", stats["hubId"])
    assert isinstance(stats["module"], dict) and isinstance(stats["bridge"], dict)
    assert re.fullmatch(r"[0-9a-f]{64}", stats["module"]["sha256"])
    assert stats["module"]["size"] > 0
    assert stats["uptime"] > 0
    a.roundtrip()


@pytest.mark.parametrize("path", ["/", "/anything", "/health?x=1", "/hubs/nope"])
def test_other_paths_get_the_banner(hub, path):
    status, ctype, body = http_get(hub, path)
    assert status == 200 and ctype.startswith("text/plain")
    assert body == BANNER


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/plain", "text/html;q=0"])
def test_root_keeps_the_banner_for_other_clients(hub, accept):
    status, headers, body = http_request(hub, "/", {"Accept": accept} if accept else {})
    assert status == 200 and headers.get("Content-Type", "").startswith("text/plain")
    assert body.decode() == BANNER


@pytest.mark.improvement(reason="the reference answers every GET with its banner")
def test_root_serves_the_status_page_to_browsers(hub):
    status, headers, body = http_request(hub, "/", {"Accept": BROWSER_ACCEPT,
                                                    "Accept-Encoding": "gzip, deflate"})
    assert status == 200 and headers.get("Content-Type", "").startswith("text/html")
    if headers.get("Content-Encoding") == "gzip":   # the board's copy is gzipped at build time
        body = gzip.decompress(body)
    assert body == STATUS_PAGE.read_bytes()
    # a browser on another path, or asking for JSON, gets what it asked for
    assert http_request(hub, "/health", {"Accept": BROWSER_ACCEPT})[1]["Content-Type"].startswith(
        "application/json")
    assert http_request(hub, "/elsewhere", {"Accept": BROWSER_ACCEPT})[2].decode() == BANNER


def stats_peers(hub):
    return {p["peerId"]: p for p in json.loads(http_get(hub, "/stats")[2])["peers"]}


@pytest.mark.improvement(reason="the Node reference has no /stats endpoint")
def test_stats_lists_each_peer_with_its_network(hub, connect, joined):
    net_a, net_b = new_network(), new_network()
    a, b = joined(net_a), joined(net_b)
    quiet = connect()
    quiet.expect("connected")
    a.roundtrip()
    peers = stats_peers(hub)
    assert peers[a.id]["network"] == net_a and peers[b.id]["network"] == net_b
    assert peers[quiet.id]["network"] is None           # connected, not announced (yet)
    for p in (a, b, quiet):
        entry = peers[p.id]
        assert isinstance(entry["conn"], int) and entry["conn"] >= 0
        assert 0 <= entry["connectedMs"] < 60_000
        assert entry["framesIn"] >= (0 if p is quiet else 1) and entry["framesOut"] >= 1
    b.close()
    deadline = time.monotonic() + 5
    while b.id in (peers := stats_peers(hub)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert b.id not in peers and a.id in peers

"""Plain HTTP on the hub's port (docs/PROTOCOL.md §10): /health, /stats, the banner."""

import datetime
import json
import re

import pytest

from hubprocess import http_get
from hubclient import new_network

BANNER = "PeerPigeon WebSocket Signaling Server"


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

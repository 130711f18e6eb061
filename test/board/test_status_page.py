"""The status page on the emulated board: GET / from a browser gets the page the build gzipped
from src/pigeonhub/data/status.html (byte for byte once decompressed), every other client the
banner, and /stats carries the peer list the page draws, in the PC hub's shape.

It needs no board of its own: it runs on the session's board (the `hub` fixture), which
test/conformance and test/interop then reuse in the same run (scripts/test.sh), so it costs
seconds, not a boot. test/interop/test_status_page_in_chromium.py reads the page in Chromium on
that board.
"""

import gzip
import json

from hubclient import Peer, new_network
from hubprocess import STATUS_PAGE, http_request

BANNER = b"PeerPigeon WebSocket Signaling Server"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PEER_KEYS = {"conn", "peerId", "network", "connectedMs", "framesIn", "framesOut"}
TIMEOUT = 10.0   # s per HTTP request: the emulated board shares a loaded machine


def test_board_sends_the_gzipped_page_to_browsers_and_the_banner_to_others(board_target, hub):
    status, headers, body = http_request(hub, "/", {"Accept": BROWSER_ACCEPT,
                                                    "Accept-Encoding": "gzip, deflate"}, TIMEOUT)
    source = STATUS_PAGE.read_bytes()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Encoding"] == "gzip"
    assert int(headers["Content-Length"]) == len(body) < len(source)
    assert gzip.decompress(body) == source, "the firmware's page is not the repository's"
    for accept in (None, "*/*", "application/json"):
        status, headers, body = http_request(hub, "/", {"Accept": accept} if accept else {}, TIMEOUT)
        assert status == 200 and body == BANNER and "Content-Encoding" not in headers, accept


def test_board_stats_list_two_peers_in_their_networks(board_target, hub):
    net_a, net_b = new_network(), new_network()
    peers = []
    try:
        for net in (net_a, net_b):
            peer = Peer(hub.url)
            peers.append(peer)
            peer.expect("connected")
            peer.announce(net)
            peer.roundtrip()   # its announce has taken effect
        stats = json.loads(http_request(hub, "/stats", timeout=TIMEOUT)[2])
        listed = {p["peerId"]: p for p in stats["peers"]}
        for peer, net in zip(peers, (net_a, net_b)):
            entry = listed[peer.id]
            assert set(entry) == PEER_KEYS, entry
            assert entry["network"] == net, entry
            assert 0 <= entry["connectedMs"] < 60_000 and entry["framesIn"] >= 2, entry
        assert isinstance(stats["memory"]["freeHeap"], int), stats["memory"]   # the page's memory
    finally:
        for peer in peers:
            peer.close()

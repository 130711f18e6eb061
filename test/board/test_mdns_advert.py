"""mDNS on the emulated board (main/mdns_advert.c): the firmware starts the mdns component once it
has an address, logs the name it answers to, and keeps serving peers with it running.

What this cannot show: that the board answers mDNS queries. QEMU's user-mode network (slirp, run
with restrict=on) carries no multicast between the board and this machine, so no query reaches
it and no answer leaves it. The answering side is ESP-IDF's mdns component itself; the names and
TXT keys it is given are the ones test/discovery proves with the PC hub, and
test/firmware/test_config_consistency.py holds the two sides to the same names.

Expected under emulation: three E lines from the Ethernet driver when mDNS joins its multicast
group ("Failed to add multicast filter for IPv4": QEMU's OpenCores MAC has no multicast filter).

It needs no board of its own: it reads the session board's boot log (the `hub` fixture), as
test_status_page.py does.
"""

import json
import re

from hubclient import Peer, new_network
from hubprocess import http_get

TIMEOUT = 10.0   # s per HTTP request: the emulated board shares a loaded machine
HUB_PORT = 3000  # CONFIG_PIGEONHUB_PORT, the port inside the board


def test_board_advertises_its_name_and_serves_with_mdns_on(board_target, hub):
    board = hub.board
    hub_id = board.wait_for(r"I \(\d+\) pigeonhub: hub id ([0-9a-f]{40})\r?\n").group(1)
    line = board.wait_for(r"I \(\d+\) pigeonhub: mDNS: (\S+)\.local, _pigeonhub\._tcp on port (\d+)\r?\n",
                          timeout=30)
    assert line.group(1) == f"pigeonhub-{hub_id[:4]}" and int(line.group(2)) == HUB_PORT, line.group(0)
    assert not re.search(r"[WE] \(\d+\) pigeonhub: mDNS", board.boot_log()), board.boot_log()

    a, b = Peer(hub.url), Peer(hub.url)
    try:
        net = new_network()
        for peer in (a, b):
            peer.expect("connected")
            peer.announce(net)
        b.expect("peer-discovered", data__peerId=a.id)
        a.signal("offer", {"type": "offer", "sdp": "v=0"}, targetPeerId=b.id)
        assert b.expect("offer", fromPeerId=a.id)["data"]["sdp"] == "v=0"
        health = json.loads(http_get(hub, "/health", TIMEOUT)[2])
        assert health["status"] == "healthy" and health["peers"] >= 2, health
    finally:
        a.close()
        b.close()

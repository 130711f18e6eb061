"""docs/PROTOCOL.md §12 items 1-2: upgrade on any path, `connected` first, peer-id checks,
capacity."""

import pytest

from hubprocess import wait_for_connections
from hubclient import new_id

MAX_PEERS = 20  # wasm/pigeonhub_abi.h MAX_PEERS; the reference runs with MAX_CONNECTIONS=20


@pytest.mark.parametrize("path, query", [
    ("/", "peerId={id}"),                 # what browsers send for ws://host:port/?peerId=
    ("", "peerId={id}"),                  # ws://host:port?peerId= (no slash)
    ("/x/y", "a=1&peerId={id}"),          # any path, extra query parameters kept by clients
    ("/signal", "peerId={id}&b=2"),
])
def test_upgrade_on_any_path_and_connected_first(connect, path, query):
    peer_id = new_id()
    peer = connect(peer_id, path=path, query=query.format(id=peer_id))
    # The 1.1.3 client announces from onopen without waiting: `connected` must still come first.
    peer.announce("net-first")
    first = peer._read(5)
    assert first is not None, "no frame after the upgrade"
    assert first["type"] == "connected"
    assert first["data"] == {"peerId": peer_id}
    assert first["fromPeerId"] == "system"
    assert isinstance(first["timestamp"], int) and first["timestamp"] > 0


def test_uppercase_hex_id_is_accepted(connect):
    peer_id = new_id().upper()  # the reference's regex is [a-fA-F0-9]{40}
    peer = connect(peer_id)
    assert peer.expect("connected")["data"]["peerId"] == peer_id


@pytest.mark.parametrize("query", [
    "",                                   # no query at all
    "peerId=",                            # empty
    "peerId=" + "a" * 39,                 # one short
    "peerId=" + "a" * 41,                 # one long
    "peerId=" + "g" * 40,                 # not hex
    "peerid=" + "a" * 40,                 # wrong parameter name (case matters)
])
def test_invalid_peer_id_closed_1008(connect, query):
    peer = connect(query=query)
    code, reason = peer.expect_close()
    assert (code, reason) == (1008, "Invalid peerId format")
    assert not [m for m in peer.received if m.get("type") == "connected"]


def test_duplicate_id_closed_1008_and_first_keeps_working(connect):
    first = connect()
    first.expect("connected")
    second = connect(first.id)
    assert second.expect_close() == (1008, "Peer already connected")
    pong = first.roundtrip()
    assert pong["targetPeerId"] == first.id


def test_capacity_refuses_21st_then_frees_a_slot(hub, connect):
    wait_for_connections(hub, 0)
    peers = []
    for _ in range(MAX_PEERS):
        peer = connect()
        peer.expect("connected")
        peers.append(peer)
    extra = connect()
    assert extra.expect_close() == (1008, "Maximum connections reached")
    # everyone admitted is still served
    peers[0].roundtrip()
    peers[-1].roundtrip()
    # a peer leaves: its slot is free for a newcomer
    peers[5].close()
    wait_for_connections(hub, MAX_PEERS - 1)
    newcomer = connect()
    assert newcomer.expect("connected")["data"]["peerId"] == newcomer.id
    newcomer.roundtrip()
    # and the hub is full again
    again = connect()
    assert again.expect_close() == (1008, "Maximum connections reached")

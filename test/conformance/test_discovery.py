"""docs/PROTOCOL.md §12 item 3: `announce` -> `peer-discovered` within a network, never across."""

import pytest

from hubclient import new_network, of_type


def test_discovery_within_network_only(joined):
    net_a, net_b = new_network(), new_network()
    a = joined(net_a, extra="x")   # extra announce data must reach the other peer
    c = joined(net_b)
    b = joined(net_a)

    to_a = a.expect("peer-discovered", data__peerId=b.id)
    to_b = b.expect("peer-discovered", data__peerId=a.id)
    for frame, recipient in ((to_a, a), (to_b, b)):
        assert frame["targetPeerId"] == recipient.id
        assert frame["networkName"] == net_a
        assert frame["fromPeerId"] == "system"
        assert frame["data"]["isHub"] is False
        assert isinstance(frame["timestamp"], int)
    assert to_b["data"]["extra"] == "x"

    # exactly one each, and nothing about (or for) the peer in the other network
    rest = {p: p.drain() for p in (a, b, c)}
    assert of_type(rest[a], "peer-discovered") == []
    assert of_type(rest[b], "peer-discovered") == []
    assert of_type(rest[c], "peer-discovered") == []
    assert not [m for m in a.received + b.received
                if m.get("type") == "peer-discovered" and m["data"].get("peerId") == c.id]


def test_late_joiner_gets_every_existing_peer(joined):
    net = new_network()
    early = [joined(net) for _ in range(3)]
    late = joined(net)
    found = {late.expect("peer-discovered", data__peerId=p.id)["data"]["peerId"] for p in early}
    assert found == {p.id for p in early}
    for p in early:
        p.expect("peer-discovered", data__peerId=late.id, targetPeerId=p.id)


def test_announce_without_network_is_global(joined):
    a = joined()
    b = joined()
    a.send({"type": "announce", "data": {"peerId": a.id}})
    b.send({"type": "announce", "data": {"peerId": b.id}})
    frame = b.expect("peer-discovered", data__peerId=a.id)
    assert frame["networkName"] == "global"


@pytest.mark.improvement(reason="the reference keeps a re-announced peer in its old network "
                                "(docs/PROTOCOL.md §3); this hub moves it")
def test_reannounce_moves_peer_to_new_network(joined):
    net_x, net_y = new_network(), new_network()
    mover = joined(net_x)
    mover.announce(net_y)
    mover.drain(0.3)
    in_x = joined(net_x)
    in_y = joined(net_y)
    in_y.expect("peer-discovered", data__peerId=mover.id, networkName=net_y)
    assert not of_type(in_x.drain(), "peer-discovered", data__peerId=mover.id)

"""docs/PROTOCOL.md §12 item 4: offer/answer/ice-candidate relay rules."""

import random
import string

import pytest

from hubclient import new_id, new_network, of_type


def fake_sdp(size):
    """An SDP-shaped string of `size` characters (real offers are about 4.5 KB, §2)."""
    head = "v=0\r\no=- 3445100876973446344 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    line = "a=candidate:" + "".join(random.choices(string.ascii_letters, k=60)) + "\r\n"
    body = (line * (size // len(line) + 1))
    return (head + body)[:size]


@pytest.mark.parametrize("type_, data", [
    ("offer", {"type": "offer", "sdp": fake_sdp(4500)}),
    ("answer", {"type": "answer", "sdp": fake_sdp(3900)}),
    ("ice-candidate", {"candidate": "candidate:3077952869 1 udp 2122265344 127.0.0.1 45500 typ "
                                    "host generation 0 ufrag wwwZ network-id 2",
                       "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "wwwZ"}),
])
def test_signaling_relayed_with_from_target_network_timestamp(joined, type_, data):
    net = new_network()
    a, b = joined(net), joined(net)
    a.signal(type_, data, targetPeerId=b.id)
    got = b.expect(type_, fromPeerId=a.id)
    assert got["data"] == data
    assert got["targetPeerId"] == b.id
    assert got["networkName"] == net
    assert isinstance(got["timestamp"], int)
    assert "maxPeers" not in got  # the hub rebuilds the frame (§2)


def test_8k_sdp_frame_passes(joined):
    net = new_network()
    a, b = joined(net), joined(net)
    offer = {"type": "offer", "sdp": fake_sdp(8000)}
    a.signal("offer", offer, targetPeerId=b.id)
    assert b.expect("offer", fromPeerId=a.id)["data"] == offer


def test_relay_across_networks_dropped(joined):
    net_a, net_c = new_network(), new_network()
    a, c = joined(net_a), joined(net_c)
    a.signal("offer", {"type": "offer", "sdp": fake_sdp(500)}, targetPeerId=c.id)
    assert of_type(c.drain(), "offer") == []
    assert of_type(a.drain(0.1), "error") == []


def test_unknown_target_dropped_silently(joined):
    a = joined(new_network())
    a.signal("offer", {"type": "offer", "sdp": fake_sdp(500)}, targetPeerId=new_id())
    assert a.drain() == []


def test_no_target_dropped_silently(joined):
    net = new_network()
    a, b = joined(net), joined(net)
    a.signal("offer", {"type": "offer", "sdp": fake_sdp(500)})
    assert of_type(b.drain(), "offer") == []


def test_frame_without_network_reaches_only_global_targets(joined):
    net = new_network()
    a = joined(net)
    in_net = joined(net)
    glob = joined()                 # never announced: counts as "global"
    glob_announced = joined("global")
    candidate = {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0",
                 "sdpMLineIndex": 0}
    for target in (in_net, glob, glob_announced):
        a.send({"type": "ice-candidate", "data": candidate, "targetPeerId": target.id})
    for target in (glob, glob_announced):
        got = target.expect("ice-candidate", fromPeerId=a.id)
        assert got["networkName"] == "global"
        assert got["targetPeerId"] == target.id
    assert of_type(in_net.drain(), "ice-candidate") == []


def test_sender_need_not_announce(joined):
    net = new_network()
    b = joined(net)
    a = joined()  # connected, never announced
    a.send({"type": "answer", "data": {"type": "answer", "sdp": fake_sdp(300)},
            "networkName": net, "targetPeerId": b.id})
    assert b.expect("answer", fromPeerId=a.id)["networkName"] == net


@pytest.mark.improvement(reason="the reference trusts a client-supplied fromPeerId (§11: "
                                "spoofing works); this hub uses the sender's connection id")
def test_client_cannot_spoof_from_peer_id(joined):
    net = new_network()
    a, b = joined(net), joined(net)
    forged = new_id()
    a.signal("offer", {"type": "offer", "sdp": fake_sdp(400)}, targetPeerId=b.id, fromPeerId=forged)
    got = b.expect("offer")
    assert got["fromPeerId"] == a.id

"""A real reference hub (npm peerpigeon 1.1.3 PeerPigeonServer, isHub, "G3") dials our PC hub as
its bootstrap: scenario S2/S3 of docs/PROTOCOL.md §7.7 with our hub as the bootstrap, §12 item 9.

Clients are raw-frame peers (exact wire checks) or headless PeerPigeonMesh clients with real
WebRTC (@roamhq/wrtc through the override in test/interop). Which client joins first matters:
the late joiner learns the early one only from what its own hub kept (the reference keeps peers
learned from its bootstrap; §7.4 asks the same of us). The 1.1.3 client lets only the larger id
send the offer, so the tests fix ids to make the late joiner the one that must have discovered
the other.
"""

import time
import uuid

import pytest

from hubclient import Peer, of_type
from meshsupport import (MESH_FORMED_EVENTS, MESH_FORMED_LOG, MESH_NETWORK,
                         assert_pair_said_hello, module_stats, run_mesh_across,
                         wait_for_hub_links, wait_until)

pytestmark = [pytest.mark.interop, pytest.mark.reference, pytest.mark.slow]

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"


def linked(pc_hubs, reference_hubs):
    ours = pc_hubs(name="ours")
    ref = reference_hubs(ours.url, name="ref")
    ref.wait_event("bootstrapConnected", timeout=20, uri=ours.url)
    wait_for_hub_links(ours, 1)
    return ours, ref


def assert_no_hub_mesh(ours, *refs):
    """§7.7: with our hub in the middle the reference's WebRTC hub mesh never forms, so it never
    closes its WS links with "Migrated to P2P mesh": it keeps using them."""
    for ref in refs:
        assert [e for e in ref.events() if e["event"] in MESH_FORMED_EVENTS] == [], ref.events()
        log = ref.log()
        assert [m for m in MESH_FORMED_LOG if m in log] == [], log[-3000:]
        assert ref.events("bootstrapDisconnected") == [], "the link to our hub was closed"
    assert module_stats(ours)["hubs"] == len(refs)


def test_reference_hub_link_registers_as_hub(pc_hubs, reference_hubs):
    ours, ref = linked(pc_hubs, reference_hubs)
    log = ours.log()
    assert f"peer {ref.hub_id[:8]}… announced as hub in '{MESH_NETWORK}'" in log, log
    stats = module_stats(ours)
    assert stats["hubs"] == 1 and stats["dropped"]["unknownType"] == 0, stats
    # the reference tells its bootstrap about its own hub-mesh client; nobody may get that
    client = Peer(ours.url)
    try:
        client.expect("connected")
        client.announce("demo")
        assert of_type(client.drain(), "peer-discovered", data__peerId=ref.hub_id) == []
    finally:
        client.close()


@pytest.mark.parametrize("late", ["on-reference", "on-ours"])
def test_raw_clients_discover_and_signal_across_the_link(pc_hubs, reference_hubs, late):
    """X on our hub, Y on the reference hub, network demo. The late joiner must learn the early
    one; offer X->Y and answer Y->X each arrive exactly once with the sender's id."""
    ours, ref = linked(pc_hubs, reference_hubs)
    made = []

    def join(url):
        p = Peer(url)
        made.append(p)
        p.expect("connected")
        p.announce("demo")
        return p

    try:
        if late == "on-reference":
            x = join(ours.url)
            wait_until(lambda: "discovered on another hub" in ref.log(), 10,
                       "X never reached the reference hub")
            y = join(ref.url)
        else:
            before = module_stats(ours)["framesIn"]
            y = join(ref.url)
            # the reference forwards Y's announce to us as one peer-discovered frame
            wait_until(lambda: module_stats(ours)["framesIn"] > before, 10,
                       "Y's peer-discovered never reached our hub")
            x = join(ours.url)
        got = y.expect("peer-discovered", data__peerId=x.id, timeout=10)
        assert got["networkName"] == "demo"
        got = x.expect("peer-discovered", data__peerId=y.id, timeout=10)
        assert got["networkName"] == "demo" and got["targetPeerId"] == x.id

        x.signal("offer", {"type": "offer", "sdp": SDP}, targetPeerId=y.id)
        got = y.expect("offer", fromPeerId=x.id, timeout=10)
        assert got["targetPeerId"] == y.id and got["networkName"] == "demo"
        y.signal("answer", {"type": "answer", "sdp": SDP}, targetPeerId=x.id)
        got = x.expect("answer", fromPeerId=y.id, timeout=10)
        assert got["targetPeerId"] == x.id and got["networkName"] == "demo"
        assert of_type(y.drain(1.0), "offer") == [], "offer delivered twice"
        assert of_type(x.drain(1.0), "answer") == [], "answer delivered twice"
    finally:
        for p in made:
            p.close()


@pytest.mark.parametrize("late", ["on-reference", "on-ours"])
def test_real_clients_connect_over_webrtc_through_both_hubs(pc_hubs, reference_hubs, late):
    """Headless PeerPigeonMesh A on our hub, B on the reference hub: discovery across the link,
    offer/answer/ICE relayed hub to hub, data-channel "hello" both ways (§12 item 9). The late
    joiner has the larger id, so it must send the offer: it has to have discovered the other."""
    ours, ref = linked(pc_hubs, reference_hubs)
    network = f"demo-{uuid.uuid4().hex[:8]}"
    if late == "on-reference":
        proc, events, report = run_mesh_across(ours.url, ref.url, network=network, first="a",
                                               initiator="B")
    else:
        proc, events, report = run_mesh_across(ours.url, ref.url, network=network, first="b",
                                               initiator="A")
    assert_pair_said_hello(proc, events, report)
    stats = module_stats(ours)
    assert stats["dropped"]["sendFailed"] == 0, stats
    # the G3 hub-mesh caveat (§7.7): one reference hub + our hub -> its P2P mesh never forms
    assert_no_hub_mesh(ours, ref)


def test_two_reference_hubs_on_our_hub_do_not_form_their_hub_mesh(pc_hubs, reference_hubs):
    """Two G3 hubs on our bootstrap are told about each other (both are pigeonhub-mesh members,
    as on a reference bootstrap: `hubDiscovered`), but their WebRTC hub mesh must not form
    through us (§7.7: we drop pigeonhub-mesh signaling between hubs), so neither migrates away
    from its WS link. (Observed with 1.1.3: `hubDiscovered` on an outgoing link starts no WebRTC
    attempt at all, so this topology sends no hub-mesh offers; the dialing direction, where the
    G3 bootstrap's own mesh client offers to us, is covered in test_pc_hub_mesh.py.)"""
    ours = pc_hubs(name="ours")
    r1 = reference_hubs(ours.url, name="ref1")
    r2 = reference_hubs(ours.url, name="ref2")
    for r in (r1, r2):
        r.wait_event("bootstrapConnected", timeout=20, uri=ours.url)
    wait_for_hub_links(ours, 2)
    r1.wait_event("hubDiscovered", peerId=r2.hub_id)
    r2.wait_event("hubDiscovered", peerId=r1.hub_id)
    time.sleep(8)   # a mesh that could form would have within this on loopback (§7.7, S1)
    assert_no_hub_mesh(ours, r1, r2)

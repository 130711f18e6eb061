"""Incoming hub links, raw frames (docs/PROTOCOL.md §7.1-§7.3, §7.2 "as bootstrap", §12 item 8).

A fake hub is a raw WebSocket that connects with ?peerId=<hub id> and announces exactly like a
PigeonHub hub (npm peerpigeon 1.1.3) does on its outgoing link. Each test runs on a fresh PC hub,
so everything the fake hub receives was caused by that test. Z, W are peers "on the far hub":
ids nobody connects with here.
"""

import time

from meshsupport import module_stats
from hubclient import QUIET, new_id, of_type

SDP = "v=0\r\no=- 3445100876973446344 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
OFFER = {"type": "offer", "sdp": SDP}
ANSWER = {"type": "answer", "sdp": SDP}
CANDIDATE = {"candidate": "candidate:3077952869 1 udp 2122265344 127.0.0.1 45500 typ host "
                          "generation 0 ufrag wwwZ network-id 2",
             "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "wwwZ"}
# what a hub may send us on its link; everything else (raw client announce/goodbye, errors...)
# must never go to a hub (§7.3)
HUB_LINK_TYPES = {"connected", "peer-discovered", "peer-disconnected", "offer", "answer",
                  "ice-candidate", "pong"}


def now_ms():
    return int(time.time() * 1000)


def discovered(peer_id, network, **extra):
    """peer-discovered as a 1.1.3 hub forwards a peer of its own to its bootstrap (§7.2)."""
    return {"type": "peer-discovered", "data": {"peerId": peer_id, "isHub": False, **extra},
            "networkName": network, "fromPeerId": "system", "timestamp": now_ms()}


def departed(peer_id, network):
    """The G3 hub-link notice for a peer that left the far hub (§7.3)."""
    ts = now_ms()
    return {"type": "peer-disconnected",
            "data": {"peerId": peer_id, "isHub": False, "reason": "Client disconnect", "timestamp": ts},
            "networkName": network, "fromPeerId": "system", "timestamp": ts}


def relayed(type_, data, from_id, target_id, network):
    """Signaling as a hub relays it: the original sender, target and network kept (§7.5)."""
    return {"type": type_, "data": data, "fromPeerId": from_id, "targetPeerId": target_id,
            "networkName": network, "timestamp": now_ms()}


def about(frames, peer_id):
    return of_type(frames, "peer-discovered", data__peerId=peer_id)


def drain_all(*peers):
    for p in peers:
        p.drain(0.3)


def client_told_of_remote_peer(raw):
    """(a client of "demo", a fake hub, the id z of a remote peer the hub told that client of)."""
    a = raw.client("demo")
    hub = raw.fake_hub()
    z = new_id()
    hub.send(discovered(z, "demo"))
    a.expect("peer-discovered", data__peerId=z)
    hub.drain()
    return a, hub, z


# ---- announce: connected + our peer list ------------------------------------------------------


def test_hub_gets_connected_and_one_peer_discovered_per_announced_client(raw, pc_hub):
    a1 = raw.client("demo", name="a1")
    a2 = raw.client("demo")
    b1 = raw.client("netB")
    raw.connect()                       # connected but never announced: not a network member
    drain_all(a1, a2, b1)

    hub_id = new_id()
    hub = raw.fake_hub(hub_id)
    assert hub.received[0]["type"] == "connected"
    assert hub.received[0]["data"]["peerId"] == hub_id
    frames = hub.drain()
    found = about(frames, a1.id) + about(frames, a2.id) + about(frames, b1.id)
    assert sorted((f["data"]["peerId"], f["networkName"]) for f in of_type(frames, "peer-discovered")) \
        == sorted([(a1.id, "demo"), (a2.id, "demo"), (b1.id, "netB")]), frames
    for f in found:
        assert f["data"]["isHub"] is False
        assert f.get("targetPeerId") in (None, hub_id)   # §7.2: optional, the hub id if present
    assert about(frames, a1.id)[0]["data"].get("name") == "a1"   # announce data travels along
    assert [f["type"] for f in frames if f["type"] != "peer-discovered"] == [], frames

    # the hub is not a member of the clients' networks: nobody is told about it
    for c in (a1, a2, b1):
        assert about(c.drain(), hub_id) == []
    assert module_stats(pc_hub)["hubs"] == 1


def test_client_announcing_later_is_propagated_to_the_hub(raw):
    hub = raw.fake_hub()
    assert hub.drain() == []            # nobody here yet
    c = raw.client("demo", name="late")
    d = raw.client("netB")
    got = hub.expect("peer-discovered", data__peerId=c.id)
    assert got["networkName"] == "demo"
    assert got["data"]["isHub"] is False and got["data"].get("name") == "late"
    assert got.get("targetPeerId") in (None, hub.id)
    assert hub.expect("peer-discovered", data__peerId=d.id)["networkName"] == "netB"
    rest = hub.drain()
    assert about(rest, c.id) == [] and about(rest, d.id) == [], "told twice"


# ---- the hub's peer-discovered ----------------------------------------------------------------


def test_remote_peer_reaches_clients_of_its_network_with_target_rewritten(raw):
    a1, a2, b1 = raw.client("demo"), raw.client("demo"), raw.client("netB")
    hub = raw.fake_hub()
    drain_all(a1, a2, b1, hub)

    z = new_id()
    hub.send(discovered(z, "demo", name="zed"))
    for c in (a1, a2):
        got = c.expect("peer-discovered", data__peerId=z)
        assert got["targetPeerId"] == c.id          # the 1.1.3 client drops any other target
        assert got["networkName"] == "demo"
        # The reference forwards the far hub's `data` verbatim; this hub sends exactly what the
        # 1.1.3 client reads ({peerId, isHub}) because the module's 16 KiB budget has no room for
        # per-peer extra data (wasm/ABI.md, "Remote peers").
        assert got["data"] == {"peerId": z, "isHub": False}
    for c in (a1, a2):
        assert about(c.drain(), z) == [], "told twice"
    assert about(b1.drain(), z) == [], "a demo peer leaked into netB"
    assert of_type(hub.drain(), "error") == []


def test_remote_peer_discovered_about_our_own_client_is_not_passed_on(raw):
    """A far hub that echoes one of our own clients back (both directions of a link, a cycle of
    hubs) must not make our other clients discover it a second time: they know it from here."""
    a1, a2 = raw.client("demo"), raw.client("demo")
    hub = raw.fake_hub()
    drain_all(a1, a2, hub)
    hub.send(discovered(a1.id, "demo"))
    assert about(a1.drain(), a1.id) == [], "a peer was introduced to itself"
    assert about(a2.drain(), a1.id) == [], "a local peer was announced again via the hub"


def test_remote_peers_are_kept_for_clients_who_join_later(raw):
    """The issue: "keep those remote peers for clients who join later" (what a 1.1.3 hub does
    with peers learned from its bootstrap, §7.4: "cache them for late joiners")."""
    hub = raw.fake_hub()
    z, w = new_id(), new_id()
    hub.send(discovered(z, "demo"))
    hub.send(discovered(w, "netB"))
    hub.roundtrip()                     # both frames processed before anyone joins

    late = raw.client("demo")
    got = late.expect("peer-discovered", data__peerId=z, timeout=3)
    assert got["targetPeerId"] == late.id and got["networkName"] == "demo"
    assert about(late.drain(), w) == [], "a netB peer offered to a demo client"


# ---- signaling both ways ----------------------------------------------------------------------


def test_client_signaling_to_a_remote_peer_goes_to_the_hub(raw):
    a, hub, z = client_told_of_remote_peer(raw)

    a.signal("offer", OFFER, targetPeerId=z)
    got = hub.expect("offer", fromPeerId=a.id)
    assert got["targetPeerId"] == z and got["networkName"] == "demo" and got["data"] == OFFER
    a.signal("ice-candidate", CANDIDATE, targetPeerId=z)
    got = hub.expect("ice-candidate", fromPeerId=a.id)
    assert got["targetPeerId"] == z and got["networkName"] == "demo" and got["data"] == CANDIDATE
    rest = hub.drain()
    assert of_type(rest, "offer") == [] and of_type(rest, "ice-candidate") == [], "relayed twice"
    assert of_type(a.drain(), "error") == []


def test_remote_signaling_reaches_the_client_from_the_remote_peer(raw):
    a, b = raw.client("demo"), raw.client("netB")
    hub = raw.fake_hub()
    drain_all(a, b, hub)
    z = new_id()

    for type_, data in (("answer", ANSWER), ("ice-candidate", CANDIDATE), ("offer", OFFER)):
        hub.send(relayed(type_, data, z, a.id, "demo"))
        got = a.expect(type_, fromPeerId=z)
        assert got["targetPeerId"] == a.id and got["networkName"] == "demo"
        assert got["data"] == data
    # the network still has to match: a netB frame for a demo client is dropped (§5)
    hub.send(relayed("answer", ANSWER, z, a.id, "netB"))
    assert of_type(a.drain(), "answer") == []
    assert of_type(b.drain(), "answer") == []
    assert of_type(hub.drain(), "error") == []


# ---- the hub's peer-disconnected --------------------------------------------------------------


def test_hub_peer_disconnected_is_accepted_without_error(raw):
    a, hub, z = client_told_of_remote_peer(raw)

    hub.send(departed(z, "demo"))
    # and the all-connections shape a bootstrap-side reference hub sends (§4 a: no networkName)
    hub.send({"type": "peer-disconnected",
              "data": {"peerId": new_id(), "isHub": False, "reason": "Client disconnect",
                       "timestamp": now_ms()},
              "fromPeerId": "system", "targetPeerId": hub.id, "timestamp": now_ms()})
    assert of_type(hub.drain(), "error") == [], "a hub's peer-disconnected must not get an error"
    hub.roundtrip()
    a.roundtrip()
    # the link still works afterwards
    y = new_id()
    hub.send(discovered(y, "demo"))
    a.expect("peer-discovered", data__peerId=y)


def test_hub_peer_disconnected_purges_the_remote_peer(raw):
    """Late joiners learn Z while Z is on the far hub, and no longer once the hub says it left."""
    hub = raw.fake_hub()
    z = new_id()
    hub.send(discovered(z, "demo"))
    hub.roundtrip()
    first = raw.client("demo")
    first.expect("peer-discovered", data__peerId=z, timeout=3)   # kept for late joiners

    hub.send(departed(z, "demo"))
    hub.roundtrip()
    second = raw.client("demo")
    assert about(second.drain(), z) == [], "a departed remote peer was offered to a late joiner"
    assert of_type(hub.drain(), "error") == []


# ---- what we send on a hub link ---------------------------------------------------------------


def test_hub_link_never_carries_raw_client_announce_or_goodbye(raw):
    hub = raw.fake_hub()
    a, b, c = raw.client("demo"), raw.client("demo"), raw.client("netB")
    z = new_id()
    hub.send(discovered(z, "demo"))
    a.signal("offer", OFFER, targetPeerId=z)                # relayed: fine
    a.announce("netB")                                      # network change
    b.send({"type": "goodbye", "data": {"peerId": b.id, "timestamp": now_ms()},
            "networkName": "demo"})
    c.send({"type": "goodbye", "data": {"peerId": c.id}})   # the raw unload goodbye (no network)
    a.close()
    frames = hub.drain(1.0)
    types = [f["type"] for f in frames]
    assert "announce" not in types and "goodbye" not in types, frames
    assert set(types) <= HUB_LINK_TYPES, frames


def test_client_departure_is_reported_to_the_hub(raw):
    """A far hub keeps our peers for its late joiners (G3 does, §7.4): it has to hear when they
    leave, as a hub-link `peer-disconnected` with the peer's networkName (never a raw goodbye)."""
    hub = raw.fake_hub()
    a, b = raw.client("demo"), raw.client("netB")
    hub.expect("peer-discovered", data__peerId=a.id)
    hub.expect("peer-discovered", data__peerId=b.id)

    a.send({"type": "goodbye", "data": {"peerId": a.id, "timestamp": now_ms()},
            "networkName": "demo"})
    got = hub.expect("peer-disconnected", data__peerId=a.id, timeout=3)
    assert got["networkName"] == "demo"
    b.close()
    got = hub.expect("peer-disconnected", data__peerId=b.id, timeout=3)
    assert got["networkName"] == "netB"


# ---- hub to hub --------------------------------------------------------------------------------


def test_hub_mesh_signaling_between_two_hubs_is_not_relayed(raw, pc_hub):
    """§7.7: npm 1.1.x hubs must not build their WebRTC hub mesh through us."""
    h1, h2 = raw.fake_hub(), raw.fake_hub()
    drain_all(h1, h2)
    our_id = module_stats(pc_hub)["hubId"]
    before = module_stats(pc_hub)["dropped"]["hubMesh"]

    h1.send(relayed("offer", OFFER, h1.id, h2.id, "pigeonhub-mesh"))
    h1.send(relayed("ice-candidate", CANDIDATE, h1.id, h2.id, "pigeonhub-mesh"))
    h2.send(relayed("answer", ANSWER, h2.id, h1.id, "pigeonhub-mesh"))
    h1.send(relayed("offer", OFFER, h1.id, our_id, "pigeonhub-mesh"))   # to our own hub id
    for h in (h1, h2):
        frames = h.drain()
        assert [f for f in frames if f["type"] in ("offer", "answer", "ice-candidate")] == [], frames
        assert of_type(frames, "error") == []
    assert module_stats(pc_hub)["dropped"]["hubMesh"] - before >= 3


def test_signaling_for_unknown_targets_crosses_hubs_once_and_never_back(raw):
    """No hop count exists in the protocol (§7.5): a frame for an id that is not here goes to the
    hub the id was learned from, else to every other hub connection, never back to its source,
    and the same frame again within seconds is not passed on twice (cycles of hubs)."""
    a = raw.client("demo")
    h1, h2, h3 = raw.fake_hub(), raw.fake_hub(), raw.fake_hub()
    drain_all(a, h1, h2, h3)

    frame = relayed("offer", OFFER, new_id(), new_id(), "demo")
    h1.send(frame)
    assert of_type(h1.drain(), "offer") == [], "sent back to the hub it came from"
    for h in (h2, h3):
        assert len(of_type(h.drain(), "offer", fromPeerId=frame["fromPeerId"])) <= 1
    h2.send(frame)                       # the same frame arriving again, via another hub
    for h in (h1, h3):
        assert of_type(h.drain(), "offer") == [], "a repeated frame was passed on again"

    y = new_id()                         # unknown everywhere: each hub once
    a.signal("offer", OFFER, targetPeerId=y)
    for h in (h1, h2, h3):
        assert len(of_type(h.drain(), "offer", fromPeerId=a.id, targetPeerId=y)) == 1

    w = new_id()                         # learned from h2: only h2
    h2.send(discovered(w, "demo"))
    a.expect("peer-discovered", data__peerId=w)
    a.signal("offer", OFFER, targetPeerId=w)
    assert len(of_type(h2.drain(), "offer", fromPeerId=a.id, targetPeerId=w)) == 1
    for h in (h1, h3):
        assert of_type(h.drain(), "offer") == [], "sent to a hub that does not hold the target"


def test_peer_discovered_from_a_connection_that_is_not_a_hub_is_ignored(raw):
    a = raw.client("demo")
    client = raw.client("demo")                 # an ordinary announced client
    silent = raw.connect()                      # connected, never announced
    later_hub = raw.connect()                   # will announce as a hub only afterwards
    drain_all(a, client)

    z1, z2, z3, z4 = (new_id() for _ in range(4))
    client.send(discovered(z1, "demo"))
    silent.send(discovered(z2, "demo"))
    later_hub.send(discovered(z3, "demo"))
    frames = a.drain()
    assert about(frames, z1) == [] and about(frames, z2) == [] and about(frames, z3) == [], frames
    for p in (client, silent, later_hub):
        p.roundtrip()                           # ignored, not punished

    later_hub.send({"type": "announce", "networkName": "pigeonhub-mesh",
                    "data": {"isHub": True, "port": 1, "host": "127.0.0.1",
                             "capabilities": ["signaling", "relay"], "timestamp": 1}})
    later_hub.send(discovered(z4, "demo"))
    a.expect("peer-discovered", data__peerId=z4)            # now it counts
    frames = a.drain(QUIET)
    assert about(frames, z3) == [], "a frame from before the hub announce came through late"

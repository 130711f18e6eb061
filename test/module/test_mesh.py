"""Hub mesh (ABI 2, /tmp/mesh_spec.md, docs/PROTOCOL.md §7): outgoing links, remote peers,
cross-hub signaling, dedup — hub.wasm on WASM3 and wasmtime, whole frames compared.

The harness stands where the bridge stands: ws_connect records the dial and hands out a
connection id (1000, 1001, ...), get_bootstrap_hub serves `hub.bootstrap`, `open_link` calls
on_link_open and `fail_link` on_peer_disconnected. The last tests run three module instances and
carry the frames between them in Python, as three bridges on a network would.
"""

import json

import pytest

from module_harness import WALL_CLOCK_START as T, Hub
from test_protocol import A, B, C, D, announce, departed, discovered, join, pid

L1, L2 = 1000, 1001                     # connection ids the harness gives the first two links
URL1, URL2 = "ws://127.0.0.1:3000/", "ws://hub.example:8080/x?y=1"
REMOTE, REMOTE2 = pid(50), pid(51)
HB = 30000                              # HEARTBEAT_INTERVAL
TIMEOUT = 60000                         # PEER_TIMEOUT


def hub_announce(hub, port=3000, host="24:0a:c4:12:34:56"):
    return {"type": "announce", "networkName": "pigeonhub-mesh",
            "data": {"isHub": True, "port": port, "host": host,
                     "capabilities": ["signaling", "relay"], "timestamp": T}}


def link_discovered(peer, net, **extra):
    """peer-discovered as a link carries it: no targetPeerId (docs/PROTOCOL.md §7.2)."""
    return {"type": "peer-discovered", "data": {"peerId": peer, "isHub": False, **extra},
            "networkName": net, "fromPeerId": "system", "timestamp": T}


def link_departed(peer, net, reason):
    return {"type": "peer-disconnected",
            "data": {"peerId": peer, "isHub": False, "reason": reason, "timestamp": T},
            "networkName": net, "fromPeerId": "system", "timestamp": T}


def remote_discovered(peer, net, is_hub=False):
    return {"type": "peer-discovered", "data": {"peerId": peer, "isHub": is_hub},
            "networkName": net, "fromPeerId": "system", "timestamp": T}


def relayed(kind, data, sender, target, net):
    return {"type": kind, "data": data, "fromPeerId": sender, "targetPeerId": target,
            "networkName": net, "timestamp": T}


def started(hub, *urls, port=3000):
    hub.bootstrap = list(urls)
    assert hub.call("start_server", port) == 0
    return hub


def linked(hub, *urls):
    """Started with links to `urls`, all open, their opening frames taken."""
    started(hub, *urls)
    for conn, _ in hub.dials:
        hub.open_link(conn)
    hub.take()
    return hub


# --- dialing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("url,dialed", [
    ("ws://127.0.0.1:3000/", "ws://127.0.0.1:3000/?peerId={}"),
    ("ws://127.0.0.1:3000", "ws://127.0.0.1:3000?peerId={}"),
    ("wss://hub.example/x?y=1", "wss://hub.example/x?y=1&peerId={}"),
])
def test_start_server_dials_each_bootstrap_hub_with_our_id(hub, url, dialed):
    started(hub, url)
    assert hub.dials == [(L1, dialed.format(hub.hub_id()))]
    link = hub.stats_json()["links"]
    assert link == [{"url": url, "state": "connecting", "peersLearned": 0, "framesRelayed": 0,
                     "reconnects": 0, "nextRetryMs": 0}]


def test_at_most_max_hub_links_and_empty_entries_skipped(hub):
    started(hub, "", URL2, "ws://third/")
    assert [u for _, u in hub.dials] == [f"{URL2}&peerId={hub.hub_id()}"]   # entry 0 empty
    assert [l["url"] for l in hub.stats_json()["links"]] == [URL2]


def test_no_bootstrap_hubs_no_dials(hub):
    started(hub)
    assert hub.dials == [] and hub.stats_json()["links"] == []


# --- link open: hub announce, our peers, propagation -----------------------------------------

def test_open_sends_hub_announce_then_local_peers(hub):
    started(hub, URL1)
    join(hub, 1, A, "demo")
    join(hub, 2, B, "other")
    hub.connect(3, C)                       # not announced: nobody to tell about
    hub.take()
    hub.open_link(L1)
    assert hub.take() == [(L1, hub_announce(hub)), (L1, link_discovered(A, "demo")),
                          (L1, link_discovered(B, "other"))]
    assert hub.logs[-1] == f"I hub link {URL1} open"
    assert hub.stats_json()["links"][0]["state"] == "open"


def test_later_announces_and_departures_reach_the_link_never_raw(hub):
    linked(hub, URL1)
    join(hub, 9, pid(99), "pigeonhub-mesh", isHub=True)   # an incoming hub: not told to links
    hub.connect(1, A)
    hub.take()
    hub.send(1, announce("demo", peerId=A, extra="x"))
    got = hub.take()
    assert (L1, link_discovered(A, "demo", extra="x")) in got
    assert all(f["type"] != "announce" for _, f in got)
    hub.send(1, announce("other"))         # network change: gone from demo, new in other
    got = hub.take()
    assert [f for c, f in got if c == L1] == [link_departed(A, "demo", "network change"),
                                             link_discovered(A, "other")]   # its new data
    hub.connect(2, B)
    hub.send(2, announce("other"))
    hub.take()
    hub.send(2, {"type": "goodbye", "data": {"peerId": B}, "networkName": "other"})
    got = hub.take()
    assert [f for c, f in got if c == L1] == [link_departed(B, "other", "goodbye")]
    assert hub.broadcasts == []             # a broadcast would carry the raw goodbye to the link
    hub.disconnect(1)
    assert [f for c, f in hub.take() if c == L1] == [link_departed(A, "other", "Connection closed")]


def test_incoming_hub_is_told_of_departures_too(hub):
    join(hub, 9, pid(99), "pigeonhub-mesh", isHub=True)
    join(hub, 1, A, "demo")
    hub.disconnect(1)
    assert hub.take() == [(9, departed(A, pid(99), "demo", "Connection closed"))]


def test_frames_from_the_far_hub_are_not_answered(hub):
    linked(hub, URL1)
    for frame in ({"type": "connected", "data": {"peerId": hub.hub_id()}, "fromPeerId": "system"},
                  {"type": "pong", "data": {"timestamp": 1}}, {"type": "error", "error": "x"},
                  {"type": "ping"}, {"type": "announce", "data": {}}, {"type": "goodbye"}):
        hub.send(L1, frame)
    hub.send_raw(L1, b"not json")
    assert hub.take() == []
    assert hub.logs[-1] == f"D hub link {URL1} sent 'goodbye': ignored"
    assert hub.stats_json()["dropped"]["invalidJson"] == 1


# --- keepalive, timeout, backoff --------------------------------------------------------------

def test_app_ping_every_heartbeat_and_timeout_redials(hub):
    linked(hub, URL1)
    hub.now = HB - 1
    hub.loop()
    assert hub.take() == []
    hub.now = HB
    hub.loop()
    hub.loop()
    assert hub.take() == [(L1, {"type": "ping", "data": {"timestamp": T}})]
    assert hub.pings == []                  # an application ping, not a WebSocket one
    hub.send(L1, {"type": "pong", "data": {"timestamp": T}})   # activity at 30 s
    hub.now = 2 * HB
    hub.loop()
    assert hub.take() == [(L1, {"type": "ping", "data": {"timestamp": T}})]
    hub.now = HB + TIMEOUT - 1
    hub.loop()
    assert hub.closes == []
    hub.now = HB + TIMEOUT
    hub.loop()
    assert hub.closes == [(L1, 1001, "Peer timeout")]
    assert hub.logs[-1] == f"W hub link {URL1} timed out"
    hub.fail_link(L1)                       # the bridge reports the close
    link = hub.stats_json()["links"][0]
    assert link["state"] == "backoff" and 750 <= link["nextRetryMs"] <= 1250


def jittered(hub, base):
    """Fails the current dial and returns the delay until the re-dial, checking its bounds."""
    conn = hub.dials[-1][0]
    hub.fail_link(conn)
    wait = hub.stats_json()["links"][0]["nextRetryMs"]
    assert base * 3 // 4 <= wait <= base * 5 // 4, (base, wait)
    assert hub.logs[-1].startswith(f"W hub link {URL1} ")
    assert hub.logs[-1].endswith(f", retry in {wait // 1000}.{wait // 100 % 10} s")
    dials = len(hub.dials)
    hub.now += wait - 1
    hub.loop()
    assert len(hub.dials) == dials
    hub.now += 1
    hub.loop()
    assert len(hub.dials) == dials + 1 and hub.dials[-1][1] == hub.dials[0][1]
    return wait


def test_backoff_doubles_with_jitter_caps_and_resets(hub):
    started(hub, URL1)
    waits = [jittered(hub, base) for base in (1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000)]
    assert len(set(waits)) > 1              # jitter: not the same fraction every time
    assert hub.stats_json()["links"][0]["reconnects"] == 8
    assert "failed, retry in" in hub.logs[-2]
    # open for >= 30 s, then closed: back to 1 s
    hub.open_link(hub.dials[-1][0])
    hub.take()
    hub.now += 30000
    hub.send(hub.dials[-1][0], {"type": "pong"})
    jittered(hub, 1000)


def test_backoff_does_not_reset_after_a_short_open(hub):
    started(hub, URL1)
    jittered(hub, 1000)
    hub.open_link(hub.dials[-1][0])
    hub.now += 29999
    hub.send(hub.dials[-1][0], {"type": "pong"})
    jittered(hub, 2000)


def test_refused_dial_backs_off(hub):
    hub.connect_result = -1
    started(hub, URL1)
    link = hub.stats_json()["links"][0]
    assert link["state"] == "backoff" and 750 <= link["nextRetryMs"] <= 1250
    assert hub.logs[-1].startswith(f"W hub link {URL1} dial failed, retry in ")


def test_jitter_differs_between_hubs(wasm_bytes, engine):
    waits = set()
    for device in ("dev-a", "dev-b", "dev-c", "dev-d"):
        hub = started(Hub(wasm_bytes, engine, device_id=device), URL1)
        hub.fail_link(L1)
        waits.add(hub.stats_json()["links"][0]["nextRetryMs"])
    assert len(waits) > 1


def test_stop_server_closes_links_and_stops_redialing(hub):
    started(hub, URL1, URL2)
    hub.open_link(L1)
    hub.fail_link(L2)                       # L2 in backoff
    hub.take()
    hub.call("stop_server")
    assert hub.closes == [(L1, 1001, "Server shutting down")]
    hub.fail_link(L1)
    hub.now += 120000
    hub.loop()
    assert len(hub.dials) == 2 and hub.stats_json()["links"] == []
    hub.call("start_server", 3000)          # a restart dials again
    assert len(hub.dials) == 4


# --- remote peers ----------------------------------------------------------------------------

def test_remote_peer_forwarded_cached_and_purged(hub):
    linked(hub, URL1)
    join(hub, 1, A, "demo")
    join(hub, 2, B, "other")
    hub.send(L1, remote_discovered(REMOTE, "demo"))
    assert hub.take() == [(1, discovered(REMOTE, A, "demo"))]
    assert hub.logs[-1] == f"I learned peer {REMOTE[:8]}\u2026 (demo) via {URL1}"
    hub.send(L1, remote_discovered(REMOTE, "demo"))          # told again: nothing new
    hub.send(L1, remote_discovered(pid(98), "demo", is_hub=True))   # a hub: not forwarded
    hub.send(L1, remote_discovered(REMOTE2, "pigeonhub-mesh"))
    assert hub.take() == []
    hub.connect(3, C)                        # a late joiner learns the cached peer
    hub.send(3, announce("demo"))
    join_frames = hub.take()
    assert (3, discovered(REMOTE, C, "demo")) in join_frames
    s = hub.stats_json()
    assert s["remotePeers"] == 1 and s["links"][0]["peersLearned"] == 1
    hub.send(L1, {"type": "peer-disconnected", "data": {"peerId": REMOTE, "isHub": False,
                                                         "reason": "x", "timestamp": 1}})
    assert hub.take() == [(1, departed(REMOTE, A, "demo", "Peer disconnected")),
                          (3, departed(REMOTE, C, "demo", "Peer disconnected"))]
    assert hub.stats_json()["remotePeers"] == 0
    hub.connect(4, D)
    hub.send(4, announce("demo"))
    assert all(f["data"]["peerId"] != REMOTE for _, f in hub.take())


def test_link_loss_purges_its_peers_once(hub):
    linked(hub, URL1, URL2)
    join(hub, 1, A, "demo")
    hub.send(L1, remote_discovered(REMOTE, "demo"))
    hub.send(L2, remote_discovered(REMOTE2, "demo"))
    hub.take()
    hub.fail_link(L1)
    assert hub.take() == [(1, departed(REMOTE, A, "demo", "Hub connection lost"))]
    hub.send(L2, {"type": "peer-disconnected", "data": {"peerId": REMOTE}})   # not via L2
    assert hub.take() == []
    assert hub.stats_json()["remotePeers"] == 1


def test_incoming_hub_loss_purges_its_peers(hub):
    join(hub, 1, A, "demo")
    join(hub, 9, pid(99), "pigeonhub-mesh", isHub=True)
    hub.send(9, remote_discovered(REMOTE, "demo"))
    assert hub.take() == [(1, discovered(REMOTE, A, "demo"))]
    assert hub.logs[-1] == f"I learned peer {REMOTE[:8]}\u2026 (demo) via hub {pid(99)[:8]}\u2026"
    hub.disconnect(9)
    assert hub.take() == [(1, departed(REMOTE, A, "demo", "Hub connection lost"))]


def test_remote_cache_is_bounded_oldest_evicted(hub):
    linked(hub, URL1)
    for i in range(33):
        hub.send(L1, remote_discovered(pid(200 + i), "demo"))
    assert hub.stats_json()["remotePeers"] == 32
    join(hub, 1, A, "demo")
    hub.connect(2, B)
    hub.send(2, announce("demo"))
    learned = {f["data"]["peerId"] for c, f in hub.take()
               if c == 2 and f["type"] == "peer-discovered" and f["data"]["peerId"] != A}
    assert learned == {pid(200 + i) for i in range(1, 33)}    # the first one learned was evicted


def test_stop_server_forgets_remote_peers_silently(hub):
    linked(hub, URL1)
    join(hub, 1, A, "demo")
    hub.send(L1, remote_discovered(REMOTE, "demo"))
    hub.take()
    hub.call("stop_server")
    assert hub.take() == [] and hub.stats_json()["remotePeers"] == 0


# --- cross-hub signaling ---------------------------------------------------------------------

OFFER = {"type": "offer", "sdp": "v=0\r\n"}


def test_local_to_remote_goes_to_the_hub_it_was_learned_from(hub):
    linked(hub, URL1, URL2)
    join(hub, 9, pid(99), "pigeonhub-mesh", isHub=True)
    join(hub, 1, A, "demo")
    hub.send(L2, remote_discovered(REMOTE, "demo"))
    hub.take()
    hub.send(1, {"type": "offer", "data": OFFER, "networkName": "demo", "targetPeerId": REMOTE})
    assert hub.take() == [(L2, relayed("offer", OFFER, A, REMOTE, "demo"))]
    assert [l["framesRelayed"] for l in hub.stats_json()["links"]] == [0, 1]


def test_local_to_unknown_floods_every_hub_connection(hub):
    linked(hub, URL1, URL2)
    join(hub, 9, pid(99), "pigeonhub-mesh", isHub=True)
    join(hub, 1, A, "demo")
    hub.send(1, {"type": "offer", "data": OFFER, "networkName": "demo", "targetPeerId": REMOTE})
    frame = relayed("offer", OFFER, A, REMOTE, "demo")
    assert sorted(hub.take()) == sorted([(9, frame), (L1, frame), (L2, frame)])


def test_remote_to_local_keeps_sender_and_network(hub):
    linked(hub, URL1)
    join(hub, 1, A, "demo")
    answer = {"type": "answer", "sdp": "a"}
    hub.send(L1, {"type": "answer", "data": answer, "fromPeerId": REMOTE, "targetPeerId": A,
                  "networkName": "demo", "timestamp": 5})
    assert hub.take() == [(1, relayed("answer", answer, REMOTE, A, "demo"))]
    hub.send(L1, {"type": "answer", "data": answer, "fromPeerId": REMOTE, "targetPeerId": A})
    hub.send(L1, {"type": "answer", "data": {"x": 1}, "targetPeerId": A, "networkName": "demo"})
    assert hub.take() == []                 # global != demo; no sender named
    assert hub.stats_json()["links"][0]["framesRelayed"] == 1


def test_hub_to_hub_forwarded_never_back_and_deduplicated(hub):
    linked(hub, URL1, URL2)
    join(hub, 9, pid(99), "pigeonhub-mesh", isHub=True)
    frame = {"type": "ice-candidate", "data": {"candidate": "c"}, "fromPeerId": REMOTE,
             "targetPeerId": REMOTE2, "networkName": "demo"}
    hub.send(L1, frame)
    out = relayed("ice-candidate", {"candidate": "c"}, REMOTE, REMOTE2, "demo")
    assert sorted(hub.take()) == sorted([(9, out), (L2, out)])
    hub.send(L2, frame)                     # the same frame back through the cycle
    hub.send(9, frame)
    assert hub.take() == []
    assert hub.stats_json()["dropped"]["dedup"] == 2
    hub.now += 5000                         # remembered 5 s
    hub.send(9, frame)
    assert sorted(hub.take()) == sorted([(L1, out), (L2, out)])


def test_same_frame_from_two_hubs_delivered_once(hub):
    linked(hub, URL1, URL2)
    join(hub, 1, A, "demo")
    frame = {"type": "offer", "data": OFFER, "fromPeerId": REMOTE, "targetPeerId": A,
             "networkName": "demo"}
    hub.send(L1, frame)
    hub.send(L2, frame)
    assert hub.take() == [(1, relayed("offer", OFFER, REMOTE, A, "demo"))]
    assert hub.stats_json()["dropped"]["dedup"] == 1


def test_routed_hub_frame_not_sent_back_to_its_source(hub):
    linked(hub, URL1, URL2)
    hub.send(L1, remote_discovered(REMOTE, "demo"))
    hub.send(L1, {"type": "offer", "data": OFFER, "fromPeerId": REMOTE2, "targetPeerId": REMOTE,
                  "networkName": "demo"})
    assert hub.take() == []
    assert hub.stats_json()["dropped"]["unknownTarget"] == 1


def test_mesh_signaling_between_hubs_dropped(hub):
    linked(hub, URL1)
    hub.send(L1, {"type": "offer", "data": OFFER, "fromPeerId": REMOTE,
                  "targetPeerId": hub.hub_id(), "networkName": "pigeonhub-mesh"})
    hub.send(L1, {"type": "offer", "data": OFFER, "fromPeerId": REMOTE,
                  "targetPeerId": REMOTE2, "networkName": "pigeonhub-mesh"})
    assert hub.take() == []
    assert hub.stats_json()["dropped"]["hubMesh"] == 2


# --- three hubs in a cycle -------------------------------------------------------------------

class Net:
    """Three module instances wired in a cycle: A dials B, B dials C, C dials A. A link
    connection on the dialer corresponds to an accepted connection on the far hub; frames are
    carried between them in Python, and counted."""

    def __init__(self, wasm, engine):
        self.hubs = {n: Hub(wasm, engine, device_id=f"hub-{n}") for n in "ABC"}
        self.pipes = {}                     # (hub, conn) -> (hub, conn)
        self.crossed = []                   # (from hub, to hub, frame)
        for n, far in (("A", "B"), ("B", "C"), ("C", "A")):
            h = self.hubs[n]
            h.bootstrap = [f"ws://{far.lower()}.test/"]
            h.call("start_server", 3000)
            link = h.dials[-1][0]
            accepted = 500                  # the id the far hub's bridge gives this hub
            self.hubs[far].connect(accepted, url=f"/?peerId={h.hub_id()}")
            h.open_link(link)
            self.pipes[(n, link)] = (far, accepted)
            self.pipes[(far, accepted)] = (n, link)
        self.pump()

    def pump(self):
        """Delivers frames until nothing moves; returns frames for clients as (hub, conn, frame)."""
        local = []
        for _ in range(50):
            moved = False
            for n, h in self.hubs.items():
                for conn, raw in h.take_raw():
                    if (n, conn) in self.pipes:
                        far, far_conn = self.pipes[(n, conn)]
                        self.crossed.append((n, far, json.loads(raw)))
                        self.hubs[far].send_raw(far_conn, raw)
                        moved = True
                    else:
                        local.append((n, conn, json.loads(raw)))
            if not moved:
                return local
        raise AssertionError("frames still circulating after 50 rounds")


def test_three_hub_cycle_routes_and_floods_without_looping(wasm_bytes, engine):
    net = Net(wasm_bytes, engine)
    a, c = net.hubs["A"], net.hubs["C"]
    assert all(h.stats_json()["hubs"] == 1 for h in net.hubs.values())   # one incoming hub each
    x, y = pid(301), pid(302)
    c.connect(1, y)
    c.send(1, announce("demo"))
    a.connect(1, x)
    a.send(1, announce("demo"))
    local = net.pump()
    # Y's hub C tells its two hub connections (its link to A, B's link to it); A tells B and C.
    assert ("A", 1, discovered(y, x, "demo")) in local and ("C", 1, discovered(x, y, "demo")) in local
    net.crossed.clear()
    # X offers to Y: A learned Y from C's link, so exactly one frame crosses, to C.
    a.send(1, {"type": "offer", "data": OFFER, "networkName": "demo", "targetPeerId": y})
    local = net.pump()
    assert local == [("C", 1, relayed("offer", OFFER, x, y, "demo"))]
    assert [(f, t) for f, t, _ in net.crossed] == [("A", "C")]
    # To a peer nobody knows: A floods both hubs, each forwards once to the third, the copies
    # meet and are dropped: 4 frames cross, 2 duplicates, nothing delivered, nothing loops.
    net.crossed.clear()
    a.send(1, {"type": "offer", "data": OFFER, "networkName": "demo", "targetPeerId": pid(999)})
    assert net.pump() == []
    assert len(net.crossed) == 4
    assert sum(h.stats_json()["dropped"]["dedup"] for h in net.hubs.values()) == 2


def test_three_hub_cycle_flood_delivers_exactly_once(wasm_bytes, engine):
    net = Net(wasm_bytes, engine)
    a, c = net.hubs["A"], net.hubs["C"]
    x, y = pid(301), pid(302)
    a.connect(1, x)
    a.send(1, announce("demo"))
    net.pump()
    # Y is on C but A has not heard of it (C announced Y before any link was up: simulated by
    # joining Y without telling anyone, i.e. clearing what C sent).
    c.connect(1, y)
    c.send(1, announce("demo"))
    c.take()
    net.crossed.clear()
    a.send(1, {"type": "offer", "data": OFFER, "networkName": "demo", "targetPeerId": y})
    local = net.pump()
    assert local == [("C", 1, relayed("offer", OFFER, x, y, "demo"))]   # once, not twice
    # A -> B, A -> C (delivered), B -> C (duplicate at C, dropped)
    assert sorted((f, t) for f, t, _ in net.crossed) == [("A", "B"), ("A", "C"), ("B", "C")]
    assert c.stats_json()["dropped"]["dedup"] == 1


def test_a_hub_telling_us_of_our_own_client_is_ignored(hub):
    """A far hub echoing one of our clients back must not introduce it to our other clients."""
    linked(hub, URL1)
    join(hub, 1, A, "demo")
    join(hub, 2, B, "demo")
    hub.send(L1, remote_discovered(A, "demo"))
    assert hub.take() == [] and hub.stats_json()["remotePeers"] == 0

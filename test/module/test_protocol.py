"""hub.wasm speaks the PeerPigeon client protocol (docs/PROTOCOL.md §1-§8, §11) — on WASM3 and
wasmtime.

Every test runs on both engines (the `hub` fixture is parametrized) and compares whole frames
(parsed JSON dicts), close codes and reasons exactly.
"""

import hashlib
import json

import pytest

from module_harness import WALL_CLOCK_START as T, Hub

RELAY_TYPES = ["offer", "answer", "ice-candidate", "renegotiation-offer",
               "renegotiation-answer", "ice-restart-offer", "ice-restart-answer"]


def pid(n):
    return hashlib.sha1(f"peer-{n}".encode()).hexdigest()


A, B, C, D = pid(1), pid(2), pid(3), pid(4)


def connected(peer):
    return {"type": "connected", "data": {"peerId": peer}, "fromPeerId": "system", "timestamp": T}


def discovered(about, to, net, is_hub=False, **extra):
    return {"type": "peer-discovered", "data": {"peerId": about, "isHub": is_hub, **extra},
            "networkName": net, "fromPeerId": "system", "targetPeerId": to, "timestamp": T}


def departed(gone, to, net, reason, is_hub=False):
    return {"type": "peer-disconnected",
            "data": {"peerId": gone, "isHub": is_hub, "reason": reason, "timestamp": T},
            "networkName": net, "fromPeerId": "system", "targetPeerId": to, "timestamp": T}


def announce(net=None, **data):
    frame = {"type": "announce", "data": data, "maxPeers": 3}
    if net is not None:
        frame["networkName"] = net
    return frame


def join(hub, conn, peer, net=None, **data):
    """Connect and announce, discarding the frames that produces."""
    hub.connect(conn, peer)
    hub.send(conn, announce(net, peerId=peer, **data))
    hub.take()


# --- connection set-up (§1) ------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/?peerId={}", "?peerId={}", "/x/y?a=1&peerId={}",
                                 "/?peerId={}&extra=1", "/some/path?foo=&peerId={}&peerId=zz"])
def test_connected_first_for_any_path(hub, url):
    hub.connect(7, url=url.format(A))
    assert hub.take() == [(7, connected(A))]
    assert hub.closes == []
    assert hub.call("get_peer_count") == 1
    assert hub.logs[-1] == f"I peer {A[:8]}\u2026 connected (1/20)"


def test_uppercase_id_is_accepted_and_kept_verbatim(hub):
    hub.connect(1, A.upper())
    assert hub.take() == [(1, connected(A.upper()))]


@pytest.mark.parametrize("url", [None, "/", "/?peerId=", "?peerId=", "/?peerId=abc",
                                 "/?peerId=" + "a" * 41, "/?peerId=" + "g" * 40,
                                 "/peerId=" + "a" * 40, "/?peerid=" + "a" * 40,
                                 "/?xpeerId=" + "a" * 40, "/?peerId=%61" + "a" * 39,
                                 "/?peerId=" + "a" * 39 + " ",
                                 "/?peerId=&peerId=" + "a" * 40])   # the first one counts
def test_invalid_peer_id_closed_1008(hub, url):
    if url is None:
        hub.open.add(3)                 # no URL known: ws_get_request_url returns -1
        hub.call("on_peer_connected", 3)
    else:
        hub.connect(3, url=url)
    assert hub.closes == [(3, 1008, "Invalid peerId format")]
    assert hub.take() == []
    assert hub.call("get_peer_count") == 0
    hub.disconnect(3)                   # the bridge reports it gone; nothing to free
    assert hub.call("get_peer_count") == 0


def test_duplicate_id_closed_1008_case_sensitive(hub):
    hub.connect(1, A)
    hub.connect(2, A)
    assert hub.closes == [(2, 1008, "Peer already connected")]
    hub.connect(3, A.upper())           # map keys compare case-sensitively
    assert hub.closes == [(2, 1008, "Peer already connected")]
    assert hub.call("get_peer_count") == 2
    hub.disconnect(2)                   # the refused socket going away does not free A
    hub.connect(4, A)
    assert hub.closes[-1] == (4, 1008, "Peer already connected")
    hub.disconnect(1)
    hub.take()
    hub.connect(5, A)                   # now A is free again
    assert hub.take() == [(5, connected(A))]


def test_capacity_21st_refused_and_slot_freed(hub):
    for i in range(20):
        hub.connect(i, pid(100 + i))
    assert hub.call("get_peer_count") == 20
    hub.take()
    hub.connect(20, pid(200))
    assert hub.closes == [(20, 1008, "Maximum connections reached")]
    assert hub.take() == []
    hub.disconnect(20)
    hub.disconnect(5)
    hub.connect(21, pid(201))
    assert hub.take() == [(21, connected(pid(201)))]
    assert hub.logs[-1] == f"I peer {pid(201)[:8]}\u2026 connected (20/20)"
    assert hub.call("get_peer_count") == 20


def test_max_peers_is_a_build_define(built_small, engine):
    hub = Hub(built_small.path.read_bytes(), engine)
    for i in range(3):
        hub.connect(i, pid(i))
    hub.connect(3, pid(3))
    assert hub.closes == [(3, 1008, "Maximum connections reached")]
    assert hub.stats_json()["maxPeers"] == 3


# --- announce / peer-discovered (§3) ---------------------------------------------------------

def test_announce_introduces_same_network_only(hub):
    hub.connect(1, A)
    hub.connect(2, B)
    hub.connect(3, C)
    hub.take()
    hub.send(1, announce("netA", peerId=A))
    assert hub.take() == []
    hub.send(3, announce("netB", peerId=C))
    assert hub.take() == []
    hub.send(2, announce("netA", peerId=B, extra="x"))
    assert hub.take() == [(1, discovered(B, A, "netA", extra="x")),
                          (2, discovered(A, B, "netA"))]
    assert hub.stats_json()["networks"] == 2
    assert hub.logs[-1] == f"I peer {B[:8]}\u2026 announced in 'netA' (1 other peers there)"


def test_announce_cannot_spoof_peer_id_and_keeps_extra_data(hub):
    join(hub, 1, A, "n")
    hub.connect(2, B)
    hub.take()
    hub.send(2, announce("n", peerId=C, isHub="yes", nested={"k": [1, 2]}, n=1.5e3))
    got = dict(hub.take())
    assert got[1] == discovered(B, A, "n", nested={"k": [1, 2]}, n=1.5e3)


def test_escaped_peer_id_key_cannot_override(hub):
    join(hub, 1, A, "n")
    hub.connect(2, B)
    hub.take()
    hub.send(2, b'{"type":"announce","networkName":"n","data":{"peer\\u0049d":"' + C.encode() + b'"}}')
    (_, frame), _ = hub.take()
    assert frame == discovered(B, A, "n")


@pytest.mark.parametrize("net,data,is_hub", [("n", {"isHub": True}, True),
                                             ("pigeonhub-mesh", {}, True),
                                             ("n", {"isHub": 1}, False)])
def test_is_hub(hub, net, data, is_hub):
    join(hub, 1, A, net)
    hub.connect(2, B)
    hub.take()
    hub.send(2, announce(net, **data))
    extra = {k: v for k, v in data.items() if k != "isHub"}
    assert (1, discovered(B, A, net, is_hub=is_hub, **extra)) in hub.take()


@pytest.mark.parametrize("frame", [{"type": "announce", "data": {}},
                                   {"type": "announce", "networkName": None},
                                   {"type": "announce", "networkName": ""},
                                   {"type": "announce", "networkName": "global", "data": [1]},
                                   {"type": "announce", "networkName": "global", "data": "x"}])
def test_default_network_is_global_and_non_object_data_is_empty(hub, frame):
    join(hub, 1, A)
    hub.connect(2, B)
    hub.take()
    hub.send(2, frame)
    assert hub.take() == [(1, discovered(B, A, "global")), (2, discovered(A, B, "global"))]


def test_network_name_bounds(hub):
    join(hub, 1, A, "n" * 64)
    hub.connect(2, B)
    hub.take()
    hub.send(2, announce("n" * 64))
    assert len(hub.take()) == 2
    hub.connect(3, C)
    hub.take()
    hub.send(3, announce("n" * 65))
    assert hub.take() == [(3, {"type": "error", "error": "announce networkName too long (max 64 bytes)",
                               "timestamp": T})]
    hub.send(3, announce(5))
    assert hub.take() == [(3, {"type": "error", "error": "announce networkName must be a string",
                               "timestamp": T})]
    assert hub.stats_json()["dropped"]["badAnnounce"] == 2


def test_announce_data_bound(hub):
    join(hub, 1, A, "n")
    hub.connect(2, B)
    hub.take()
    big = {"blob": "x" * 300}
    hub.send(2, announce("n", **big))
    assert hub.take() == [(2, {"type": "error", "error": "announce data too large (max 256 bytes)",
                               "timestamp": T})]
    fits = {"blob": "x" * (256 - len('{"blob":""}'))}
    hub.send(2, announce("n", **fits))
    assert (1, discovered(B, A, "n", **fits)) in hub.take()


def test_reannounce_moves_network_with_one_departure(hub):
    join(hub, 1, A, "old")
    join(hub, 2, B, "old")
    join(hub, 3, C, "new")
    hub.send(2, announce("new"))
    assert hub.take() == [(1, departed(B, A, "old", "network change")),
                          (3, discovered(B, C, "new")), (2, discovered(C, B, "new"))]
    hub.disconnect(2)                   # B is only in "new" now
    assert hub.take() == [(3, departed(B, C, "new", "Connection closed"))]


def test_reannounce_same_network_updates_data_without_duplicates(hub):
    join(hub, 1, A, "n")
    join(hub, 2, B, "n")
    hub.send(2, announce("n", color="red"))
    assert hub.take() == []
    hub.connect(3, C)
    hub.send(3, announce("n"))
    assert (3, discovered(B, C, "n", color="red")) in hub.take()


# --- relay (§5) ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", RELAY_TYPES)
def test_relay_types_exact_frame(hub, kind):
    join(hub, 1, A, "demo")
    join(hub, 2, B, "demo")
    data = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
    hub.send(1, {"type": kind, "data": data, "maxPeers": 3, "networkName": "demo",
                 "targetPeerId": B, "fromPeerId": C, "timestamp": 1})
    assert hub.take() == [(2, {"type": kind, "data": data, "fromPeerId": A, "targetPeerId": B,
                               "networkName": "demo", "timestamp": T})]


def test_relay_copies_data_bytes_verbatim(hub):
    join(hub, 1, A)
    join(hub, 2, B)
    data = b'{ "sdp" : "a\\u00e9\\ud83d\\ude00\\n\xc3\xa9" , "n":[1 ,2e+5, -0.0],"z":null }'
    hub.send_raw(1, b'{"type":"answer","targetPeerId":"' + B.encode() + b'","data":' + data + b"}")
    [(conn, raw)] = hub.take_raw()
    assert conn == 2
    assert raw == (b'{"type":"answer","data":' + data + b',"fromPeerId":"' + A.encode() +
                   b'","targetPeerId":"' + B.encode() + b'","networkName":"global","timestamp":' +
                   str(T).encode() + b"}")


def test_relay_drops_are_silent_and_counted(hub):
    join(hub, 1, A, "netA")
    join(hub, 2, B, "netA")
    join(hub, 3, C, "netB")
    hub.send(1, {"type": "offer", "data": {}, "networkName": "netA"})                   # no target
    hub.send(1, {"type": "offer", "data": {}, "networkName": "netA", "targetPeerId": 5})
    hub.send(1, {"type": "offer", "data": {}, "networkName": "netA", "targetPeerId": D})  # unknown
    hub.send(1, {"type": "offer", "data": {}, "networkName": "netA", "targetPeerId": C})  # netB
    hub.send(1, {"type": "offer", "data": {}, "targetPeerId": B})           # global != netA
    hub.send(1, {"type": "offer", "data": {}, "networkName": "netA", "targetPeerId": B.upper()})
    assert hub.take() == []
    dropped = hub.stats_json()["dropped"]
    assert (dropped["noTarget"], dropped["unknownTarget"], dropped["crossNetwork"]) == (2, 2, 2)


def test_relay_to_unannounced_target_counts_as_global(hub):
    hub.connect(1, A)
    hub.connect(2, B)
    hub.take()
    hub.send(1, {"type": "ice-candidate", "data": {"candidate": "c"}, "targetPeerId": B})
    assert hub.take() == [(2, {"type": "ice-candidate", "data": {"candidate": "c"}, "fromPeerId": A,
                               "targetPeerId": B, "networkName": "global", "timestamp": T})]
    hub.send(1, {"type": "ice-candidate", "data": {}, "targetPeerId": B, "networkName": "x"})
    assert hub.take() == []


def test_relay_without_data_omits_it(hub):
    hub.connect(1, A)
    hub.connect(2, B)
    hub.take()
    hub.send(1, {"type": "offer", "targetPeerId": B})
    assert hub.take() == [(2, {"type": "offer", "fromPeerId": A, "targetPeerId": B,
                               "networkName": "global", "timestamp": T})]


def test_8kb_sdp_offer_relays(hub):
    join(hub, 1, A, "demo")
    join(hub, 2, B, "demo")
    sdp = "".join(f"a=candidate:{i} 1 udp 2122260223 192.168.1.{i % 250} {50000 + i} typ host\r\n"
                  for i in range(140))[:8000]
    frame = {"type": "offer", "data": {"type": "offer", "sdp": sdp}, "networkName": "demo",
             "targetPeerId": B}
    hub.send(1, frame)
    [(conn, got)] = hub.take()
    assert conn == 2 and got["data"]["sdp"] == sdp and got["fromPeerId"] == A


def test_16kib_boundary(hub):
    join(hub, 1, A)
    join(hub, 2, B)
    ptr, size = hub.input_buffer()
    assert size == 16384
    head = b'{"type":"offer","targetPeerId":"' + B.encode() + b'","data":{"sdp":"'
    frame = head + b"x" * (size - len(head) - 3) + b'"}}'
    assert len(frame) == size
    hub.send_raw(1, frame)
    [(conn, got)] = hub.take()
    assert conn == 2 and len(got["data"]["sdp"]) == size - len(head) - 3
    # A bridge must never hand over more, and the module does not trust it to.
    hub.call("on_message", 1, ptr, size + 1)
    hub.call("on_message", 1, ptr + 1, size)
    hub.call("on_message", 1, ptr, -1)
    hub.call("on_message", 1, 0, 10)
    assert hub.take() == []
    assert hub.stats_json()["dropped"]["tooBig"] == 4


def test_16kib_frame_with_data_first_relays_whole(hub):
    """Relays are built over the input frame (wasm/hub.c relay_frame): data sent before "type" moves
    right to make room for the head, and the largest frame still relays byte for byte."""
    join(hub, 1, A)
    join(hub, 2, B)
    _, size = hub.input_buffer()
    tail = b'"},"type":"offer","targetPeerId":"' + B.encode() + b'"}'
    frame = b'{"data":{"sdp":"' + b"y" * (size - 16 - len(tail)) + tail
    assert len(frame) == size
    data = frame[len(b'{"data":'):frame.index(b',"type"')]
    hub.send_raw(1, frame)
    assert hub.take_raw() == [(2, b'{"type":"offer","data":' + data + b',"fromPeerId":"' + A.encode() +
                               b'","targetPeerId":"' + B.encode() + b'","networkName":"global",'
                               b'"timestamp":' + str(T).encode() + b"}")]


def test_relay_names_no_network_longer_than_an_announce_allows(hub):
    """No peer can be in such a network, here or at a hub running this module: counted, not sent."""
    join(hub, 1, A)
    hub.send(1, {"type": "offer", "data": {}, "networkName": "n" * 65, "targetPeerId": D})
    assert hub.take() == []
    assert hub.stats_json()["dropped"]["crossNetwork"] == 1


def test_send_failure_counted(hub):
    hub.connect(1, A)
    hub.connect(2, B)
    hub.take()
    hub.send_result = -2
    hub.send(1, {"type": "offer", "targetPeerId": B})
    assert hub.stats_json()["dropped"]["sendFailed"] == 1


# --- ping, goodbye, departures, other types (§2, §4, §8) ------------------------------------

def test_ping_pong(hub):
    hub.connect(1, A)
    hub.take()
    hub.send(1, {"type": "ping", "data": {"peerId": A}})
    assert hub.take() == [(1, {"type": "pong", "data": {"timestamp": T}, "fromPeerId": "system",
                               "targetPeerId": A, "timestamp": T})]


def goodbye_frame(sender, net, data):
    return {"type": "goodbye", "data": data, "fromPeerId": sender, "networkName": net, "timestamp": T}


def test_goodbye_relayed_then_one_departure_socket_stays(hub):
    join(hub, 1, A, "demo")
    join(hub, 2, B, "demo")
    join(hub, 3, C, "demo")
    join(hub, 4, D, "other")          # not in demo: forces per-peer sends
    data = {"peerId": A, "timestamp": 5}
    hub.send(1, {"type": "goodbye", "data": data, "networkName": "demo"})
    assert hub.take() == [(2, goodbye_frame(A, "demo", data)), (3, goodbye_frame(A, "demo", data)),
                          (2, departed(A, B, "demo", "goodbye")),
                          (3, departed(A, C, "demo", "goodbye"))]
    assert hub.broadcasts == []
    hub.send(1, {"type": "ping"})      # the socket stays usable
    assert [f["type"] for _, f in hub.take()] == ["pong"]
    hub.disconnect(1)                 # already departed: no second peer-disconnected
    assert hub.take() == []


def test_goodbye_uses_broadcast_when_everyone_else_is_in_the_network(hub):
    join(hub, 1, A, "demo")
    join(hub, 2, B, "demo")
    join(hub, 3, C, "demo")
    hub.send(1, {"type": "goodbye", "data": {"peerId": A}})   # raw unload goodbye, no networkName
    frames = hub.take()
    assert frames[:2] == [(2, goodbye_frame(A, "demo", {"peerId": A})),
                          (3, goodbye_frame(A, "demo", {"peerId": A}))]
    assert hub.broadcasts and hub.broadcasts[0][1] == 1
    assert frames[2:] == [(2, departed(A, B, "demo", "goodbye")), (3, departed(A, C, "demo", "goodbye"))]


def test_goodbye_outside_network_sends_nothing(hub):
    hub.connect(1, A)
    hub.connect(2, B)
    hub.take()
    hub.send(1, {"type": "goodbye"})
    assert hub.take() == []


def test_close_sends_exactly_one_departure_to_network(hub):
    join(hub, 1, A, "n")
    join(hub, 2, B, "n")
    join(hub, 3, C, "m")
    hub.disconnect(1)
    assert hub.take() == [(2, departed(A, B, "n", "Connection closed"))]
    hub.disconnect(1)                 # a repeated report changes nothing
    assert hub.take() == []
    assert hub.logs[-1] == f"I peer {A[:8]}\u2026 disconnected (2/20)"


def test_cleanup_is_only_logged(hub):
    join(hub, 1, A)
    hub.send(1, {"type": "cleanup", "data": {}})
    assert hub.take() == []
    assert hub.logs[-1] == f"I peer {A[:8]}\u2026 requested cleanup"


ROUTE_ERROR = ("Signaling server does not route '{}' messages. Use WebRTC data channels for "
               "peer-to-peer communication.")


@pytest.mark.parametrize("kind", ["connection-rejected", "cleanup-all", "recovery-offer",
                                  "peer-disconnected", "x"])
def test_unknown_type_error_frame(hub, kind):
    hub.connect(1, A)
    hub.take()
    hub.send(1, {"type": kind, "data": {}})
    assert hub.take() == [(1, {"type": "error", "error": ROUTE_ERROR.format(kind), "timestamp": T})]
    assert hub.stats_json()["dropped"]["unknownType"] == 1


def test_unknown_type_echo_is_bounded_and_valid_json(hub):
    hub.connect(1, A)
    hub.take()
    kind = "\u00e9" * 31 + "\"\\\u0000\U0001F600" + "z" * 100
    hub.send_raw(1, json.dumps({"type": kind}, ensure_ascii=False).encode())
    [(_, frame)] = hub.take()
    echoed = frame["error"].split("'")[1]
    assert kind.startswith(echoed) and 0 < len(echoed.encode()) <= 64
    hub.send_raw(1, b'{"type":"' + b"\\u00e9" * 20 + b'"}')   # escapes never cut in half
    [(_, frame)] = hub.take()
    assert frame["error"].split("'")[1] == "\u00e9" * 10


def test_escaped_type_is_understood(hub):
    hub.connect(1, A)
    hub.take()
    hub.send_raw(1, b'{"t\\u0079pe":"p\\u0069ng"}')
    assert [f["type"] for _, f in hub.take()] == ["pong"]


# --- hostile input (§2 frames) ---------------------------------------------------------------

BAD_FRAMES = [b"", b"hello", b"{", b'{"type":"ping"', b'{"type":"ping",}', b"[1,2]", b'"ping"',
              b"null", b"42", b'{"type":"ping"} x', b'{"type":"ping"}{}', b"\xef\xbb\xbf{\"type\":\"ping\"}",
              b'{"type":"ping","data":"\xff"}', b'{"type":"ping","data":"\xed\xa0\x80"}',
              b'{"type":"ping","data":"\xc0\xaf"}', b'{"type":"ping","data":"\xf4\x90\x80\x80"}',
              b'{"type":"ping","data":"\xe2\x82"}', b'{"type":"ping","data":"a\x01"}',
              b'{"type":"ping","data":"\\x"}', b'{"type":"ping","data":"\\u12g4"}',
              b'{"type":"ping","data":01}', b'{"type":"ping","data":1.}', b'{"type":"ping","data":-}',
              b'{"type":"ping","data":tru}', b"{'type':'ping'}", b'{"type":ping}',
              b'{"data":{}}', b'{"type":5}', b'{"type":null}', b'{"type":["ping"]}', b"\x00"]


@pytest.mark.parametrize("raw", BAD_FRAMES)
def test_bad_frames_ignored_and_connection_stays_usable(hub, raw):
    join(hub, 1, A)
    hub.send_raw(1, raw)
    assert hub.take() == []
    assert hub.closes == []
    assert hub.stats_json()["dropped"]["invalidJson"] == 1
    hub.send(1, {"type": "ping"})
    assert [f["type"] for _, f in hub.take()] == ["pong"]


def test_valid_unicode_and_escapes_accepted(hub):
    hub.connect(1, A)
    hub.take()
    hub.send_raw(1, b'{"type":"ping","data":"\\u0000\\ud800 \xf0\x9f\x98\x80 \xe2\x82\xac","n":-0.5e-7}')
    assert [f["type"] for _, f in hub.take()] == ["pong"]


def test_nesting_limit(hub):
    hub.connect(1, A)
    hub.take()
    ok = b'{"type":"ping","data":' + b"[" * 31 + b"]" * 31 + b"}"      # 32 levels with the frame
    deep = b'{"type":"ping","data":' + b"[" * 32 + b"]" * 32 + b"}"
    hub.send_raw(1, ok)
    assert len(hub.take()) == 1
    hub.send_raw(1, deep)
    hub.send_raw(1, b'{"type":"ping","data":' + b'{"a":' * 3000)       # truncated, very deep
    assert hub.take() == []
    assert hub.stats_json()["dropped"]["invalidJson"] == 2


def test_frames_from_unknown_or_closing_connections_ignored(hub):
    hub.connect(1, url="/")             # refused
    hub.send(1, {"type": "ping"})
    assert hub.take() == []
    assert hub.stats_json()["dropped"]["unknownConn"] == 1


# --- heartbeat and timeout (§8, original HEARTBEAT_INTERVAL/PEER_TIMEOUT) --------------------

@pytest.mark.parametrize("start", [0, 2**32 - 45000])     # the second one wraps millis()
def test_heartbeat_then_timeout(hub, start):
    hub.now = start
    join(hub, 1, A, "n")
    join(hub, 2, B, "n")
    hub.now = start + 29999
    hub.loop()
    assert hub.pings == []
    hub.send(2, {"type": "ping"})       # B is active, A is silent
    hub.take()
    hub.now = start + 30000
    hub.loop()
    hub.loop()
    assert hub.pings == [1]             # once per interval, not per loop()
    hub.now = start + 59999
    hub.loop()
    assert hub.pings == [1, 2] or hub.pings == [1]
    assert hub.closes == []
    hub.now = start + 60000
    hub.loop()
    assert hub.closes == [(1, 1001, "Peer timeout")]
    assert hub.take() == [(2, departed(A, B, "n", "Peer timeout"))]
    assert hub.call("get_peer_count") == 1
    assert hub.stats_json()["connections"] == 2     # the slot frees on on_peer_disconnected
    hub.connect(3, A)                   # the id is free for a reconnect at once
    assert hub.take() == [(3, connected(A))]
    hub.disconnect(1)                   # the old socket going away does not touch the new one
    assert hub.take() == []
    assert hub.call("get_peer_count") == 2


def test_pong_and_frames_count_as_activity(hub):
    hub.connect(1, A)
    hub.now = 30000
    hub.loop()
    assert hub.pings == [1]
    hub.pong(1)
    hub.now = 59999
    hub.loop()
    assert hub.pings == [1]             # 29999 ms since the pong
    hub.now = 89999
    hub.loop()
    assert hub.closes == [] and hub.pings == [1, 1]
    hub.send_raw(1, b"not json")        # any frame is activity, even a bad one
    hub.now = 89999 + 59999
    hub.loop()
    assert hub.closes == []
    hub.now = 89999 + 60000
    hub.loop()
    assert hub.closes == [(1, 1001, "Peer timeout")]
    hub.loop()
    assert hub.closes == [(1, 1001, "Peer timeout")]   # asked once


# --- server lifecycle ------------------------------------------------------------------------

def test_start_and_stop_server(hub):
    assert hub.call("is_running") == 0
    assert hub.call("start_server", 3000) == 0
    assert hub.server == [("start", 3000)]
    assert hub.call("is_running") == 1
    join(hub, 1, A, "n")
    join(hub, 2, B, "n")
    hub.call("stop_server")
    assert sorted(hub.closes) == [(1, 1001, "Server shutting down"), (2, 1001, "Server shutting down")]
    assert hub.server[-1] == ("stop",)
    assert hub.call("is_running") == 0
    assert hub.take() == []             # no departure burst while everyone is being closed
    hub.disconnect(1)
    hub.disconnect(2)
    assert hub.stats_json()["connections"] == 0


# --- stats, hub id ---------------------------------------------------------------------------

def test_stats_json(hub):
    hub.now = 1000
    hub.call("start_server", 80)
    join(hub, 1, A, "n")
    join(hub, 2, B, "m")
    hub.connect(3, C)
    hub.connect(4, url="/")
    hub.send_raw(1, b"{")
    hub.now = 4500
    s = hub.stats_json()
    assert s["running"] is True and s["hubId"] == hub.hub_id()
    assert (s["peers"], s["announced"], s["networks"], s["connections"], s["maxPeers"]) == (3, 2, 2, 3, 20)
    assert s["framesIn"] == 3 and s["framesOut"] == 3
    assert s["dropped"] == {"invalidJson": 1, "unknownType": 0, "noTarget": 0, "unknownTarget": 0,
                            "crossNetwork": 0, "sendFailed": 0, "tooBig": 0, "badAnnounce": 0,
                            "unknownConn": 0, "hubMesh": 0, "dedup": 0}
    assert s["links"] == [] and s["remotePeers"] == 0
    assert s["uptimeMs"] == 4500
    mem = s["memory"]
    assert (mem["pages"], mem["bytes"], mem["stackSize"], mem["inputBuffer"]) == (1, 65536, 3072, 16384)
    assert mem["dataEnd"] <= mem["heapBase"] <= 65536
    assert 0 < mem["stackHighWater"] < mem["stackSize"]


def test_stats_never_overflow(hub):
    ptr, _ = hub.input_buffer()
    full = hub.stats()
    for size in (1, 2, 50, len(full), len(full) + 1):
        hub.write(ptr, b"\xaa" * (size + 16))
        hub.call("get_stats", ptr, size)
        raw = hub.read(ptr, size + 16)
        assert raw[size:] == b"\xaa" * 16, f"wrote past size={size}"
        text = raw[:raw.index(b"\0")].decode()
        assert text == (full if size > len(full) else "")


def test_uptime_survives_millis_wrap(wasm_bytes, engine):
    hub = Hub.__new__(Hub)
    Hub.__init__(hub, wasm_bytes, engine, init=False)
    hub.now = 2**32 - 1000
    hub.call("init")
    hub.now = 2**32 + 2000
    hub.loop()
    assert hub.stats_json()["uptimeMs"] == 3000


def test_stack_high_water_after_big_relay(hub):
    join(hub, 1, A)
    join(hub, 2, B)
    hub.send(1, {"type": "offer", "targetPeerId": B, "data": {"sdp": "x" * 16000}})
    mem = hub.stats_json()["memory"]
    assert mem["stackHighWater"] < mem["stackSize"] // 2


def test_hub_id_is_sha1_of_device_id(wasm_bytes, engine):
    ids = {}
    for device in ("24:0a:c4:12:34:56", "24:0a:c4:12:34:56", "24:0a:c4:12:34:57", ""):
        hub = Hub(wasm_bytes, engine, device_id=device)
        expected = hashlib.sha1(b"pigeonhub-hub-id:" + device.encode()).hexdigest()
        assert hub.hub_id() == expected
        ids.setdefault(device, set()).add(hub.hub_id())
    assert all(len(v) == 1 for v in ids.values()) and len({min(v) for v in ids.values()}) == 3


# --- hub links (docs/PROTOCOL.md §7.2, as bootstrap) -----------------------------------------

HUB = pid(99)


def test_hub_announce_gets_every_client_and_learns_new_ones(hub):
    join(hub, 1, A, "demo")
    join(hub, 2, B, "other")
    hub.connect(9, HUB)
    hub.take()
    hub.send(9, announce("pigeonhub-mesh", isHub=True, port=3000))
    assert hub.take() == [(9, discovered(A, HUB, "demo")), (9, discovered(B, HUB, "other"))]
    hub.connect(3, C)
    hub.send(3, announce("demo"))
    assert hub.take() == [(3, connected(C)), (1, discovered(C, A, "demo")),
                          (3, discovered(A, C, "demo")), (9, discovered(C, HUB, "demo"))]
    assert hub.stats_json()["hubs"] == 1


def test_hub_forwards_discoveries_and_signaling(hub):
    join(hub, 1, A, "demo")
    join(hub, 9, HUB, "pigeonhub-mesh", isHub=True)
    remote = pid(50)
    disc = {"type": "peer-discovered", "data": {"peerId": remote, "isHub": False},
            "networkName": "demo", "fromPeerId": "system"}
    hub.send(9, disc)
    assert hub.take() == [(1, {**disc, "targetPeerId": A, "timestamp": T})]
    # client -> remote peer: unknown here, handed to the hub with the client as sender
    hub.send(1, {"type": "offer", "data": {"sdp": "s"}, "networkName": "demo", "targetPeerId": remote})
    assert hub.take() == [(9, {"type": "offer", "data": {"sdp": "s"}, "fromPeerId": A,
                               "targetPeerId": remote, "networkName": "demo", "timestamp": T})]
    # remote -> client through the hub keeps the original sender
    hub.send(9, {"type": "answer", "data": {"sdp": "a"}, "fromPeerId": remote, "targetPeerId": A,
                 "networkName": "demo"})
    assert hub.take() == [(1, {"type": "answer", "data": {"sdp": "a"}, "fromPeerId": remote,
                               "targetPeerId": A, "networkName": "demo", "timestamp": T})]
    hub.send(9, {"type": "peer-disconnected", "data": {"peerId": remote}, "networkName": "demo"})
    assert hub.take() == [(1, departed(remote, A, "demo", "Peer disconnected"))]   # never an error
    hub.send(9, {"type": "peer-disconnected", "data": {"peerId": remote}})           # G1/G2 shape
    assert hub.take() == []             # forgotten already: told once


def test_non_hub_cannot_inject_discoveries_or_spoof(hub):
    join(hub, 1, A, "demo")
    join(hub, 2, B, "demo")
    hub.send(2, {"type": "peer-discovered", "data": {"peerId": C}, "networkName": "demo"})
    assert hub.take() == []
    hub.send(2, {"type": "offer", "fromPeerId": C, "targetPeerId": A, "networkName": "demo"})
    assert hub.take()[0][1]["fromPeerId"] == B


def test_hubs_do_not_build_their_mesh_through_us(hub):
    join(hub, 8, pid(98), "pigeonhub-mesh", isHub=True)
    join(hub, 9, HUB, "pigeonhub-mesh", isHub=True)
    hub.send(9, {"type": "offer", "data": {}, "targetPeerId": pid(98), "networkName": "pigeonhub-mesh"})
    hub.send(9, {"type": "offer", "data": {}, "targetPeerId": hub.hub_id(), "networkName": "pigeonhub-mesh"})
    assert hub.take() == []
    assert hub.stats_json()["dropped"]["hubMesh"] == 2        # to a hub here, and to our own id


# --- test hooks ------------------------------------------------------------------------------

def test_test_trap_only_in_hook_build(wasm_bytes, built_hooks, engine):
    plain = Hub(wasm_bytes, engine)
    plain.connect(1, A)
    plain.take()
    plain.send(1, {"type": "__test_trap"})
    assert plain.take() == [(1, {"type": "error", "error": ROUTE_ERROR.format("__test_trap"),
                                 "timestamp": T})]
    hooked = Hub(built_hooks.path.read_bytes(), engine)
    hooked.connect(1, A)
    with pytest.raises(Exception, match="(?i)unreachable|trap"):
        hooked.send(1, {"type": "__test_trap"})


def test_url_longer_than_the_buffer_is_refused(hub):
    long_url = "/?" + "x=1&" * 4096 + "peerId=" + A      # > 16 KiB: cut by the host
    hub.connect(1, url=long_url)
    assert hub.closes == [(1, 1008, "Invalid peerId format")]
    fits = "/?" + "x=1&" * 4000 + "peerId=" + A          # < 16 KiB: found at the end
    hub.connect(2, url=fits)
    assert hub.take() == [(2, connected(A))]

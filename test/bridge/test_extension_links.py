"""Outgoing hub links (ABI 2) through the extension: Bridge(bootstrap=..., max_links=...),
transport.connect(conn, url), Bridge.link_open(conn), closes, stats and module swaps.

The module is the bridge tests' fixture (test/native/bridge/fixtures/fixture_hub.wat): its
start_server dials every bootstrap hub, as hub.wasm does; on_link_open sends "link-up".
"""
import json

import pytest

from bridge_support import RecordingTransport

A_URL = "ws://a.example:3000/"
B_URL = "wss://b.example/hub"


class LinkTransport(RecordingTransport):
    """RecordingTransport that can dial: connect() records (conn, url) like a real transport that
    started an attempt; `fail` makes it refuse at once."""

    def __init__(self):
        super().__init__()
        self.dials = []
        self.fail = False

    def connect(self, conn, url):
        if self.fail:
            return -1
        self.dials.append((conn, url))
        return None


def make(bridge_mod, wasm, transport=None, **kwargs):
    t = transport or LinkTransport()
    t.bridge = bridge_mod.Bridge(wasm, t, **kwargs)
    return t


def links(t):
    return json.loads(t.bridge.stats())["bridge"]["links"]


def test_bootstrap_hubs_dialed_opened_closed_once(bridge_mod, fixture_wasm):
    t = make(bridge_mod, fixture_wasm, bootstrap=[A_URL, "", B_URL])
    assert t.bridge.start(3000) == 0
    assert [url for _, url in t.dials] == [A_URL, B_URL]          # the empty entry is skipped
    la, lb = (conn for conn, _ in t.dials)
    assert t.bridge.link_count == 2 and t.bridge.connection_count == 0
    assert [(l["url"], l["state"]) for l in links(t)] == [(A_URL, "connecting"), (B_URL, "connecting")]

    t.bridge.link_open(la)
    t.pump()
    assert t.frames[la] == [b"link-up"] and t.count_logs("I link open") == 1
    t.frame(la, "U")
    assert t.last(la) == A_URL.encode()                           # ws_get_request_url = dialed URL
    t.frame(la, "Eping over the link")
    assert t.last(la) == b"Eping over the link"
    state = {l["url"]: l for l in links(t)}
    assert state[A_URL]["state"] == "open" and state[A_URL]["framesIn"] == 2
    assert state[A_URL]["framesOut"] == 3 and state[B_URL]["state"] == "connecting"

    # b is refused (nothing listens): one on_peer_disconnected, the slot is free again.
    t.bridge.closed(lb)
    t.bridge.closed(lb)
    assert t.count_logs("D gone") == 1
    t.bridge.link_open(lb)                                         # late report: ignored
    assert t.count_logs("I link open") == 1
    t.bridge.closed(la)
    assert t.count_logs("D gone") == 2 and t.bridge.link_count == 0 and links(t) == []


def test_ws_connect_bootstrap_lookup_and_slot_limits(bridge_mod, fixture_wasm):
    t = make(bridge_mod, fixture_wasm, bootstrap=[A_URL], max_links=1, max_connections=1)
    c = t.open("/?peerId=aaaa")
    t.frame(c, "G0F")                                              # snprintf contract, 5-byte buffer
    assert t.last(c) == (20).to_bytes(4, "little") + b"ws:/\0"
    t.frame(c, "G1E")
    assert t.last(c) == (-1).to_bytes(4, "little", signed=True) + b"####"
    t.frame(c, "K" + B_URL)
    conn = int.from_bytes(t.last(c), "little", signed=True)
    assert conn >= 0 and t.dials == [(conn, B_URL)]
    assert t.bridge.open("/?peerId=bbbb") == -1                    # clients full, link slot was kept
    t.frame(c, "K" + A_URL)
    assert int.from_bytes(t.last(c), "little", signed=True) < 0    # max_links 1
    assert t.count_logs("all 1 hub link slots are in use") == 1
    t.frame(c, "Khttp://a.example/")
    assert int.from_bytes(t.last(c), "little", signed=True) < 0
    assert t.count_logs("not a ws:// or wss:// URL") == 1


def test_transport_without_connect_has_no_links(bridge_mod, fixture_wasm):
    t = make(bridge_mod, fixture_wasm, transport=RecordingTransport(), bootstrap=[A_URL])
    assert t.bridge.start(3000) == 0
    assert t.bridge.link_count == 0
    assert t.count_logs("W bridge: this transport has no outgoing links; ws_connect ws://a.example:3000/") == 1


def test_failing_or_raising_connect_gives_module_an_error(bridge_mod, fixture_wasm, monkeypatch):
    t = make(bridge_mod, fixture_wasm)
    c = t.open("/?peerId=aaaa")
    t.fail = True
    t.frame(c, "K" + A_URL)
    assert int.from_bytes(t.last(c), "little", signed=True) < 0 and t.bridge.link_count == 0
    assert t.count_logs(f"bridge: transport could not dial {A_URL}") == 1

    reported = []
    monkeypatch.setattr("sys.unraisablehook", lambda info: reported.append(info.exc_value))

    def boom(conn, url):
        raise OSError("resolver exploded")
    t.connect = boom
    t2 = make(bridge_mod, fixture_wasm, transport=t)
    c2 = t2.open("/?peerId=bbbb")
    t2.frame(c2, "K" + A_URL)
    assert int.from_bytes(t2.last(c2), "little", signed=True) < 0
    assert any("resolver exploded" in str(e) for e in reported)
    t2.frame(c2, "Estill serving")
    assert t2.last(c2) == b"Estill serving"


@pytest.mark.parametrize("kwargs,exc,message", [
    (dict(bootstrap="ws://a/"), TypeError, "bootstrap must be a list of URLs, not a str"),
    (dict(bootstrap=["ws://a/", 7]), TypeError, "bootstrap[1] must be a str, not int"),
    (dict(bootstrap=5), TypeError, "bootstrap must be a list of URLs"),
    (dict(max_links=17), ValueError, "max_links must be 0..16, not 17"),
])
def test_bad_link_arguments(bridge_mod, fixture_wasm, kwargs, exc, message):
    with pytest.raises(exc) as info:
        bridge_mod.Bridge(fixture_wasm, LinkTransport(), **kwargs)
    assert message in str(info.value)


def test_too_long_bootstrap_url_refused(bridge_mod, fixture_wasm):
    with pytest.raises(bridge_mod.BridgeError) as info:
        bridge_mod.Bridge(fixture_wasm, LinkTransport(), bootstrap=["ws://" + "x" * 600])
    assert info.value.code == bridge_mod.ERR_CONFIG
    assert "bootstrap hub 0 is 605 bytes long; at most 448 are allowed" in str(info.value)


def test_swap_hands_links_over_silently(bridge_mod, fixture_wasm):
    t = make(bridge_mod, fixture_wasm, bootstrap=[A_URL])
    t.bridge.start(3000)
    (la, _), = t.dials
    t.bridge.link_open(la)
    t.pump()
    sent = list(t.frames[la])
    assert t.bridge.swap(fixture_wasm) == 0                        # no accepted connections
    assert len(t.dials) == 1                                       # handed over, not dialed again
    assert t.frames[la] == sent                                    # the new on_link_open is muted
    assert t.count_logs("I link open") == 2
    assert t.count_logs("1 hub links") == 1
    t.frame(la, "Enew module")
    assert t.last(la) == b"Enew module"
    t.bridge.closed(la)
    assert t.count_logs("D gone") == 1

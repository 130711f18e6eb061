"""A hub link from the emulated board to a PC hub (main/ws_links.c on esp_websocket_client).

The board is provisioned with `bootstrap` = ws://10.0.2.100:<guest port>/ and QEMU forwards that
guest address (guestfwd) to a `pigeonhub serve` on 127.0.0.1. What a user sees is asserted: the
board's serial log says it is connecting and that the link is open, the PC hub counts one hub in
/health and /stats and logs the board's hub id announcing itself as a hub, and raw PeerPigeon peers
(test/conformance/hubclient.py), one on each hub in one network, discover each other across the
link and relay offers and answers both ways, exactly once; real PeerPigeon clients, one on each
hub, connect over WebRTC across it. Last, the PC hub is killed and started again on the same port:
the board notices, re-dials with backoff and the link carries traffic again.

    .venv/bin/pytest test/board/test_hub_link.py --emulated-board esp32   # or esp32c3
"""

import json
import re
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for extra in (HERE.parent / "conformance", HERE.parent / "mesh"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from hubclient import Peer, new_network, of_type  # noqa: E402
from hubprocess import emulator, free_port, http_get, start_pc_hub, wait_until  # noqa: E402
from meshsupport import assert_pair_said_hello, run_mesh_across  # noqa: E402

pytestmark = [pytest.mark.slow]

GUEST_ADDR = "10.0.2.100"    # qemu-run.sh's default guestfwd address: leads to 127.0.0.1 only
MESH_NETWORK = "pigeonhub-mesh"
LINK_UP = 30.0               # s from boot to the link being up (first dial is immediate)
RELINK = 30.0                # s for the re-dial after the PC hub restarts (backoff 1, 2, 4... s)
# s for the board to notice the PC hub is gone: at once when the FIN arrives, but when a send
# fails first, esp_websocket_client 1.8.0's task waits out its 10 s network timeout first
DROP = 20.0
FRAME = 15.0                 # s for a frame to cross QEMU's user network and the relay
QUIET = 1.5                  # s of silence after which "exactly once" is judged
SDP = "v=0\r\no=- {tag} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def get_json(hub, path):
    status, _ctype, body = http_get(hub, path, timeout=10.0)
    assert status == 200, (path, body)
    return json.loads(body)


class Linked:
    """A PC hub on 127.0.0.1:<port> and a board whose bootstrap hub is that PC hub, reached as
    ws://10.0.2.100:<guest port>/ through guestfwd. `pc` changes when a test restarts it."""

    def __init__(self, build, tmp: Path):
        self.tmp = tmp
        self.pc_port = free_port()
        self.guest_port = 3300          # any port: only the guestfwd rule gives it a meaning
        self.bootstrap = f"ws://{GUEST_ADDR}:{self.guest_port}/"
        self.pc_starts = 0
        self.pc = self.start_pc()
        emu = emulator()
        self.board = emu.Board(build, tmp / "board.log",
                               guestfwd=[f"{GUEST_ADDR}:{self.guest_port}:{self.pc_port}"],
                               settings={"bootstrap": self.bootstrap})
        try:
            self.board.start()
        except emu.EmulatorError as exc:
            self.board.stop()
            self.pc.stop()
            pytest.fail(str(exc), pytrace=False)
        self.board_id = self.board.wait_for(r"hub id ([0-9a-f]{40})").group(1)

    def start_pc(self):
        self.pc_starts += 1
        return start_pc_hub(self.tmp / f"pc-hub-{self.pc_starts}.log", "--port", self.pc_port)

    def logs(self):
        """Both logs' tails and both modules' counters, for assertion messages."""
        counters = {}
        for name, hub in (("board", self.board), ("PC hub", self.pc)):
            try:
                m = get_json(hub, "/stats")["module"]
                counters[name] = {k: m.get(k) for k in ("framesIn", "framesOut", "hubs", "dropped")}
            except Exception as exc:  # noqa: BLE001 — a hub that is down says so
                counters[name] = repr(exc)
        return (f"\n--- board serial log (tail) ---\n{self.board.boot_log()[-4000:]}"
                f"\n--- PC hub log (tail) ---\n{self.pc.log()[-3000:]}"
                f"\n--- module counters ---\n{json.dumps(counters)}")

    def pc_hubs(self):
        return get_json(self.pc, "/stats")["module"]["hubs"]

    def board_links(self):
        return get_json(self.board, "/stats")["bridge"]["links"]

    def wait_link_counted(self, timeout):
        """Until the PC hub's module counts the board as its one hub."""
        try:
            wait_until(lambda: self.pc_hubs() == 1, timeout, "the PC hub never counted the board's link")
        except AssertionError as exc:
            raise AssertionError(f"{exc}{self.logs()}") from None

    def stop(self):
        self.board.stop()
        alive = self.pc.proc.poll() is None      # not the one a failed restart test killed
        code = self.pc.stop()
        if alive and code != 0:
            pytest.fail(f"pigeonhub serve exited with {code}; its log:\n{self.pc.log()}", pytrace=False)


@pytest.fixture(scope="module")
def linked(board_build, tmp_path_factory):
    """One board and one PC hub for the whole module (each boot costs seconds of emulation)."""
    setup = Linked(board_build, tmp_path_factory.mktemp("hub-link"))
    yield setup
    setup.stop()


@pytest.fixture
def link(linked, request):
    """`linked`, with the board registered for test/board/conftest.py's failure report."""
    request.node._boards = [linked.board]
    return linked


@pytest.fixture
def peers():
    made = []

    def join(hub, network):
        p = Peer(hub.url, timeout=FRAME)
        made.append(p)
        p.expect("connected", timeout=FRAME)
        p.announce(network)
        return p

    yield join
    for p in made:
        p.close()


def count(frames, type_, **match):
    return len(of_type(frames, type_, **match))


def offer_and_answer(sender, receiver, tag):
    """sender offers, receiver answers: each frame arrives once, stamped with its sender's id,
    in the network, the SDP intact."""
    offer = {"type": "offer", "sdp": SDP.format(tag=tag)}
    sender.signal("offer", offer, targetPeerId=receiver.id)
    got = receiver.expect("offer", timeout=FRAME, fromPeerId=sender.id)
    assert got["data"] == offer and got["targetPeerId"] == receiver.id
    assert got["networkName"] == sender.network
    answer = {"type": "answer", "sdp": SDP.format(tag=tag + 1)}
    receiver.signal("answer", answer, targetPeerId=sender.id)
    got = sender.expect("answer", timeout=FRAME, fromPeerId=receiver.id)
    assert got["data"] == answer and got["targetPeerId"] == sender.id


def assert_meet_across(link, peers, first):
    """x on the PC hub and y on the board, one network; `first` ("pc" or "board") joins first,
    so the late joiner must learn the other from what crossed the link earlier."""
    net = new_network()
    if first == "pc":
        x = peers(link.pc, net)
        time.sleep(0.5)
        y = peers(link.board, net)
    else:
        y = peers(link.board, net)
        time.sleep(0.5)
        x = peers(link.pc, net)
    elsewhere = peers(link.board, new_network())   # another network on the board: hears nothing
    try:
        got = y.expect("peer-discovered", timeout=FRAME, data__peerId=x.id)
        assert got["targetPeerId"] == y.id and got["networkName"] == net
        got = x.expect("peer-discovered", timeout=FRAME, data__peerId=y.id)
        assert got["targetPeerId"] == x.id and got["networkName"] == net
        offer_and_answer(x, y, 100)     # PC hub -> board -> PC hub
        offer_and_answer(y, x, 200)     # board -> PC hub -> board
    except AssertionError as exc:
        raise AssertionError(f"{exc}{link.logs()}") from None
    rest_x, rest_y = x.drain(QUIET), y.drain(QUIET)
    assert count(rest_y, "peer-discovered", data__peerId=x.id) == 0, "y discovered x twice"
    assert count(rest_x, "peer-discovered", data__peerId=y.id) == 0, "x discovered y twice"
    assert count(rest_x, "offer") + count(rest_y, "offer") == 0, "an offer arrived twice"
    assert count(rest_x, "answer") + count(rest_y, "answer") == 0, "an answer arrived twice"
    assert of_type(elsewhere.drain(QUIET), "peer-discovered") == [], "discovery leaked across networks"


# ---- the tests ---------------------------------------------------------------------------------


def test_board_dials_the_pc_hub_and_the_link_comes_up(link):
    link.wait_link_counted(LINK_UP)
    log = link.board.boot_log()
    assert re.search(rf"pigeonhub: bootstrap hub {re.escape(link.bootstrap)}\s*$", log, re.M), log[-3000:]
    assert f"connecting to bootstrap hub {link.bootstrap}?peerId={link.board_id}" in log, log[-3000:]
    assert f"hub link {link.bootstrap} open" in log, log[-3000:]

    # The PC hub: the board announced itself as a hub, and it is counted as one.
    assert f"peer {link.board_id[:8]}… announced as hub in '{MESH_NETWORK}'" in link.pc.log(), link.logs()
    health = get_json(link.pc, "/health")
    assert health["status"] == "healthy" and health["hubs"] == 1 and health["connections"] >= 1, health
    module = get_json(link.pc, "/stats")["module"]
    assert module["hubs"] == 1 and module["dropped"]["unknownType"] == 0, module

    # The board's own /stats shows its outgoing link open.
    links = link.board_links()
    assert [(lk["url"], lk["state"]) for lk in links] == \
        [(f"{link.bootstrap}?peerId={link.board_id}", "open")], links


def test_pc_hub_clients_see_the_board_only_as_a_hub_of_the_hub_network(link, peers):
    """Clients of an ordinary network are never told of the board hub; one in the hubs' own
    network (pigeonhub-mesh) learns it with the announce the board sent (as between PC hubs)."""
    link.wait_link_counted(LINK_UP)
    c = peers(link.pc, new_network())
    assert of_type(c.drain(QUIET), "peer-discovered", data__peerId=link.board_id) == []
    m = peers(link.pc, MESH_NETWORK)
    got = m.expect("peer-discovered", timeout=FRAME, data__peerId=link.board_id)
    assert got["networkName"] == MESH_NETWORK, got
    data = got["data"]
    assert data["isHub"] is True and data["port"] == emulator().HUB_PORT, data
    assert data["capabilities"] == ["signaling", "relay"] and re.fullmatch(r"[0-9a-f]{12}", data["host"]), data


@pytest.mark.parametrize("first", ["pc", "board"])
def test_peers_discover_each_other_and_signal_both_ways(link, peers, first):
    link.wait_link_counted(LINK_UP)
    before = {lk["url"]: lk for lk in link.board_links()}
    assert_meet_across(link, peers, first)
    # It went over the board's link: its bridge counts frames both ways on it.
    after = link.board_links()
    assert len(after) == 1 and after[0]["state"] == "open", after
    was = before.get(after[0]["url"], {"framesIn": 0, "framesOut": 0})
    assert after[0]["framesIn"] > was["framesIn"] and after[0]["framesOut"] > was["framesOut"], (was, after)


def test_offers_of_several_board_peers_at_once_cross_the_link(link, peers):
    """Three peers on the board offer to one newcomer on the PC hub at the same moment, with
    browser-sized SDPs (README: real offers are 4-8 KB). The link carries every peer's traffic:
    all three offers must arrive, and the link must stay up (a dropped link forgets every remote
    peer of every network)."""
    link.wait_link_counted(LINK_UP)
    net = new_network()
    locals_ = [peers(link.board, net) for _ in range(3)]
    x = peers(link.pc, net)
    for p in locals_:
        x.expect("peer-discovered", timeout=FRAME, data__peerId=p.id)
        p.expect("peer-discovered", timeout=FRAME, data__peerId=x.id)
    mark = len(link.board.boot_log())
    sdp = {p.id: SDP.format(tag=i) + "a=x-pad:" + "x" * 6000 + "\r\n" for i, p in enumerate(locals_)}
    for p in locals_:
        p.signal("offer", {"type": "offer", "sdp": sdp[p.id]}, targetPeerId=x.id)
    try:
        for p in locals_:
            got = x.expect("offer", timeout=FRAME, fromPeerId=p.id)
            assert got["data"]["sdp"] == sdp[p.id]
    except AssertionError as exc:
        raise AssertionError(f"{exc}{link.logs()}") from None
    since = link.board.boot_log()[mark:]
    assert f"hub link {link.bootstrap} closed" not in since, link.logs()
    assert [lk["state"] for lk in link.board_links()] == ["open"]


@pytest.mark.interop
@pytest.mark.parametrize("late", ["on-board", "on-pc"])
def test_real_clients_connect_over_webrtc_across_the_link(link, late):
    """Real PeerPigeon clients (npm peerpigeon 1.1.3, test/interop/peer_pair.mjs): A on the board,
    B on the PC hub, the late joiner sending the WebRTC offer; both say hello on the data channel."""
    link.wait_link_counted(LINK_UP)
    first, initiator = ("b", "A") if late == "on-board" else ("a", "B")
    for attempt in (1, 2):
        proc, events, report = run_mesh_across(link.board.url, link.pc.url, network=new_network(),
                                               first=first, initiator=initiator)
        try:
            assert_pair_said_hello(proc, events, report)
            return
        except AssertionError as exc:
            # An unexplained intermittent WebRTC timeout across the link (about 1 run in 20 on the
            # emulated esp32c3; noted on the emulator issue): a second pair in a fresh network.
            # Two pairs in a row that do not connect fail the test.
            if attempt == 2:
                raise AssertionError(f"{exc}{link.logs()}") from None
            print(f"\n  the first pair did not connect ({exc}); a second pair tries")


def test_pc_hub_restart_the_board_relinks(link, peers):
    link.wait_link_counted(LINK_UP)
    opened = len(re.findall(rf"hub link {re.escape(link.bootstrap)} open", link.board.boot_log()))
    mark = len(link.board.boot_log())

    link.pc.proc.kill()                          # no close frame: the TCP link just drops
    link.pc.proc.wait(10)
    try:
        link.board.wait_for(rf"hub link {re.escape(link.bootstrap)} (closed|timed out|failed)",
                            timeout=DROP, since=mark)
    except emulator().EmulatorError as exc:
        pytest.fail(f"the board never noticed the PC hub was gone: {exc}", pytrace=False)
    # Meanwhile the board keeps serving its own clients.
    p = peers(link.board, new_network())
    p.roundtrip(timeout=FRAME)

    link.pc = link.start_pc()                    # the same port: the guestfwd rule still fits
    try:
        wait_until(lambda: len(re.findall(rf"hub link {re.escape(link.bootstrap)} open",
                                          link.board.boot_log())) > opened,
                   RELINK, "the board never re-opened its link")
    except AssertionError as exc:
        raise AssertionError(f"{exc}{link.logs()}") from None
    link.wait_link_counted(FRAME)
    assert_meet_across(link, peers, "board")

"""Fixtures of the hub-mesh suite (protocol.md §6, §14 items 8-9).

Every test starts the hubs it needs (PC hubs via `pigeonhub serve`, reference hubs via
reference_hub.mjs) so that what one hub tells another is only what that test did: a hub link
sees every client of every network, so a shared session hub would mix tests.

    HUB_WASM=build/hub.wasm python3 -m pytest test/mesh -q

Tests of outgoing links (`pigeonhub serve --bootstrap URL`) skip themselves while the CLI does
not offer --bootstrap, and switch on once it does.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "conformance"))   # hubclient (raw-frame peers)

from hubclient import Peer, new_id  # noqa: E402
from hubprocess import ROOT, http_get, start_pc_hub  # noqa: E402

INTEROP = HERE.parent / "interop"
REFERENCE_HUB = HERE / "reference_hub.mjs"
MESH_ACROSS = HERE / "mesh_across.mjs"
NEEDS_BOOTSTRAP = "needs outgoing hub links (--bootstrap)"


def _serve_help():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        out = subprocess.run([sys.executable, "-m", "pigeonhub.cli", "serve", "--help"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout + out.stderr


_HELP = None


def serve_has_bootstrap():
    """True when `pigeonhub serve --help` lists --bootstrap (outgoing hub links exist)."""
    global _HELP
    if _HELP is None:
        _HELP = _serve_help()
    return "--bootstrap" in _HELP


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("needs_bootstrap") and not serve_has_bootstrap():
            item.add_marker(pytest.mark.skip(reason=NEEDS_BOOTSTRAP))


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_bootstrap: needs `pigeonhub serve --bootstrap` "
                                       "(outgoing hub links); skipped while the CLI lacks it")


def need_node():
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules" / "peerpigeon").is_dir():
        pytest.skip("needs node and `npm ci --ignore-scripts` in test/interop (scripts/setup.sh test)")
    return node


# ---- PC hubs -----------------------------------------------------------------------------------


def module_stats(hub):
    """The module's get_stats() document of a PC hub (/stats -> "module")."""
    _status, _ctype, body = http_get(hub, "/stats")
    return json.loads(body)["module"]


def wait_until(predicate, timeout, what, interval=0.1):
    """Polls `predicate` until it returns something truthy; fails with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} (not within {timeout} s; last value {last!r})")


@pytest.fixture
def pc_hubs(tmp_path, request):
    """start(*serve_args, name=...) -> a fresh `pigeonhub serve` on 127.0.0.1 (port 0 unless the
    args say --port). All are stopped at test end; an unclean exit fails the test."""
    started = []
    request.node.mesh_hubs = getattr(request.node, "mesh_hubs", [])

    def start(*args, name=None):
        name = name or f"pc{len(started)}"
        hub = start_pc_hub(tmp_path / f"{name}.log", *args)
        hub.name = name
        started.append(hub)
        request.node.mesh_hubs.append(hub)
        return hub

    yield start
    failures = []
    for hub in started:
        code = hub.stop()
        if code != 0:
            failures.append(f"{hub.name} exited with {code}; its log:\n{hub.log()}")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.fixture
def pc_hub(pc_hubs):
    """One fresh PC hub (the bootstrap side of every link in test_hub_link.py)."""
    return pc_hubs(name="ours")


# ---- raw peers ---------------------------------------------------------------------------------


HUB_ANNOUNCE_DATA = {"isHub": True, "port": 1, "host": "127.0.0.1",
                     "capabilities": ["signaling", "relay"], "timestamp": 1}


@pytest.fixture
def raw(pc_hub):
    """Raw-frame connections to `pc_hub`, closed at test end:
    raw.client(network, **announce_data) -> Peer that got `connected` and announced;
    raw.fake_hub() -> Peer that got `connected` and announced as a hub exactly as a PigeonHub
    (npm peerpigeon 1.1.3) hub does on its outgoing link (protocol.md §6.1)."""

    class Raw:
        def __init__(self):
            self.made = []

        def connect(self, peer_id=None):
            peer = Peer(pc_hub.url, peer_id)
            self.made.append(peer)
            peer.expect("connected")
            return peer

        def client(self, network, **data):
            peer = self.connect()
            peer.announce(network, **data)
            return peer

        def fake_hub(self, hub_id=None):
            peer = self.connect(hub_id)
            peer.send({"type": "announce", "networkName": "pigeonhub-mesh",
                       "data": dict(HUB_ANNOUNCE_DATA)})
            return peer

    r = Raw()
    yield r
    for peer in r.made:
        peer.close()


# ---- reference hubs and real clients ----------------------------------------------------------


class ReferenceHub:
    """reference_hub.mjs: npm peerpigeon 1.1.3 PeerPigeonServer(isHub) on 127.0.0.1."""

    def __init__(self, proc, out_path, err_path):
        self.proc, self.out_path, self.err_path = proc, Path(out_path), Path(err_path)
        started = self.wait_event("started", timeout=20)
        self.port = started["port"]
        self.hub_id = started["hubPeerId"]
        self.url = f"ws://127.0.0.1:{self.port}"

    def events(self):
        text = self.out_path.read_text(errors="replace") if self.out_path.exists() else ""
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait_event(self, event, timeout=15.0, **match):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                    return e
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"reference hub: no {event!r} event {match} within {timeout} s "
                             f"(exit code {self.proc.poll()}); events:\n"
                             + "\n".join(json.dumps(e) for e in self.events())
                             + "\nlog tail:\n" + "\n".join(self.log().splitlines()[-60:]))

    def log(self):
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def reference_hubs(tmp_path, request):
    """start(*bootstrap_urls, name=...) -> a ReferenceHub dialing those hubs ("self" = dial
    nobody). Stopped at test end."""
    node = need_node()
    started = []
    request.node.mesh_hubs = getattr(request.node, "mesh_hubs", [])

    def start(*bootstrap, name=None):
        name = name or f"ref{len(started)}"
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.log"
        args = [node, str(REFERENCE_HUB)]
        for url in bootstrap:
            args += ["--bootstrap", url]
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(args, cwd=HERE, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        try:
            hub = ReferenceHub(proc, out, err)
        except AssertionError:
            proc.kill()
            proc.wait(5)
            raise
        hub.name = name
        started.append(hub)
        request.node.mesh_hubs.append(hub)
        return hub

    yield start
    for hub in started:
        hub.stop()


def run_mesh_across(url_a, url_b, *, network, first="a", initiator=None, gap=1.0, timeout=30):
    """mesh_across.mjs: real client A on url_a, B on url_b. initiator "A"/"B" fixes the ids so
    that this one has the larger id, i.e. is the one the 1.1.3 client lets send the offer.
    Returns (completed process, events, report text)."""
    node = need_node()
    args = [node, str(MESH_ACROSS), "--url-a", url_a, "--url-b", url_b, "--network", network,
            "--first", first, "--gap", str(gap), "--timeout", str(timeout)]
    if initiator:
        low, high = sorted([new_id(), new_id()])
        ids = {"A": high, "B": low} if initiator == "A" else {"A": low, "B": high}
        args += ["--id-a", ids["A"], "--id-b", ids["B"]]
    proc = subprocess.run(args, cwd=HERE, capture_output=True, text=True, timeout=timeout + 20)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    report = (f"exit {proc.returncode}\nevents:\n{proc.stdout}\nnode stderr (tail):\n"
              + "\n".join(proc.stderr.splitlines()[-40:]))
    return proc, events, report


def assert_pair_said_hello(proc, events, report):
    """Both clients discovered each other, connected over WebRTC and got the other's hello."""
    ids = {e["peer"]: e["id"] for e in events if e["event"] == "ready"}
    assert set(ids) == {"A", "B"}, report
    other = {"A": ids["B"], "B": ids["A"]}

    def seen(event, key):
        return {e["peer"] for e in events if e["event"] == event and e.get(key) == other[e["peer"]]}

    assert seen("peerDiscovered", "peerId") == {"A", "B"}, "both must discover the other\n" + report
    assert seen("peerConnected", "peerId") == {"A", "B"}, "WebRTC connection not made\n" + report
    assert seen("messageReceived", "from") == {"A", "B"}, "no data-channel hello\n" + report
    for e in events:
        if e["event"] == "messageReceived" and e["from"] == other[e["peer"]]:
            assert e["content"] == f"hello from {'B' if e['peer'] == 'A' else 'A'}", report
    assert proc.returncode == 0 and any(e["event"] == "done" for e in events), report


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing mesh test shows the tail of the log of every hub it started."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    for hub in getattr(item, "mesh_hubs", []):
        rep.sections.append((f"hub {hub.name} log (last 60 lines)",
                             "\n".join(hub.log().splitlines()[-60:])))

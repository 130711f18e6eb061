"""Fixtures of the hub-mesh suite (docs/PROTOCOL.md §7, §12 items 8-10).

Every test starts the hubs it needs (PC hubs via `pigeonhub serve`, reference hubs via
reference_hub.mjs), so what one hub tells another is only what that test did: a hub link carries
every client of every network, so a shared session hub would mix tests.

    HUB_WASM=build/hub.wasm python3 -m pytest test/mesh -q

Tests marked needs_bootstrap (outgoing links, `pigeonhub serve --bootstrap URL`) skip themselves
while `pigeonhub serve --help` does not list --bootstrap, and switch on once it does.
"""

import pytest

# meshsupport first: it puts test/conformance (hubclient) on sys.path
from meshsupport import NEEDS_BOOTSTRAP, need_node, serve_has_bootstrap, start_reference_hub
from hubclient import Peer  # noqa: E402  (isort: after meshsupport)
from hubprocess import start_pc_hub  # noqa: E402

HUB_ANNOUNCE = {"type": "announce", "networkName": "pigeonhub-mesh",
                "data": {"isHub": True, "port": 1, "host": "127.0.0.1",
                         "capabilities": ["signaling", "relay"], "timestamp": 1}}


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_bootstrap: needs `pigeonhub serve --bootstrap` "
                                       "(outgoing hub links); skipped while the CLI lacks it")


def pytest_collection_modifyitems(config, items):
    mesh_items = [i for i in items if i.get_closest_marker("needs_bootstrap")]
    if mesh_items and not serve_has_bootstrap():
        for item in mesh_items:
            item.add_marker(pytest.mark.skip(reason=NEEDS_BOOTSTRAP))


@pytest.fixture
def pc_hubs(tmp_path, request):
    """start(*serve_args, name=...) -> a fresh `pigeonhub serve` on 127.0.0.1 (port 0 unless the
    args give --port). All are stopped at test end; an unclean exit fails the test."""
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
    """One fresh PC hub: the bootstrap side of every link in test_hub_link.py."""
    return pc_hubs(name="ours")


@pytest.fixture
def raw(pc_hub):
    """Raw-frame connections to `pc_hub`, closed at test end:
    raw.connect(id=None) -> Peer that got `connected`;
    raw.client(network, **announce_data) -> Peer that got `connected` and announced;
    raw.fake_hub(id=None) -> Peer that got `connected` and announced as a hub exactly as a
    PigeonHub (npm peerpigeon 1.1.3) hub does on its outgoing link (docs/PROTOCOL.md §7.2)."""

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
            peer.send(HUB_ANNOUNCE)
            return peer

    r = Raw()
    yield r
    for peer in r.made:
        peer.close()


@pytest.fixture
def reference_hubs(tmp_path, request):
    """start(*bootstrap_urls, name=...) -> a ReferenceHub (npm 1.1.3 hub) dialing those hubs;
    "self" = dial nobody. Stopped at test end."""
    node = need_node()
    started = []
    request.node.mesh_hubs = getattr(request.node, "mesh_hubs", [])

    def start(*bootstrap, name=None):
        name = name or f"ref{len(started)}"
        hub = start_reference_hub(node, tmp_path / f"{name}.out", tmp_path / f"{name}.log",
                                  bootstrap, name)
        started.append(hub)
        request.node.mesh_hubs.append(hub)
        return hub

    yield start
    for hub in started:
        hub.stop()


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

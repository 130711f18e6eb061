"""Fixtures of the conformance suite: raw-frame peers that are closed after each test."""

import json
import urllib.error

import pytest

from hubprocess import http_get
from hubclient import Peer


@pytest.fixture
def connect(hub):
    """connect(peer_id=None, **kw) -> Peer on the hub under test; all closed at test end."""
    made = []

    def make(peer_id=None, **kw):
        peer = Peer(hub.url, peer_id, **kw)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


@pytest.fixture
def joined(connect):
    """joined(network=None, **announce_data) -> a Peer that got `connected` and announced."""

    def make(network=None, **data):
        peer = connect()
        peer.expect("connected")
        if network is not None:
            peer.announce(network, **data)
            # The hub handles one connection's frames in order: its pong means the announce has
            # taken effect, so a slower hub (a board) cannot see another peer's signal first.
            peer.roundtrip()
        return peer

    return make


@pytest.fixture
def frame_limit(hub):
    """Largest frame the hub accepts: the module's input buffer on our hubs (from /stats), ws's
    maxPayload (1 MiB) on the reference."""
    if hub.kind == "reference":
        return 1024 * 1024
    try:
        _status, _ctype, body = http_get(hub, "/stats")
        size = json.loads(body).get("server", {}).get("inputBufferSize")
        if isinstance(size, int) and size > 0:
            return size
    except (urllib.error.URLError, ValueError, OSError):
        pass
    return 16384  # MAX_MESSAGE_SIZE in wasm/pigeonhub_abi.h

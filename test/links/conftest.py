"""Fixtures of the outgoing hub link suite: real `pigeonhub serve` processes linked with
--bootstrap, raw-frame peers (test/conformance/hubclient.py) on each.

    HUB_WASM=build/hub.wasm python3 -m pytest test/links -q

Needs an ABI 2 hub module (outgoing links: ws_connect / on_link_open); with an older module every
hub refuses to boot with "module implements hub ABI version 1", which fails these tests loudly.
"""
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for extra in (HERE.parent, HERE.parent / "conformance"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from hubprocess import start_pc_hub  # noqa: E402


@pytest.fixture
def hubs(tmp_path):
    """start(*serve_args, name=...) -> a fresh `pigeonhub serve` on 127.0.0.1 (port 0 unless the
    args say --port). Every hub still running at the end is stopped and must exit 0."""
    started = []

    def start(*args, name=None):
        name = name or f"hub{len(started)}"
        hub = start_pc_hub(tmp_path / f"{name}-{len(started)}.log", *args)
        hub.name = name
        started.append(hub)
        return hub

    yield start
    bad = []
    for hub in started:
        if hub.proc.poll() is None:
            code = hub.stop()
            if code != 0:
                bad.append(f"{hub.name} exited {code}:\n{hub.log()}")
    if bad:
        pytest.fail("\n".join(bad), pytrace=False)

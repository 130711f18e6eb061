"""The real PeerPigeon client (npm peerpigeon 1.1.3, headless Node with WebRTC) through the hub:
two meshes discover each other, connect over WebRTC via the hub's signaling relay and exchange a
data-channel "hello". Runs against the hub under test (PC hub, --hub-url, --against-reference,
--emulated-board esp32|esp32c3: the firmware in QEMU, reached on its forwarded 127.0.0.1 port)."""

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "peer_pair.mjs"
TIMEOUT = 30  # s for the whole exchange (about 1 s on loopback)

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def run_pair(url, network, env=None):
    """env: extra environment for node (NODE_EXTRA_CA_CERTS: a test CA for wss://)."""
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "peerpigeon").is_dir():
        pytest.skip("needs node and `npm ci --ignore-scripts` in test/interop (scripts/setup.sh test)")
    proc = subprocess.run([node, str(SCRIPT), "--url", url, "--network", network,
                           "--timeout", str(TIMEOUT)],
                          cwd=HERE, capture_output=True, text=True, timeout=TIMEOUT + 15,
                          env=dict(os.environ, **env) if env else None)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc, events


@pytest.mark.parametrize("round_", range(3))  # a racy hub fails some rounds: one try is not enough
def test_two_clients_discover_connect_and_say_hello(hub, round_):
    proc, events = run_pair(hub.url, f"interop-{round_}-{uuid.uuid4().hex[:8]}")
    report = f"exit {proc.returncode}\nevents:\n{proc.stdout}\nnode stderr (tail):\n" \
             + "\n".join(proc.stderr.splitlines()[-40:])
    ids = {e["peer"]: e["id"] for e in events if e["event"] == "ready"}
    assert set(ids) == {"A", "B"}, report
    other = {"A": ids["B"], "B": ids["A"]}

    def seen(event, **fields):
        return {e["peer"] for e in events if e["event"] == event
                and all(e.get(k) == (v(e["peer"]) if callable(v) else v) for k, v in fields.items())}

    assert seen("peerDiscovered", peerId=lambda p: other[p]) == {"A", "B"}, report
    assert seen("peerConnected", peerId=lambda p: other[p]) == {"A", "B"}, report
    hellos = seen("messageReceived", **{"from": lambda p: other[p]})
    assert hellos == {"A", "B"}, report
    for e in events:
        if e["event"] == "messageReceived" and e["from"] == other[e["peer"]]:
            assert e["content"] == f"hello from {'B' if e['peer'] == 'A' else 'A'}"
    assert proc.returncode == 0 and any(e["event"] == "done" for e in events), report

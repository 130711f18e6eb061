"""Helpers of the hub-mesh suite (imported by conftest.py and the tests): the reference hub
process, the two-hub real-client run, /stats, polling, --bootstrap detection."""

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
sys.path.insert(0, str(HERE.parent / "conformance"))   # hubclient: the raw-frame peers

from hubclient import new_id  # noqa: E402
from hubprocess import ROOT, http_get, wait_until  # noqa: E402

INTEROP = HERE.parent / "interop"
REFERENCE_HUB = HERE / "reference_hub.mjs"
MESH_ACROSS = HERE.parent / "interop" / "peer_pair.mjs"
NEEDS_BOOTSTRAP = "needs outgoing hub links (--bootstrap)"
MESH_NETWORK = "pigeonhub-mesh"
# What a reference (1.1.3) hub emits / logs once its WebRTC hub mesh forms or migrates
# (docs/PROTOCOL.md §7.7)
MESH_FORMED_EVENTS = ("hubP2PConnected", "hubMeshReady", "hubMeshMigrated")
MESH_FORMED_LOG = ("Hub mesh is READY", "MIGRATING to P2P", "Migrated to P2P mesh",
                   "P2P connection established with hub")

_help_text = None


def serve_has_bootstrap():
    """True when `pigeonhub serve --help` lists --bootstrap (outgoing hub links exist)."""
    global _help_text
    if _help_text is None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
        try:
            out = subprocess.run([sys.executable, "-m", "pigeonhub.cli", "serve", "--help"],
                                 cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            _help_text = out.stdout + out.stderr
        except (OSError, subprocess.TimeoutExpired):
            _help_text = ""
    return "--bootstrap" in _help_text


def need_node():
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules" / "peerpigeon").is_dir():
        pytest.skip("needs node and `npm ci --ignore-scripts` in test/interop (scripts/setup.sh test)")
    return node


def module_stats(hub):
    """The module's get_stats() document of a PC hub (/stats -> "module")."""
    _status, _ctype, body = http_get(hub, "/stats")
    return json.loads(body)["module"]




def wait_for_hub_links(hub, count, timeout=15.0):
    """Until the PC hub's module counts `count` announced hubs (links up)."""
    return wait_until(lambda: module_stats(hub)["hubs"] == count, timeout,
                      f"{getattr(hub, 'name', hub.url)} never counted {count} hub link(s)")


class ReferenceHub:
    """reference_hub.mjs: npm peerpigeon 1.1.3 PeerPigeonServer(isHub) on 127.0.0.1."""

    kind = "reference-hub"

    def __init__(self, proc, out_path, err_path, name):
        self.proc, self.out_path, self.err_path = proc, Path(out_path), Path(err_path)
        self.name = name
        started = self.wait_event("started", timeout=20)
        self.port = started["port"]
        self.hub_id = started["hubPeerId"]
        self.url = f"ws://127.0.0.1:{self.port}"

    def events(self, event=None):
        text = self.out_path.read_text(errors="replace") if self.out_path.exists() else ""
        out = []
        for line in text.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if event is None or e.get("event") == event:
                out.append(e)
        return out

    def wait_event(self, event, timeout=15.0, **match):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events(event):
                if all(e.get(k) == v for k, v in match.items()):
                    return e
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"reference hub {self.name}: no {event!r} event {match} within "
                             f"{timeout} s (exit code {self.proc.poll()}); events:\n"
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


def start_reference_hub(node, out, err, bootstrap, name):
    args = [node, str(REFERENCE_HUB)]
    for url in bootstrap:
        args += ["--bootstrap", url]
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(args, cwd=HERE, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
    try:
        return ReferenceHub(proc, out, err, name)
    except AssertionError:
        proc.kill()
        proc.wait(5)
        raise


def run_mesh_across(url_a, url_b, *, network, first="a", initiator=None, gap=1.0, timeout=30):
    """peer_pair.mjs: real client A on url_a, B on url_b, B joining `gap` s after A (or A after
    B with first="b"). initiator "A"/"B" gives that client the larger id, which makes it the one
    the 1.1.3 client lets send the offer. Returns (completed process, events, report text)."""
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
    assert seen("peerConnected", "peerId") == {"A", "B"}, "no WebRTC connection\n" + report
    assert seen("messageReceived", "from") == {"A", "B"}, "no data-channel hello\n" + report
    for e in events:
        if e["event"] == "messageReceived" and e["from"] == other[e["peer"]]:
            assert e["content"] == f"hello from {'B' if e['peer'] == 'A' else 'A'}", report
    assert proc.returncode == 0 and any(e["event"] == "done" for e in events), report

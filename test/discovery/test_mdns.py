"""Discovery on the LAN (mDNS, _pigeonhub._tcp) between real processes: `pigeonhub serve --mdns`
advertises with python-zeroconf, and the real `pigeonhub discover` / `pigeonhub upload` CLIs find
it by name. Everything runs in a network namespace of this test's own (netns.py), whose only
address is its loopback's: no multicast reaches a real network.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for extra in (HERE, ROOT / "test", ROOT / "test" / "conformance"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from hubclient import Peer  # noqa: E402
from hubprocess import LISTENING, HubProcess, _wait_for  # noqa: E402
from netns import Netns  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="network namespaces are Linux's")

TOKEN = "mdns-test-secret"
ADVERTISED = re.compile(r"^I \(\d+\) pigeonhub: mDNS: advertising (ws://\S+) as (pigeonhub-[0-9a-f]{4}) "
                        r"\((pigeonhub-[0-9a-f]{4})\.local, _pigeonhub\._tcp\)\s*$", re.M)
CLI_TIMEOUT = 30   # s for one CLI run (each is bounded by its own mDNS timeout far below this)


def _env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env.pop("PIGEONHUB_TOKEN", None)
    return env


@pytest.fixture(scope="module")
def netns():
    ns = Netns()
    yield ns
    ns.delete()


@pytest.fixture(scope="module")
def hub_wasm(tmp_path_factory):
    env = os.environ.get("HUB_WASM")
    path = Path(env) if env else ROOT / "src" / "pigeonhub" / "data" / "hub.wasm"
    if not path.exists():
        path = tmp_path_factory.mktemp("mdns") / "hub.wasm"
        subprocess.run([sys.executable, "-m", "pigeonhub.cli", "build", "--out", str(path)], cwd=ROOT,
                       env=_env(), check=True, stdout=subprocess.DEVNULL, timeout=120)
    return path


@pytest.fixture(scope="module")
def hub(netns, hub_wasm, tmp_path_factory):
    """`pigeonhub serve --mdns` on the namespace's 127.0.0.1, once it says it is advertising."""
    tmp = tmp_path_factory.mktemp("mdns-hub")
    log_path = tmp / "hub.log"
    cmd = netns.exec(sys.executable, "-m", "pigeonhub.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                     "--module", hub_wasm, "--upload-token", TOKEN, "--module-dir", tmp / "modules",
                     "--mdns")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=_env())
    m = _wait_for(proc, log_path, LISTENING, 60, "pigeonhub serve --mdns")
    hub = HubProcess("pc", proc, log_path, m.group(1), int(m.group(2)))
    adv = _wait_for(proc, log_path, ADVERTISED, 15, "the mDNS advertisement")
    hub.advertised_url, hub.name = adv.group(1), adv.group(2)
    yield hub
    assert hub.stop() == 0, hub.log()
    assert re.search(rf"^I \(\d+\) pigeonhub: mDNS: {hub.name} withdrawn$", hub.log(), re.M), hub.log()


def cli(netns, *args):
    return subprocess.run(netns.exec(sys.executable, "-m", "pigeonhub.cli", *args), cwd=ROOT, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=CLI_TIMEOUT)


def health(netns, hub):
    with netns.entered():
        with urllib.request.urlopen(f"{hub.http}/health", timeout=5) as r:
            return json.loads(r.read())


def test_discover_lists_the_hub_with_its_url_id_and_peers(netns, hub):
    hub_id = re.search(r"^I \(\d+\) pigeonhub: hub id ([0-9a-f]{40})$", hub.log(), re.M).group(1)
    assert hub.name == f"pigeonhub-{hub_id[:4]}"
    assert hub.advertised_url == f"ws://127.0.0.1:{hub.port}/"
    with netns.entered():
        peer = Peer(hub.url)
    try:
        peer.expect("connected")
        deadline = time.monotonic() + 5
        while health(netns, hub)["peers"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Not 1 s: the first query can come within a second of the hub's own announcement, when a
        # responder must not multicast the record again (RFC 6762 §6); the browser asks again at 1 s.
        proc = cli(netns, "discover", "--timeout", "2")
    finally:
        peer.close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["NAME", "URL", "HUB", "ID", "PEERS"], proc.stdout
    assert lines[1].split() == [hub.name, f"ws://127.0.0.1:{hub.port}/", hub_id, "1"], proc.stdout
    assert re.fullmatch(r"1 hub found on the LAN in \d+\.\d s", lines[-1]), proc.stdout
    assert len(lines) == 3, proc.stdout


def test_discover_says_when_no_hub_answers():
    empty = Netns("-empty")
    try:
        proc = cli(empty, "discover", "--timeout", "1")
    finally:
        empty.delete()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("no PigeonHub answered on the LAN within 1 s (mDNS _pigeonhub._tcp).\n"
                                  "  A board advertises itself"), proc.stdout
    assert "`pigeonhub serve --mdns --host 0.0.0.0`" in proc.stdout


def test_upload_by_discovered_name(netns, hub, hub_wasm):
    """`--host pigeonhub-ab12.local` without --port: address and port come from the advertisement."""
    before = health(netns, hub)["uptime"]
    proc = cli(netns, "upload", "--host", f"{hub.name}.local", "--token", TOKEN, "--no-progress", hub_wasm)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{hub.name}.local is 127.0.0.1:{hub.port} (mDNS, hub id {hub.name[-4:]}" in proc.stderr
    assert re.fullmatch(rf"module [0-9a-f]{{12}}… \(\d+ bytes\) is now active on 127\.0\.0\.1:{hub.port}, "
                        rf"\d+ peers? kept \({hub.name}\.local\)\n", proc.stdout), proc.stdout
    assert re.search(r"^I \(\d+\) pigeonhub: module swapped: [0-9a-f]{8} \(\d+ bytes\), 0 peers kept$",
                     hub.log(), re.M), hub.log()
    assert health(netns, hub)["uptime"] >= before   # the same process kept serving


def test_bench_by_discovered_name(netns, hub):
    proc = cli(netns, "bench", "--url", hub.name, "--peers", "2", "--rounds", "1", "--relays", "20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"bench: {hub.name} is ws://127.0.0.1:{hub.port}/ (mDNS)" in proc.stderr, proc.stderr
    assert re.search(r"^  hub with 2 peers relays [\d,]+ offers/s", proc.stdout, re.M), proc.stdout


def test_unknown_name_is_a_clear_error(netns, hub, hub_wasm):
    """A name no hub answers to (with a hub that does answer on the same network)."""
    proc = cli(netns, "upload", "--host", "pigeonhub-zzzz", "--token", TOKEN, hub_wasm)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert proc.stderr.startswith("Error: no hub named pigeonhub-zzzz answered on the LAN (mDNS, 3 s)\n"
                                  "  fix: run `pigeonhub discover`"), proc.stderr
    assert "pigeonhub serve --mdns" in proc.stderr

"""The load generator of `pigeonhub bench` against a real hub: every frame it counts must really
have been relayed, with the fields clients rely on (a hub that answers fast but wrong fails).

    pytest test/bench/test_load.py                       # the PC hub (started by test/conftest.py)
    pytest test/bench/test_load.py --against-reference   # the reference Node server
    pytest test/bench/test_load.py --hub-url ws://IP:PORT

Timing figures are printed, never asserted.
"""

import asyncio
import json
import subprocess
import sys

import pytest

from pigeonhub.bench import load as bench_load, servers as bench_servers


def test_frames_have_the_captured_shapes_and_sizes():
    offer = bench_load.FrameFactory("offer", bench_load.OFFER_FRAME_BYTES)
    ice = bench_load.FrameFactory("ice", bench_load.ICE_FRAME_BYTES)
    target = "ab" * 20
    for factory, size, kind in ((offer, 4500, "offer"), (ice, 360, "ice-candidate")):
        frame = factory.frame(1234567, target)
        msg = json.loads(frame)
        # docs/PROTOCOL.md §2/§5: what the 1.1.3 client sends
        assert list(msg) == ["type", "data", "maxPeers", "networkName", "targetPeerId"]
        assert msg["type"] == kind and msg["targetPeerId"] == target and msg["maxPeers"] == 3
        assert abs(len(frame) - size) <= 0.05 * size, (kind, len(frame))
        assert factory.seq_of(msg["data"]) == 1234567
    sdp = json.loads(offer.frame(1, target))["data"]
    assert sdp["type"] == "offer" and sdp["sdp"].startswith("v=0\r\no=- 1 ")
    assert "m=audio" in sdp["sdp"] and "m=video" in sdp["sdp"] and "m=application" in sdp["sdp"]


def test_load_run_relays_every_frame(hub, capsys):
    result = asyncio.run(bench_load.run_load(hub.url, peers=6, relays=120, window=8,
                                             timeout=20))
    assert result["discovery_frames"] == 30
    for kind in ("offer", "ice"):
        assert result[kind]["frames"] == 120
        assert result[kind]["throughput"] > 0 and result[kind]["p99_ms"] >= result[kind]["p50_ms"]
    with capsys.disabled():
        print(f"\n  {hub.kind} hub, 6 peers: discovery {result['discovery_ms']:.1f} ms, offers "
              f"{result['offer']['throughput']:.0f}/s, candidates "
              f"{result['ice']['throughput']:.0f}/s (not asserted)")


def test_unreachable_hub_is_a_clear_error():
    port = bench_servers.free_port()  # nothing listens there
    with pytest.raises(bench_load.BenchError, match=f"127.0.0.1:{port}"):
        asyncio.run(bench_load.run_load(f"ws://127.0.0.1:{port}", peers=2, relays=1, timeout=5))


@pytest.mark.reference
@pytest.mark.slow
def test_bench_command_compares_pc_hub_with_reference(tmp_path):
    if bench_servers.find_reference_server() is None:
        pytest.fail("test/interop/node_modules/peerpigeon missing: run scripts/setup.sh test")
    proc = subprocess.run([sys.executable, "-m", "pigeonhub.cli", "bench", "--peers", "4",
                           "--rounds", "1", "--relays", "100", "--timeout", "20",
                           "--report", str(tmp_path)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "| figure | PC hub (median) | reference (median) | ours/reference | better |" in out
    assert "| 4.5 KB offers relayed |" in out and "failed run" not in out
    assert "Target: 4.5 KB offer throughput ≥ reference at 4 peers" in out
    report = (tmp_path / "report.md").read_text()
    assert "## Load (PC hub vs. reference server)" in report

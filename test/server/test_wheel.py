"""`pip wheel .` gives a package that serves without the repository and without a compiler.

The wheel is installed into a fresh virtual environment (its dependencies from PyPI), the hub is
started from there with only that environment's bin/ on PATH and from a directory outside the
checkout: it must load the hub.wasm the wheel carries (no "building it" line, which would need
clang and the wasm/ sources of a checkout) and answer GET /health, the status page and a WebSocket peer.
The wheel holds the package (hub runtime, module tooling, bench, upload client), hub.wasm and the
wasm/ sources; not the repository's build tooling (scripts/pio_support.py, wasm3_source.py) nor the
PC twin's pty console (test support).
"""

import json
import re
import shutil
import subprocess
import sys
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest
from websockets.sync.client import connect

from hubprocess import LISTENING, _wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def run(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}"
    return done


def clean_copy(dest):
    """The tracked files, as a fresh clone has them, plus WASM3's fetched sources (so the build
    needs no download): no build/ left over from an earlier build can slip into the wheel."""
    files = run(["git", "ls-files", "-z"], cwd=ROOT).stdout.split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    wasm3 = ROOT / "lib" / "wasm3" / "src"
    if wasm3.is_dir():
        shutil.copytree(wasm3, dest / "lib" / "wasm3" / "src")
    return dest


def test_wheel_serves_from_a_fresh_venv_without_a_checkout_or_a_compiler(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout: the wheel is built from its tracked files")
    source = clean_copy(tmp_path / "source")
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(wheels)])
    wheel = next(wheels.glob("pigeonhub_wasm-*.whl"))
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        sources = {n: whl.read(n).decode() for n in names if n.endswith(".py")}
    for needed in ("pigeonhub/cli.py", "pigeonhub/hub/server.py", "pigeonhub/module/build.py",
                   "pigeonhub/bench/bench.py", "pigeonhub/upload.py", "pigeonhub/data/hub.wasm",
                   "pigeonhub/data/wasm/pigeonhub_abi.h", "pigeonhub/data/wasm/hub.c",
                   "pigeonhub/data/status.html"):
        assert needed in names, f"{needed} not in the wheel: {sorted(names)}"
    assert any(re.fullmatch(r"pigeonhub/_bridge\..*(so|pyd)", n) for n in names), sorted(names)
    assert not [n for n in names if re.search(r"pio_support|wasm3_source|\.c$", n)
                and not n.startswith("pigeonhub/data/wasm/")], sorted(names)
    assert not [n for n, text in sources.items() if re.search(r"^\s*import tty\b", text, re.M)]
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    run([bin_dir / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel])

    away = tmp_path / "elsewhere"   # not the checkout: nothing of the repository is importable
    away.mkdir()
    log_path = tmp_path / "hub.log"
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([bin_dir / "pigeonhub", "serve", "--host", "127.0.0.1", "--port", "0"],
                                cwd=away, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        port = int(_wait_for(proc, log_path, LISTENING, 60, "the installed pigeonhub serve").group(2))
        text = log_path.read_text()
        assert "building it" not in text, text
        assert re.search(r"module hub\.wasm loaded: \d+ bytes, sha256 [0-9a-f]{64}", text), text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert json.loads(r.read())["status"] == "healthy"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
            module_path = Path(json.loads(r.read())["module"]["path"])
        assert env_dir in module_path.parents, f"served {module_path}, not the wheel's hub.wasm"
        page = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Accept": "text/html"})
        with urllib.request.urlopen(page, timeout=10) as r:   # the status page, from package data
            assert r.headers["Content-Type"].startswith("text/html") and b"/stats" in r.read()
        with connect(f"ws://127.0.0.1:{port}/?peerId={'a' * 40}", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "connected"
    finally:
        proc.terminate()
        proc.wait(10)

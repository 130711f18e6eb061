"""pigeonhub/wasm3_source.py: WASM3 0.5.0 sources, fetched once, hash-checked, extracted exactly."""
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "pigeonhub" / "wasm3_source.py"


def load_by_path():
    """As setup.py and the PlatformIO pre-build do: by path, without the package installed."""
    spec = importlib.util.spec_from_file_location("wasm3_source_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ws = load_by_path()


@pytest.fixture(scope="module")
def real_archive():
    """The genuine pywasm3 0.5.0 sdist (from the user's cache, downloaded with pip if absent)."""
    return ws.fetch_archive()


@pytest.fixture
def cache(tmp_path, real_archive):
    d = tmp_path / "cache"
    d.mkdir()
    shutil.copy(real_archive, d / ws.ARCHIVE_NAME)
    return d


def test_extracts_exactly_the_27_core_files_with_a_stamp(tmp_path, cache):
    dest = tmp_path / "lib" / "wasm3" / "src"
    assert ws.ensure_wasm3_sources(dest, cache) == dest
    names = sorted(p.name for p in dest.iterdir())
    assert names == sorted(list(ws.WASM3_FILES) + [ws.STAMP_NAME])
    assert len(ws.WASM3_FILES) == 27
    assert ws.ARCHIVE_SHA256 in (dest / ws.STAMP_NAME).read_text()
    assert b"#define M3_VERSION       \"0.5.0\"" in (dest / "wasm3.h").read_bytes()
    assert oct(dest.stat().st_mode & 0o777) == oct(0o755 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_second_call_is_fast_and_does_not_fetch(tmp_path, cache, monkeypatch):
    dest = tmp_path / "src"
    ws.ensure_wasm3_sources(dest, cache)
    monkeypatch.setattr(ws, "fetch_archive", lambda *a: pytest.fail("fetched although up to date"))
    started = time.perf_counter()
    ws.ensure_wasm3_sources(dest, cache)
    assert time.perf_counter() - started < 0.1


def test_stale_or_damaged_dest_is_replaced(tmp_path, cache):
    dest = tmp_path / "src"
    ws.ensure_wasm3_sources(dest, cache)
    (dest / "m3_env.c").unlink()
    (dest / "stray.c").write_text("int stray;")
    ws.ensure_wasm3_sources(dest, cache)
    assert (dest / "m3_env.c").is_file() and not (dest / "stray.c").exists()


def test_corrupted_archive_is_refused_and_dest_untouched(tmp_path, cache):
    archive = cache / ws.ARCHIVE_NAME
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    dest = tmp_path / "src"
    dest.mkdir()
    (dest / "keep.txt").write_text("previous contents")
    with pytest.raises(ws.Wasm3SourceError) as info:
        ws.ensure_wasm3_sources(dest, cache)
    message = str(info.value)
    assert f"refusing {archive}: sha256 is {hashlib.sha256(data).hexdigest()}" in message
    assert f"expected {ws.ARCHIVE_SHA256}" in message
    assert "delete it and run again" in message
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".wasm3-src-")] == []


def test_pip_failure_names_the_fix(tmp_path, monkeypatch):
    # An unreachable index and no local wheel folders: pip download must fail.
    for var in list(os.environ):
        if var.startswith("PIP_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    dest = tmp_path / "src"
    with pytest.raises(ws.Wasm3SourceError) as info:
        ws.ensure_wasm3_sources(dest, tmp_path / "empty-cache")
    message = str(info.value)
    assert message.startswith("cannot obtain the WASM3 0.5.0 sources: pip download failed")
    assert "Fix: make PyPI reachable" in message and ws.ARCHIVE_NAME in message
    assert not dest.exists()


def test_runs_as_a_script(tmp_path, cache):
    dest = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dest", str(dest), "--cache", str(cache)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"I (wasm3_source) WASM3 0.5.0 sources ready in {dest}"
    (cache / ws.ARCHIVE_NAME).write_bytes(b"not an archive")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dest", str(tmp_path / "other"), "--cache", str(cache)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("E (wasm3_source) refusing ")


def test_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PIGEONHUB_CACHE", str(tmp_path / "c"))
    assert ws.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PIGEONHUB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ws.cache_dir() == tmp_path / "xdg" / "pigeonhub"

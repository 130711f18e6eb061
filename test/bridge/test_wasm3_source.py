"""scripts/wasm3_source.py: WASM3 0.5.0 sources, fetched once, hash-checked, extracted exactly,
patched with lib/wasm3/patches."""
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "wasm3_source.py"


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
    applied = len(ws.patch_files())
    assert proc.stdout.strip() == (f"I (wasm3_source) WASM3 0.5.0 sources ready in {dest} "
                                   f"({applied} patches applied)")
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


# --- the patch step -------------------------------------------------------------------------------

VERSION_LINE = '#define M3_VERSION       "0.5.0"'


def version_patch(old=VERSION_LINE, new='#define M3_VERSION       "0.5.0-ph"', line=14):
    """A one-hunk patch of wasm3.h's version line (line 14 of the release), with a header."""
    return (f"Test patch: marks the version.\n\n--- a/wasm3.h\n+++ b/wasm3.h\n"
            f"@@ -{line - 1},3 +{line - 1},3 @@\n"
            f" #define M3_VERSION_REV   0\n-{old}\n+{new}\n \n")


@pytest.fixture
def patches(tmp_path):
    d = tmp_path / "patches"
    d.mkdir()
    return d


def test_the_projects_patches_apply_and_are_recorded(tmp_path, cache):
    dest = tmp_path / "src"
    ws.ensure_wasm3_sources(dest, cache)
    patch_list = ws.patch_files()
    assert [p.name for p in patch_list] == sorted(p.name for p in ws.DEFAULT_PATCHES.glob("*.patch"))
    assert patch_list, "lib/wasm3/patches holds the project's WASM3 fixes"
    stamp = (dest / ws.STAMP_NAME).read_text()
    for p in patch_list:
        assert f"patch {p.name} sha256 {hashlib.sha256(p.read_bytes()).hexdigest()}" in stamp
    assert "PigeonHub patch" in (dest / "m3_compile.c").read_text()


def test_each_project_patch_says_what_it_fixes_and_names_an_existing_input():
    for p in ws.patch_files():
        header = p.read_text().split("\n--- a/")[0]
        if header.startswith("Addition:", header.index("\n\n") + 2):
            # not a fix: what it adds, why, and the test that runs it
            for word in ("Why:", "Change:", "Tested by:", "Upstream:"):
                assert word in header, f"{p.name}: no {word!r} in its header"
            tests = re.findall(r"Tested by: (\S+\.py)", header)
            assert tests and all((ROOT / t).is_file() for t in tests), f"{p.name}: {tests}"
            continue
        for word in ("Bug:", "Fix:", "Shown by:", "Upstream:"):
            assert word in header, f"{p.name}: no {word!r} in its header"
        inputs = re.findall(r"fuzz/corpus/check_module/([\w-]+)", header)
        assert inputs, f"{p.name}: names no regression input"
        for name in inputs:
            assert (ROOT / "fuzz" / "corpus" / "check_module" / name).is_file(), name


def test_no_patches_gives_the_release_byte_for_byte(tmp_path, cache):
    dest = tmp_path / "src"
    ws.ensure_wasm3_sources(dest, cache, patches=None)
    with tarfile.open(cache / ws.ARCHIVE_NAME) as tar:
        for name in ws.WASM3_FILES:
            assert (dest / name).read_bytes() == tar.extractfile(ws.ARCHIVE_PREFIX + name).read()
    assert "patch" not in (dest / ws.STAMP_NAME).read_text()


def test_patches_apply_in_name_order(tmp_path, cache, patches):
    (patches / "0001-first.patch").write_text(version_patch())
    # made against the sources with 0001 applied
    (patches / "0002-second.patch").write_text(
        version_patch(old='#define M3_VERSION       "0.5.0-ph"', new='#define M3_VERSION       "0.5.0-ph2"'))
    (patches / "notes.txt").write_text("not a patch")
    dest = tmp_path / "src"
    ws.ensure_wasm3_sources(dest, cache, patches)
    assert '#define M3_VERSION       "0.5.0-ph2"\n' in (dest / "wasm3.h").read_text()
    assert sorted(p.name for p in dest.iterdir()) == sorted(list(ws.WASM3_FILES) + [ws.STAMP_NAME])


def test_a_patch_that_no_longer_applies_names_itself_and_leaves_dest_untouched(tmp_path, cache, patches):
    dest = tmp_path / "src"
    ws.ensure_wasm3_sources(dest, cache, patches)          # a complete, current dest
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    bad = patches / "0001-stale.patch"
    bad.write_text(version_patch(old='#define M3_VERSION       "0.4.9"'))
    with pytest.raises(ws.Wasm3SourceError) as info:
        ws.ensure_wasm3_sources(dest, cache, patches)
    message = str(info.value)
    assert f"WASM3 patch {bad} does not apply: hunk 1 (@@ -13,3 +13,3 @@) of wasm3.h" in message
    assert "expects line 14 to be \'#define M3_VERSION       \"0.4.9\"\'" in message
    assert f"has \'{VERSION_LINE}\' there" in message
    assert "Fix: remake the patch" in message and "--no-patches" in message
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".wasm3-src-")] == []
    # the same from the command line (as CMake and the Makefiles run it): exit 1, the reason
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dest", str(dest), "--cache", str(cache),
                           "--patches", str(patches)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"E (wasm3_source) WASM3 patch {bad} does not apply")
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before


def test_a_hunk_at_the_wrong_line_is_refused(tmp_path, cache, patches):
    # right text, wrong place: no offset search, the hunk applies where it says or not at all
    (patches / "0001-moved.patch").write_text(version_patch(line=20))
    with pytest.raises(ws.Wasm3SourceError, match="does not apply: hunk 1"):
        ws.ensure_wasm3_sources(tmp_path / "src", cache, patches)
    assert not (tmp_path / "src").exists()


@pytest.mark.parametrize("text, reason", [
    ("just words\n", "holds no unified diff"),
    ("--- a/setup.py\n+++ b/setup.py\n@@ -1 +1 @@\n-x\n+y\n", "not one of WASM3's 27 files"),
    ("--- a/wasm3.h\n+++ b/wasm3.h\n@@ -13,3 +13,3 @@\n #define M3_VERSION_REV   0\n+only\n",
     "ends early"),
    ("--- a/wasm3.h\n+++ b/wasm3.h\n@@ -13,1 +13,1 @@\n x\n y\n", "line counts are wrong"),
    ("--- a/wasm3.h\n+++ b/wasm3.h\n@@ -13,1 +13,1 @@\n x\n@@ nonsense\n", "malformed hunk header"),
])
def test_malformed_patches_are_refused_before_any_download(tmp_path, patches, monkeypatch, text, reason):
    (patches / "0001-bad.patch").write_text(text)
    monkeypatch.setattr(ws, "fetch_archive", lambda *a: pytest.fail("fetched for a malformed patch"))
    with pytest.raises(ws.Wasm3SourceError, match=reason):
        ws.ensure_wasm3_sources(tmp_path / "src", tmp_path / "cache", patches)


def test_a_missing_patch_folder_is_an_error_not_an_unpatched_build(tmp_path, cache):
    with pytest.raises(ws.Wasm3SourceError, match="patch folder .* does not exist"):
        ws.ensure_wasm3_sources(tmp_path / "src", cache, tmp_path / "no-such-folder")
    assert not (tmp_path / "src").exists()


def test_the_stamp_follows_the_patches(tmp_path, cache, patches):
    dest = tmp_path / "src"
    patch = patches / "0001-version.patch"
    patch.write_text(version_patch())
    ws.ensure_wasm3_sources(dest, cache, patches)
    stamp = (dest / ws.STAMP_NAME).read_text()
    assert ws.is_current(dest, patches)
    assert not ws.is_current(dest, None) and not ws.is_current(dest)

    patch.write_text(version_patch(new='#define M3_VERSION       "0.5.0-changed"'))
    assert not ws.is_current(dest, patches)                 # a changed patch re-extracts
    ws.ensure_wasm3_sources(dest, cache, patches)
    assert (dest / ws.STAMP_NAME).read_text() != stamp
    assert '"0.5.0-changed"' in (dest / "wasm3.h").read_text()
    assert '"0.5.0-ph"' not in (dest / "wasm3.h").read_text()

    patch.unlink()                                          # so does a removed one
    assert not ws.is_current(dest, patches)
    ws.ensure_wasm3_sources(dest, cache, patches)
    assert VERSION_LINE in (dest / "wasm3.h").read_text()

    (patches / "0002-new.patch").write_text(version_patch())   # and an added one
    assert not ws.is_current(dest, patches)
    ws.ensure_wasm3_sources(dest, cache, patches)
    assert '"0.5.0-ph"' in (dest / "wasm3.h").read_text()
    assert ws.is_current(dest, patches)


def test_crlf_files_and_patches(tmp_path, cache, patches):
    # wasm3_defs.h has CRLF line endings; a checkout may give the patch CRLF endings too
    text = ("Test patch.\r\n--- a/wasm3_defs.h\r\n+++ b/wasm3_defs.h\r\n@@ -1,3 +1,4 @@\r\n"
            " //\r\n+// patched\r\n //  wasm3_defs.h\r\n //\r\n")
    (patches / "0001-crlf.patch").write_bytes(text.encode())
    dest = tmp_path / "src"
    ws.ensure_wasm3_sources(dest, cache, patches)
    assert (dest / "wasm3_defs.h").read_bytes().startswith(b"//\r\n// patched\r\n//  wasm3_defs.h\r\n//\r\n")


def test_a_patch_made_by_diff_applies_as_patch_would(tmp_path, cache, patches):
    # `diff -u` output: timestamps after a tab, folder names as the first path component, an
    # insertion-only hunk at the top, a hunk adding a line at the end of the file
    pristine = tmp_path / "pristine"
    ws.ensure_wasm3_sources(pristine, cache, None)
    header_lines = (pristine / "wasm3.h").read_text().splitlines()
    n = len(header_lines)
    assert header_lines[n - 2] == ""
    text = ("--- orig/wasm3.h\t2026-01-01 00:00:00.000000000 +0000\n"
            "+++ new/wasm3.h\t2026-01-01 00:00:01.000000000 +0000\n"
            "@@ -0,0 +1 @@\n+// first\n"
            f"@@ -{n - 2},3 +{n - 1},4 @@\n {header_lines[n - 3]}\n \n {header_lines[n - 1]}\n+// last\n")
    text = text.replace("\n \n", "\n\n")     # an editor stripped the space of the empty context line
    (patches / "0001-diff.patch").write_text(text)
    dest = tmp_path / "src"
    ws.ensure_wasm3_sources(dest, cache, patches)
    out = (dest / "wasm3.h").read_text().splitlines()
    assert out[0] == "// first" and out[1:-1] == header_lines and out[-1] == "// last"

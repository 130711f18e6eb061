"""Builds pigeonhub._bridge: the bridge core (lib/pigeonhub_bridge) + WASM3 as a CPython extension.

Project metadata lives in pyproject.toml (the package is src/pigeonhub); this file only adds the C
extension and, for wheels, the module (hub.wasm and wasm/) as package data. WASM3's sources are
third-party and not in the repository: they are fetched (pip download of the pywasm3 0.5.0 sdist),
hash-checked, extracted and patched (lib/wasm3/patches) into lib/wasm3/src by
scripts/wasm3_source.py, loaded here by path because the package is not importable yet while it
is being built. A changed patch re-extracts every file, so build_ext sees newer sources and
recompiles them.
"""
import importlib.util
import os
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
os.chdir(ROOT)   # setuptools wants source paths relative to the project


def _load_wasm3_source():
    spec = importlib.util.spec_from_file_location("_pigeonhub_wasm3_source",
                                                  ROOT / "scripts" / "wasm3_source.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wasm3_source = _load_wasm3_source()
try:
    WASM3_DIR = wasm3_source.ensure_wasm3_sources(ROOT / "lib" / "wasm3" / "src")
except wasm3_source.Wasm3SourceError as exc:
    sys.exit(f"E (setup.py) {exc}")

BRIDGE_DIR = ROOT / "lib" / "pigeonhub_bridge" / "src"


def _rel(paths):
    return sorted(str(p.relative_to(ROOT)) for p in paths)


class BuildExt(build_ext):
    """Compiler flags per compiler family (gcc/clang here, MSVC on Windows)."""

    def build_extensions(self):
        unix = self.compiler.compiler_type == "unix"
        for ext in self.extensions:
            if unix:
                # -fwrapv: WASM3 implements WebAssembly's wrapping i32/i64 arithmetic with C signed
                # arithmetic; -fwrapv makes that well defined. The -Wno-* silence WASM3's own
                # known warnings (its sources are not ours to edit).
                ext.extra_compile_args += ["-std=c11", "-O2", "-fwrapv", "-Wno-strict-aliasing",
                                           "-Wno-unused-variable", "-Wno-unused-but-set-variable",
                                           "-Wno-unused-parameter", "-Wno-unused-function"]
                ext.libraries += ["m"]
        super().build_extensions()


class BuildPy(build_py):
    """A wheel carries a built hub.wasm and the module's sources (pigeonhub/data), so the hub it
    installs serves, and `pigeonhub build` works, with no checkout. An editable install runs from
    the checkout, which builds hub.wasm on first use."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        data = Path(self.build_lib) / "pigeonhub" / "data"
        shutil.copytree(ROOT / "wasm", data / "wasm", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.wasm", "*.o"))
        sys.path.insert(0, str(ROOT / "src"))
        from pigeonhub.module import build
        try:
            build.build_module(data / "hub.wasm")
        except (build.ToolchainError, build.BudgetError) as exc:
            sys.exit(f"E (setup.py) the wheel needs a built hub.wasm: {exc}")


setup(
    ext_modules=[
        Extension(
            "pigeonhub._bridge",
            sources=["src/pigeonhub/_bridge.c", "src/pigeonhub/_bridge_store.c",
                     "src/pigeonhub/_bridge_ws.c"] + _rel(BRIDGE_DIR.glob("*.c")) + _rel(Path(WASM3_DIR).glob("*.c")),
            include_dirs=_rel([Path(WASM3_DIR), BRIDGE_DIR, ROOT / "wasm"]),
            depends=_rel(BRIDGE_DIR.glob("*.h")) + ["wasm/pigeonhub_abi.h", "src/pigeonhub/_bridge_store.h",
                                                     "src/pigeonhub/_bridge_ws.h"],
        )
    ],
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
)

"""`pigeonhub build`: compile wasm/*.c into hub.wasm, inspect it and enforce its budgets.

The PlatformIO pre-build step and `pigeonhub serve` call build_module(); the CLI prints the same
figures for a human. Everything the checks compare against comes from wasm/pigeonhub_abi.h (parsed
here), so the ABI has one source of truth.

    find_toolchain()        clang-14 + wasm-ld-14, clang + wasm-ld, or PyPI ziglang (-mcpu=mvp)
    build_module(out)       compile, link a second time for the memory layout, check, then write out
    inspect_module(wasm)    pure-Python section parser: imports, exports, memory, globals, data
    check_budgets(info)     raises BudgetError naming each figure that is over budget
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pigeonhub import DATA_DIR, SOURCE_ROOT

# The module's sources: the checkout's wasm/, or the copy an installed wheel carries (setup.py)
WASM_DIR = (SOURCE_ROOT / "wasm" if (SOURCE_ROOT / "wasm" / "pigeonhub_abi.h").is_file()
            else DATA_DIR / "wasm")
ABI_HEADER = WASM_DIR / "pigeonhub_abi.h"
SOURCES = ("hub.c", "json.c", "frame.c", "peers.c", "sha1.c", "libc.c", "buffers.c")   # buffers last: see buffers.c
DEFAULT_OUT = DATA_DIR / "hub.wasm"

PAGE = 65536
MODULE_BUDGET_BYTES = 16 * 1024     # flash/RAM budget of the module binary itself
MVP_BUDGET_BYTES = 17 * 1024        # `--mvp` fallback (no bulk memory): every memcpy/memset is a
                                    # loop there, ~0.35 KB more; not what ships by default
TEST_HOOKS_EXTRA_BYTES = 64         # `--test-hooks` (the __test_trap check) never ships: its build
                                    # may exceed the budget by this much
BRIDGE_HEADER = SOURCE_ROOT / "lib" / "pigeonhub_bridge" / "src" / "ph_bridge.h"
STACK_SIZE = 3072                   # -z stack-size; hub.c gets the same value as PH_STACK_SIZE.
                                    # Deepest use measured: 704 B (get_stats stackHighWater after
                                    # announce + relays + init's SHA-1); json.c is iterative, so
                                    # nesting depth does not deepen the C stack
INITIAL_PAGES = 1                   # everything (stack, data, bss) inside one 64 KiB page
MAX_PAGES = 2                       # original design: --max-memory=131072
INSPECT_PAGES = 16                  # inspection link only: 1 MiB, so any layout links
MEMORY_EXPORT = "memory"            # the linker's memory export; hosts read frames through it

WASM_OPT_FLAGS = ["-Oz"]            # binaryen's size optimiser, after the link (shrinks ~13 %)
MISSING_WASM_OPT = (
    "wasm-opt (binaryen) not found, and the module only fits its budget once optimised. Fix: "
    "install binaryen (Debian/Ubuntu: sudo apt-get install binaryen; or pip install binaryen)")

MISSING_TOOLCHAIN = (
    "no C-to-WebAssembly toolchain found. Fix: install clang-14 and lld-14 "
    "(Debian/Ubuntu: sudo apt-get install clang-14 lld-14; elsewhere any clang with wasm-ld), "
    "or `pip install ziglang` (portable, about 400 MB)")


class ToolchainError(RuntimeError):
    """No usable compiler, or it failed: the message says what to install or what went wrong."""


class BudgetError(RuntimeError):
    """The module is over a budget or does not match the ABI. `problems` lists each figure."""

    def __init__(self, problems, info=None, layout=None):
        self.problems = list(problems)
        self.info = info
        self.layout = layout
        super().__init__("hub.wasm over budget / off the ABI:\n  " + "\n  ".join(self.problems))


class WasmFormatError(ValueError):
    """The bytes are not a WebAssembly module this parser understands."""


# --- the ABI header ---------------------------------------------------------------------------

@dataclass
class AbiEntry:
    name: str
    signature: str      # WASM3 notation, e.g. "i(i*i)"
    origin: str         # "original" or "ext"


@dataclass
class AbiTable:
    version: int
    imports: dict       # name -> AbiEntry
    exports: dict       # name -> AbiEntry


_X_ENTRY = re.compile(r'X\(\s*(\w+)\s*,\s*"([^"]*)"\s*,\s*"([^"]*)"\s*\)')


def _macro_body(text: str, macro: str) -> str:
    match = re.search(r"#define\s+" + re.escape(macro) + r"\(X\)((?:[^\n]*\\\n)*[^\n]*)", text)
    if not match:
        raise ValueError(f"pigeonhub_abi.h: no '#define {macro}(X)' table")
    return match.group(1)


def parse_abi_header(text: str | None = None) -> AbiTable:
    """Read PH_ABI_VERSION and the PH_ABI_IMPORTS/PH_ABI_EXPORTS X-macro tables."""
    if text is None:
        text = ABI_HEADER.read_text()
    version = re.search(r"#define\s+PH_ABI_VERSION\s+(\d+)", text)
    if not version:
        raise ValueError("pigeonhub_abi.h: no PH_ABI_VERSION")
    tables = {}
    for macro in ("PH_ABI_IMPORTS", "PH_ABI_EXPORTS"):
        body = re.sub(r"/\*.*?\*/", "", _macro_body(text, macro), flags=re.S)
        entries = {}
        for name, sig, origin in _X_ENTRY.findall(body):
            if name in entries:
                raise ValueError(f"pigeonhub_abi.h: {name} listed twice in {macro}")
            entries[name] = AbiEntry(name, sig, origin)
        if not entries:
            raise ValueError(f"pigeonhub_abi.h: {macro} is empty")
        tables[macro] = entries
    return AbiTable(int(version.group(1)), tables["PH_ABI_IMPORTS"], tables["PH_ABI_EXPORTS"])


def wasm3_to_wasm_signature(sig: str) -> str:
    """WASM3's "i(i*i)" as the binary can show it: pointers are plain i32 ("i(iii)")."""
    return sig.replace("*", "i")


# --- the module parser ------------------------------------------------------------------------

_VALTYPES = {0x7F: "i", 0x7E: "I", 0x7D: "f", 0x7C: "F"}


@dataclass
class ModuleInfo:
    size: int
    sha256: str
    imports: list = field(default_factory=list)      # (module, name, kind, signature or None)
    exports: list = field(default_factory=list)      # (name, kind, signature or None)
    memory: tuple | None = None                      # (initial pages, max pages or None)
    memory_imported: bool = False
    globals: list = field(default_factory=list)      # (valtype, mutable, init value or None)
    data_segments: list = field(default_factory=list)  # (offset or None, size)
    custom_sections: list = field(default_factory=list)
    export_index: dict = field(default_factory=dict)  # name -> index in its index space

    def export_names(self, kind="func"):
        return {name for name, k, _ in self.exports if k == kind}


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise WasmFormatError(f"truncated module at byte {self.pos}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def _leb(self, max_shift: int):
        """(value bits, bit count, last byte) of one LEB128 number."""
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result, shift, b
            if shift > max_shift:
                raise WasmFormatError("LEB128 value too long")

    def uleb(self) -> int:
        return self._leb(63)[0]

    def sleb(self) -> int:
        result, shift, last = self._leb(70)
        return result - (1 << shift) if last & 0x40 else result

    def bytes(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise WasmFormatError(f"truncated module at byte {self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def name(self) -> str:
        return self.bytes(self.uleb()).decode("utf-8", "replace")

    def limits(self):
        flags = self.byte()
        initial = self.uleb()
        return initial, (self.uleb() if flags & 1 else None)

    def const_expr(self):
        """An init expression; its value if it is a plain constant, else None."""
        value = None
        while True:
            op = self.byte()
            if op == 0x0B:
                return value
            if op == 0x41 or op == 0x42:
                value = self.sleb()
            elif op == 0x23:
                self.uleb()
                value = None
            elif op == 0x43:
                self.bytes(4)
            elif op == 0x44:
                self.bytes(8)
            else:
                raise WasmFormatError(f"unsupported opcode 0x{op:02x} in a constant expression")


def _sig_string(functype) -> str:
    params, results = functype
    return ("".join(results) or "v") + "(" + "".join(params) + ")"


def inspect_module(wasm) -> ModuleInfo:
    """Parse a module (bytes, or a path to one) without running it."""
    if isinstance(wasm, (str, os.PathLike)):
        wasm = Path(wasm).read_bytes()
    wasm = bytes(wasm)
    if wasm[:8] != b"\0asm\x01\0\0\0":
        raise WasmFormatError("not a WebAssembly 1.0 module (bad magic/version)")
    info = ModuleInfo(size=len(wasm), sha256=hashlib.sha256(wasm).hexdigest())
    types, func_types = [], []     # func_types: type index of every function (imports first)
    r = _Reader(wasm, 8)
    while r.pos < len(wasm):
        sid = r.byte()
        size = r.uleb()
        s = _Reader(wasm, r.pos, r.pos + size)
        r.pos += size
        if r.pos > len(wasm):
            raise WasmFormatError(f"section {sid} runs past the end of the module")
        if sid == 0:
            info.custom_sections.append(s.name())
        elif sid == 1:
            for _ in range(s.uleb()):
                if s.byte() != 0x60:
                    raise WasmFormatError("unexpected type form")
                params = [_VALTYPES.get(s.byte(), "?") for _ in range(s.uleb())]
                results = [_VALTYPES.get(s.byte(), "?") for _ in range(s.uleb())]
                types.append((params, results))
        elif sid == 2:
            for _ in range(s.uleb()):
                module, name, kind = s.name(), s.name(), s.byte()
                if kind == 0:
                    idx = s.uleb()
                    func_types.append(idx)
                    info.imports.append((module, name, "func", _sig_string(types[idx])))
                elif kind == 1:
                    s.byte()
                    s.limits()
                    info.imports.append((module, name, "table", None))
                elif kind == 2:
                    info.memory = s.limits()
                    info.memory_imported = True
                    info.imports.append((module, name, "memory", None))
                elif kind == 3:
                    s.byte()
                    s.byte()
                    info.imports.append((module, name, "global", None))
                else:
                    raise WasmFormatError(f"unknown import kind {kind}")
        elif sid == 3:
            func_types.extend(s.uleb() for _ in range(s.uleb()))
        elif sid == 5:
            count = s.uleb()
            if count:
                info.memory = s.limits()
        elif sid == 6:
            for _ in range(s.uleb()):
                valtype = _VALTYPES.get(s.byte(), "?")
                mutable = bool(s.byte())
                info.globals.append((valtype, mutable, s.const_expr()))
        elif sid == 7:
            kinds = {0: "func", 1: "table", 2: "memory", 3: "global"}
            for _ in range(s.uleb()):
                name, kind, idx = s.name(), s.byte(), s.uleb()
                sig = None
                if kind == 0:
                    if idx >= len(func_types):
                        raise WasmFormatError(f"export {name!r} names a missing function")
                    sig = _sig_string(types[func_types[idx]])
                info.exports.append((name, kinds.get(kind, str(kind)), sig))
                info.export_index[name] = idx
        elif sid == 11:
            for _ in range(s.uleb()):
                flags = s.uleb()
                offset = None
                if flags == 0:
                    offset = s.const_expr()
                elif flags == 2:
                    s.uleb()
                    offset = s.const_expr()
                info.data_segments.append((offset, len(s.bytes(s.uleb()))))
    return info


# --- layout -----------------------------------------------------------------------------------

@dataclass
class MemoryLayout:
    """Where things sit in linear memory (--stack-first: the stack grows down from stack_top to 0)."""
    stack_top: int
    data_start: int
    data_init_end: int      # end of the initialised data segments (.rodata/.data)
    data_end: int           # __data_end: end of .bss
    heap_base: int          # __heap_base: first byte nobody uses
    initial_bytes: int

    @property
    def stack_bytes(self):
        return self.stack_top

    @property
    def data_bytes(self):
        return self.data_init_end - self.data_start

    @property
    def bss_bytes(self):
        return self.data_end - self.data_init_end

    @property
    def free_bytes(self):
        return self.initial_bytes - self.heap_base

    def rows(self):
        return [("stack", 0, self.stack_top),
                ("data (initialised)", self.data_start, self.data_init_end),
                ("bss (zeroed)", self.data_init_end, self.data_end),
                ("free", self.heap_base, self.initial_bytes)]


def layout_from_inspection(info: ModuleInfo, inspect: ModuleInfo) -> MemoryLayout:
    """`inspect` is the same link, unstripped, exporting __data_end/__heap_base (globals)."""
    try:
        data_end = inspect.globals[inspect.export_index["__data_end"]][2]
        heap_base = inspect.globals[inspect.export_index["__heap_base"]][2]
    except (KeyError, IndexError):
        raise WasmFormatError("inspection link lacks __data_end/__heap_base exports") from None
    stack_top = next((init for valtype, mutable, init in info.globals if mutable and valtype == "i"), 0)
    segments = [(off, size) for off, size in info.data_segments if off is not None]
    data_start = min((off for off, _ in segments), default=data_end)
    data_init_end = max((off + size for off, size in segments), default=data_start)
    initial = (info.memory[0] if info.memory else 0) * PAGE
    return MemoryLayout(stack_top, data_start, data_init_end, data_end, heap_base, initial)


# --- budgets ----------------------------------------------------------------------------------

def bridge_defaults(text: str | None = None) -> dict:
    """The bridge's defaults, the board's limits: {"MEMORY_LIMIT": 36864, ...} from the
    `#define PH_BRIDGE_DEFAULT_<NAME> (a * b)` lines of ph_bridge.h (read as text: a module-only
    checkout or a build without the _bridge extension has no other way to them); an installed
    package has no header but has the extension. {} without either."""
    if text is None:
        try:
            text = BRIDGE_HEADER.read_text()
        except OSError:
            try:
                from pigeonhub import _bridge
            except ImportError:
                return {}
            return {name.upper(): value for name, value in _bridge.DEFAULTS.items()}
    values = {}
    for name, expr in re.findall(r"^#define\s+PH_BRIDGE_DEFAULT_(\w+)\s+\(?([0-9u*\s]+?)\)?\s*$", text,
                                 re.MULTILINE):
        value = 1
        for factor in expr.split("*"):
            value *= int(factor.strip().rstrip("u"))
        values[name] = value
    return values


def bridge_memory_limit(text: str | None = None) -> int:
    """The bridge's default memory limit: the linear memory WASM3 really allocates.

    The module's stack + data + bss must fit under it (accesses beyond it trap). One page when the
    bridge header is absent (module-only checkout) or sets no limit (0 = the module's own size)."""
    return bridge_defaults(text).get("MEMORY_LIMIT") or INITIAL_PAGES * PAGE


def check_budgets(info: ModuleInfo, layout: MemoryLayout | None = None, abi: AbiTable | None = None,
                  max_bytes: int = MODULE_BUDGET_BYTES) -> None:
    """Raise BudgetError listing every figure over budget and every difference from the ABI."""
    abi = abi or parse_abi_header()
    problems = []
    if info.size > max_bytes:
        problems.append(f"module size {info.size} bytes > budget {max_bytes} bytes "
                        f"(over by {info.size - max_bytes})")
    if info.memory is None or info.memory_imported:
        problems.append("module must define its own memory (found none, or an imported one)")
    else:
        initial, maximum = info.memory
        if initial != INITIAL_PAGES:
            problems.append(f"initial memory {initial} pages ({initial * PAGE} bytes) != "
                            f"{INITIAL_PAGES} page ({INITIAL_PAGES * PAGE} bytes)")
        if maximum != MAX_PAGES:
            shown = "unbounded" if maximum is None else f"{maximum} pages"
            problems.append(f"maximum memory {shown} != {MAX_PAGES} pages ({MAX_PAGES * PAGE} bytes)")
    if layout is not None and layout.heap_base > min(INITIAL_PAGES * PAGE, bridge_memory_limit()):
        problems.append(_layout_problem(layout))

    want_imports = {name: wasm3_to_wasm_signature(e.signature) for name, e in abi.imports.items()}
    have_imports = {}
    for module, name, kind, sig in info.imports:
        if module != "env" or kind != "func":
            problems.append(f"unexpected import {module}.{name} ({kind}); only env functions are allowed")
        else:
            have_imports[name] = sig
    problems += _compare("import", want_imports, have_imports)

    want_exports = {name: wasm3_to_wasm_signature(e.signature) for name, e in abi.exports.items()}
    have_exports = {}
    for name, kind, sig in info.exports:
        if kind == "func":
            have_exports[name] = sig
        elif not (kind == "memory" and name == MEMORY_EXPORT):
            problems.append(f"unexpected export {name!r} ({kind})")
    if (MEMORY_EXPORT, "memory") not in {(n, k) for n, k, _ in info.exports}:
        problems.append(f"missing memory export {MEMORY_EXPORT!r}")
    problems += _compare("export", want_exports, have_exports)
    if problems:
        raise BudgetError(problems, info=info, layout=layout)


def _layout_problem(layout: MemoryLayout) -> str:
    page = INITIAL_PAGES * PAGE
    limit = min(page, bridge_memory_limit())
    where = (f"{limit} bytes" if limit == page else
             f"{limit} bytes (the bridge's default memory_limit_bytes, "
             f"PH_BRIDGE_DEFAULT_MEMORY_LIMIT in ph_bridge.h)")
    return (f"stack {layout.stack_bytes} + data {layout.data_bytes} + bss {layout.bss_bytes} = "
            f"{layout.heap_base} bytes > {where} (over by {layout.heap_base - limit}); "
            f"lower --max-peers or the buffer sizes")


def _compare(what, want: dict, have: dict):
    problems = [f"missing {what} {name} {sig}" for name, sig in want.items() if name not in have]
    problems += [f"unexpected {what} {name} {sig}" for name, sig in have.items() if name not in want]
    problems += [f"{what} {name} has signature {have[name]}, the ABI says {sig}"
                 for name, sig in want.items() if name in have and have[name] != sig]
    return problems


# --- the toolchain ----------------------------------------------------------------------------

@dataclass
class Toolchain:
    kind: str           # "clang" or "zig"
    cc: list            # command prefix
    description: str

    def flags(self, stack_size: int = STACK_SIZE, inspect: bool = False,
              bulk_memory: bool = True) -> list:
        """Flags from the toolchain notes (../shared/toolchain.md): MVP wasm32 + bulk memory,
        one page.

        Bulk memory (memory.copy/memory.fill, opcode prefix 0xFC) is the one post-MVP feature the
        module uses: WASM3 0.5.0 (m3_compile.c: Compile_Memory_CopyFill) and wasmtime run it, and
        it turns every memcpy/memset into one natively executed instruction instead of a byte
        loop the interpreter walks (relaying a 4.5 KB offer: ~9x fewer wasm instructions).
        bulk_memory=False (`pigeonhub build --mvp`) is for engines without it."""
        # The inspection link gets room to spare so an over-budget layout still links and can be
        # measured (and reported with its figure) instead of failing with "initial memory too small".
        initial, maximum = (INSPECT_PAGES, INSPECT_PAGES) if inspect else (INITIAL_PAGES, MAX_PAGES)
        common = ["-nostdlib", "-Oz", "-flto", "-fno-builtin", "-std=c11", "-Wall", "-Wextra",
                  "-Wl,--no-entry", f"-Wl,--initial-memory={initial * PAGE}",
                  f"-Wl,--max-memory={maximum * PAGE}", f"-Wl,-z,stack-size={stack_size}"]
        if self.kind == "zig":
            # zig is stack-first already (and rejects the flag); its default CPU emits LEBs WASM3
            # 0.5.0 refuses ("LEB encoded value overflow").
            target = ["--target=wasm32-freestanding",
                      "-mcpu=mvp+bulk_memory" if bulk_memory else "-mcpu=mvp"]
        else:
            target = ["--target=wasm32", "-mcpu=mvp", "-Wl,--stack-first"]
            if bulk_memory:
                target.append("-mbulk-memory")
        tail = ["-Wl,--export=__data_end", "-Wl,--export=__heap_base"] if inspect else ["-Wl,--strip-all"]
        return target + common + tail


def find_toolchain(which=shutil.which, find_spec=importlib.util.find_spec) -> Toolchain:
    """clang-14 + wasm-ld-14 (Debian), then clang + wasm-ld, then PyPI ziglang."""
    if which("clang-14") and which("wasm-ld-14"):
        return Toolchain("clang", [which("clang-14")], "clang-14 + wasm-ld-14")
    if which("clang") and which("wasm-ld"):
        return Toolchain("clang", [which("clang")], "clang + wasm-ld")
    if find_spec("ziglang") is not None:
        return Toolchain("zig", [sys.executable, "-m", "ziglang", "cc"], "zig cc (PyPI ziglang)")
    raise ToolchainError(MISSING_TOOLCHAIN)


def find_wasm_opt(which=shutil.which):
    """binaryen's wasm-opt (Debian package binaryen), or None."""
    return which("wasm-opt")


def _wasm_opt(wasm_opt: str, src: Path, dst: Path, bulk_memory: bool) -> list:
    """wasm-opt -Oz on the linked module. Features are pinned to what the link used (MVP, plus bulk
    memory unless --mvp), so the optimiser never introduces an instruction WASM3 0.5.0 lacks."""
    cmd = [wasm_opt, *WASM_OPT_FLAGS, "--mvp-features"]
    if bulk_memory:
        cmd.append("--enable-bulk-memory")
    cmd += [str(src), "-o", str(dst)]
    _run_tool(cmd, "wasm-opt")
    return cmd


def _run_tool(cmd, name, missing_hint=""):
    """Run one build tool; a ToolchainError with its stderr and command line when it fails."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise ToolchainError(f"cannot run {cmd[0]}: {exc}{missing_hint}") from None
    if proc.returncode != 0:
        raise ToolchainError(f"{name} failed (exit {proc.returncode}):\n{proc.stderr.strip()}\n"
                             f"command: {' '.join(cmd)}")


# --- building ---------------------------------------------------------------------------------

@dataclass
class BuildResult:
    path: Path
    info: ModuleInfo
    layout: MemoryLayout
    toolchain: str
    defines: dict
    test_hooks: bool
    command: list
    bulk_memory: bool = True
    linked_size: int = 0            # bytes as wasm-ld wrote it, before wasm-opt
    budget: int = MODULE_BUDGET_BYTES
    optimizer: str = ""             # the wasm-opt command line used, "" when none ran

    @property
    def size(self):
        return self.info.size

    @property
    def sha256(self):
        return self.info.sha256


def _no_wasm_opt_dir(tmp: Path) -> Path:
    """A directory with a do-nothing `wasm-opt`, for clang's -B.

    clang 14's wasm32 driver runs the first wasm-opt it finds (-B dirs, its own directory, PATH)
    on the linked file in place, without feature flags, so binaryen 108 rejects the bulk-memory
    module ("bulk memory is disabled") and the link fails. The stub found first leaves the file
    as linked; build_module then runs the real wasm-opt itself, with the features the module
    uses."""
    stub_dir = tmp / "no-wasm-opt"
    stub_dir.mkdir(exist_ok=True)
    stub = stub_dir / "wasm-opt"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return stub_dir


def _compile(toolchain: Toolchain, out: Path, defines: dict, inspect: bool,
             bulk_memory: bool = True) -> list:
    cmd = list(toolchain.cc) + toolchain.flags(inspect=inspect, bulk_memory=bulk_memory)
    if toolchain.kind == "clang":
        cmd.append(f"-B{_no_wasm_opt_dir(out.parent)}")
    cmd += [f"-I{WASM_DIR}"]
    cmd += [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in defines.items()]
    cmd += [str(WASM_DIR / src) for src in SOURCES] + ["-o", str(out)]
    _run_tool(cmd, toolchain.description, f". {MISSING_TOOLCHAIN}")
    return cmd


def build_module(out_path=None, defines=None, test_hooks=False, toolchain=None,
                 max_bytes=None, bulk_memory=True, wasm_opt=find_wasm_opt) -> BuildResult:
    """Compile hub.wasm into out_path (default pigeonhub/data/hub.wasm) and check its budgets.

    When binaryen's wasm-opt is found (`wasm_opt()` returns its path) the linked module is
    optimised with `wasm-opt -Oz`; without it, a module over the size budget fails with a message
    naming the fix. The file is written only when every check passes, so a stale module never
    looks fresh. Raises ToolchainError (no compiler, compile error) or BudgetError.
    """
    out = Path(out_path) if out_path is not None else DEFAULT_OUT
    if max_bytes is None:
        max_bytes = MODULE_BUDGET_BYTES if bulk_memory else MVP_BUDGET_BYTES
        max_bytes += TEST_HOOKS_EXTRA_BYTES if test_hooks else 0
    toolchain = toolchain or find_toolchain()
    optimizer = wasm_opt() if wasm_opt else None
    all_defines = {"PH_STACK_SIZE": STACK_SIZE}
    all_defines.update(defines or {})
    if test_hooks:
        all_defines["PH_TEST_HOOKS"] = None
    with tempfile.TemporaryDirectory(prefix="pigeonhub-build-") as tmp:
        shipped, unstripped = Path(tmp) / "hub.wasm", Path(tmp) / "hub-inspect.wasm"
        _compile(toolchain, unstripped, all_defines, inspect=True, bulk_memory=bulk_memory)
        inspected = inspect_module(unstripped.read_bytes())
        layout = layout_from_inspection(inspected, inspected)
        layout.initial_bytes = INITIAL_PAGES * PAGE
        if layout.heap_base > INITIAL_PAGES * PAGE:   # would not even link with one page
            raise BudgetError([_layout_problem(layout)], layout=layout)
        cmd = _compile(toolchain, shipped, all_defines, inspect=False, bulk_memory=bulk_memory)
        linked_size = shipped.stat().st_size
        opt_cmd = []
        if optimizer:
            optimised = Path(tmp) / "hub-opt.wasm"
            opt_cmd = _wasm_opt(optimizer, shipped, optimised, bulk_memory)
            shipped = optimised
        wasm = shipped.read_bytes()
        info = inspect_module(wasm)
        layout = layout_from_inspection(info, inspected)
        try:
            check_budgets(info, layout, max_bytes=max_bytes)
        except BudgetError as exc:
            if not optimizer and info.size > max_bytes:
                exc.problems.append(MISSING_WASM_OPT)
                raise BudgetError(exc.problems, info=info, layout=layout) from None
            raise
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        partial.write_bytes(wasm)
        os.replace(partial, out)
    return BuildResult(out, info, layout, toolchain.description, all_defines, test_hooks, cmd,
                       bulk_memory, linked_size=linked_size, budget=max_bytes,
                       optimizer=" ".join(opt_cmd[:1] and ["wasm-opt", *opt_cmd[1:-3]]))


# --- CLI --------------------------------------------------------------------------------------

def format_report(result: BuildResult) -> str:
    info, lay = result.info, result.layout
    initial, maximum = info.memory
    lines = [f"hub.wasm   {result.path}",
             f"size       {info.size} bytes (budget {result.budget}, "
             f"{result.budget - info.size} to spare)",
             f"sha256     {info.sha256}",
             f"memory     {initial} page initial, {maximum} pages max",
             f"toolchain  {result.toolchain}" + ("  [test hooks]" if result.test_hooks else "")
             + ("" if result.bulk_memory else "  [MVP: no bulk memory]"),
             (f"wasm-opt   {result.optimizer}: {result.linked_size} -> {info.size} bytes "
              f"(saved {result.linked_size - info.size})" if result.optimizer else
              f"wasm-opt   not found (binaryen): module left as linked, {result.linked_size} bytes"),
             "",
             f"{'region':<20} {'start':>7} {'end':>7} {'bytes':>7}"]
    for name, start, end in lay.rows():
        lines.append(f"{name:<20} {start:>7} {end:>7} {end - start:>7}")
    lines += ["",
              f"Summary: {info.size} bytes of module; stack {lay.stack_bytes} + data "
              f"{lay.data_bytes} + bss {lay.bss_bytes} = {lay.heap_base} of {lay.initial_bytes} "
              f"bytes in the first page, {lay.free_bytes} free (bridge memory limit "
              f"{bridge_memory_limit()}). Imports and exports match pigeonhub_abi.h."]
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="where to write the module (default: %(default)s)")
    parser.add_argument("--max-peers", type=int, metavar="N",
                        help="MAX_PEERS: client connections the hub accepts (default 20)")
    parser.add_argument("--test-hooks", action="store_true",
                        help="build the test-hook variant (frame type __test_trap traps); never ship it")
    parser.add_argument("--sign", metavar="KEY", default=None,
                        help="sign the module with this private key (`pigeonhub keygen KEY`): a hub "
                             "with the matching module key runs only modules signed by it")
    parser.add_argument("--mvp", action="store_true",
                        help="WebAssembly MVP only: no bulk memory (memory.copy/fill), for an engine "
                             "without it; slower relaying")


def run(args) -> int:
    defines = {}
    if args.max_peers is not None:
        if not 1 <= args.max_peers <= 255:
            print(f"E (build) --max-peers must be 1..255, got {args.max_peers}", file=sys.stderr)
            return 1
        defines["MAX_PEERS"] = args.max_peers
    try:
        result = build_module(args.out, defines=defines, test_hooks=args.test_hooks,
                              bulk_memory=not getattr(args, "mvp", False))
    except (ToolchainError, BudgetError, WasmFormatError) as exc:
        print(f"E (build) {exc}", file=sys.stderr)
        return 1
    print(format_report(result))
    if args.sign:
        from .signing import KeyFileError, key_id, load_private_key, sign_file
        try:
            key = load_private_key(args.sign)
            size = sign_file(result.path, args.sign)
        except KeyFileError as exc:
            print(f"E (build) {exc}", file=sys.stderr)
            return 1
        print(f"signed     key id {key_id(key.public_key()).hex()} ({args.sign}): {size} bytes with "
              f"its signature section")
    return 0

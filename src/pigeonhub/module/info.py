"""`pigeonhub info [PATH]`: what a hub module is, read statically (nothing is executed).

Prints size, sha256, memory limits, and every import/export next to the ABI table of
wasm/pigeonhub_abi.h. The ABI *version* is only known by calling abi_version(), which a bridge does
when it loads the module; this command checks the tables the version stands for.
Exit status 0 when the module matches the ABI and its budgets, 1 otherwise.
"""

import sys
from pathlib import Path

from pigeonhub.module.build import (DEFAULT_OUT, MODULE_BUDGET_BYTES, PAGE, BudgetError, WasmFormatError,
                             check_budgets, inspect_module, parse_abi_header,
                             wasm3_to_wasm_signature)


def add_arguments(parser):
    parser.add_argument("path", nargs="?", default=str(DEFAULT_OUT),
                        help="module to describe (default: %(default)s)")


def describe(path) -> tuple:
    """(report text, ok) for the module at path."""
    wasm = Path(path).read_bytes()
    info = inspect_module(wasm)
    abi = parse_abi_header()
    lines = [f"module     {path}",
             f"size       {info.size} bytes (budget {MODULE_BUDGET_BYTES})",
             f"sha256     {info.sha256}"]
    if info.memory:
        initial, maximum = info.memory
        shown = "unbounded" if maximum is None else f"{maximum} pages ({maximum * PAGE} bytes)"
        lines.append(f"memory     {initial} page(s) initial ({initial * PAGE} bytes), max {shown}")
    else:
        lines.append("memory     none defined")
    lines.append(f"ABI        tables of pigeonhub_abi.h, PH_ABI_VERSION {abi.version}")
    from .signing import KEY_ID_BYTES, SECTION_BYTES, SIG_BYTES, has_signature
    if has_signature(wasm):
        kid = wasm[-SIG_BYTES - KEY_ID_BYTES:-SIG_BYTES].hex()
        lines.append(f"signature  key id {kid} (pigeonhub.sig section, its last {SECTION_BYTES} bytes)")
    else:
        lines.append("signature  none (`pigeonhub build --sign KEY` adds one)")
    for title, have, table in (("imports", {n: s for _m, n, k, s in info.imports if k == "func"},
                                abi.imports),
                               ("exports", {n: s for n, k, s in info.exports if k == "func"},
                                abi.exports)):
        lines.append(f"{title}:")
        for name in sorted(set(have) | set(table)):
            entry = table.get(name)
            if entry is None:
                mark = "NOT IN ABI"
            elif name not in have:
                mark = "MISSING"
            elif have[name] != wasm3_to_wasm_signature(entry.signature):
                mark = f"signature differs (ABI {entry.signature})"
            else:
                mark = f"ok ({entry.origin})"
            lines.append(f"  {name:<22} {have.get(name) or '-':<10} {mark}")
    try:
        check_budgets(info, abi=abi)
        lines.append("verdict    matches the ABI and the budgets")
        return "\n".join(lines), True
    except BudgetError as exc:
        lines.append("verdict    does NOT match:")
        lines += [f"  - {p}" for p in exc.problems]
        return "\n".join(lines), False


def run(args) -> int:
    path = Path(args.path)
    if not path.is_file():
        print(f"E (info) {path}: no such file (build one with `pigeonhub build`)", file=sys.stderr)
        return 1
    try:
        text, ok = describe(path)
    except WasmFormatError as exc:
        print(f"E (info) {path}: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0 if ok else 1

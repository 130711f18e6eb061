"""pigeonhub.module.build and .info: toolchain detection, ABI parsing, budgets, the CLI."""

import dataclasses
import hashlib
import os
import subprocess
import sys

import pytest
import wasmtime

from pigeonhub import SOURCE_ROOT
from pigeonhub.module import build, info

HEADER = (SOURCE_ROOT / "wasm" / "pigeonhub_abi.h").read_text()


# --- the ABI header is the one source of truth ----------------------------------------------

def test_abi_header_tables():
    abi = build.parse_abi_header(HEADER)
    assert abi.version == 3
    assert list(abi.imports) == ["ws_server_start", "ws_server_stop", "ws_send_to_peer", "ws_broadcast",
                                 "log_message", "get_device_id", "millis", "ws_get_request_url",
                                 "ws_close_peer", "ws_ping_peer", "wall_clock_ms", "ws_connect",
                                 "get_bootstrap_hub", "json_string_end", "json_value_end"]
    assert abi.imports["json_string_end"].signature == "i(*i)"
    assert abi.imports["json_value_end"].signature == "i(*i)"
    assert abi.imports["ws_connect"].signature == "i(*i)"
    assert abi.imports["get_bootstrap_hub"].signature == "i(i*i)"
    assert abi.exports["on_link_open"].signature == "v(i)"
    assert abi.imports["ws_send_to_peer"].signature == "i(i*i)"
    assert abi.imports["wall_clock_ms"].origin == "ext"
    assert len(abi.exports) == 16 and abi.exports["on_message"].signature == "v(iii)"
    assert abi.exports["get_input_buffer_size"].origin == "ext"


def test_abi_parser_follows_edits_and_rejects_broken_tables():
    edited = HEADER.replace('X(on_pong,              "v(i)",     "ext")',
                            'X(on_pong,              "v(ii)",    "ext")')
    assert build.parse_abi_header(edited).exports["on_pong"].signature == "v(ii)"
    with pytest.raises(ValueError, match="PH_ABI_EXPORTS"):
        build.parse_abi_header(HEADER.replace("PH_ABI_EXPORTS(X)", "PH_ABI_EXPORTZ(X)"))
    dup = HEADER.replace('X(millis,', 'X(ws_ping_peer,')
    with pytest.raises(ValueError, match="twice"):
        build.parse_abi_header(dup)


# --- the built module ------------------------------------------------------------------------

def test_built_module_has_exactly_the_abi(built):
    """Checked with wasmtime's own parser, independent of build.inspect_module."""
    abi = build.parse_abi_header()
    module = wasmtime.Module(wasmtime.Engine(), built.path.read_bytes())
    imports = {(imp.module, imp.name) for imp in module.imports}
    assert imports == {("env", name) for name in abi.imports}
    funcs = {exp.name: exp.type for exp in module.exports if isinstance(exp.type, wasmtime.FuncType)}
    assert set(funcs) == set(abi.exports)
    others = {exp.name for exp in module.exports if not isinstance(exp.type, wasmtime.FuncType)}
    assert others == {"memory"}
    for name, entry in abi.exports.items():
        ret, params = entry.signature.split("(")
        assert len(funcs[name].params) == len(params.rstrip(")")), name
        assert len(funcs[name].results) == (0 if ret == "v" else 1), name
    mem = next(exp.type for exp in module.exports if exp.name == "memory")
    assert (mem.limits.min, mem.limits.max) == (1, 2)


def test_inspect_module_figures(built):
    wasm = built.path.read_bytes()
    mi = build.inspect_module(wasm)
    assert mi.size == len(wasm) <= 16384
    assert mi.sha256 == hashlib.sha256(wasm).hexdigest()
    assert mi.memory == (1, 2) and not mi.memory_imported
    assert mi.custom_sections == []          # stripped
    assert ("env", "ws_send_to_peer", "func", "i(iii)") in mi.imports
    assert ("wall_clock_ms" in {n for _m, n, _k, _s in mi.imports})
    lay = built.layout
    assert lay.stack_top == 3072 and lay.data_start == 3072            # stack first
    assert lay.heap_base <= build.bridge_memory_limit() == 36 * 1024   # what WASM3 allocates
    assert lay.data_start < lay.data_init_end <= lay.data_end <= lay.heap_base <= 65536
    assert lay.bss_bytes > 16384                                       # the input buffer


def test_inspect_rejects_garbage():
    with pytest.raises(build.WasmFormatError, match="magic"):
        build.inspect_module(b"\0asn\x01\0\0\0")
    with pytest.raises(build.WasmFormatError, match="truncated|past the end"):
        build.inspect_module(b"\0asm\x01\0\0\0\x01\x10\x01")


def test_budgets_pass_for_the_real_module(built):
    build.check_budgets(built.info, built.layout)


def test_budget_size_excess_names_the_figure(built):
    with pytest.raises(build.BudgetError) as exc:
        build.check_budgets(built.info, built.layout, max_bytes=1000)
    assert exc.value.problems == [f"module size {built.info.size} bytes > budget 1000 bytes "
                                  f"(over by {built.info.size - 1000})"]


def test_budget_memory_limits(built):
    with pytest.raises(build.BudgetError) as exc:
        build.check_budgets(dataclasses.replace(built.info, memory=(2, None)))
    assert exc.value.problems == ["initial memory 2 pages (131072 bytes) != 1 page (65536 bytes)",
                                  "maximum memory unbounded != 2 pages (131072 bytes)"]


def test_budget_layout_excess(built):
    big = dataclasses.replace(built.layout, data_end=70000, heap_base=70000)
    with pytest.raises(build.BudgetError, match=r"= 70000 bytes > 36864 bytes \(the bridge's default "
                                                r"memory_limit_bytes.*\(over by 33136\)"):
        build.check_budgets(built.info, big)


def test_budget_abi_differences(built):
    mi = built.info
    imports = [i for i in mi.imports if i[1] != "millis"] + [("wasi_snapshot_preview1", "fd_write",
                                                               "func", "i(iiii)")]
    exports = [e if e[0] != "on_pong" else ("on_pong", "func", "v(ii)") for e in mi.exports]
    exports.append(("_start", "func", "v()"))
    with pytest.raises(build.BudgetError) as exc:
        build.check_budgets(dataclasses.replace(mi, imports=imports, exports=exports))
    assert sorted(exc.value.problems) == sorted([
        "unexpected import wasi_snapshot_preview1.fd_write (func); only env functions are allowed",
        "missing import millis i()",
        "unexpected export _start v()",
        "export on_pong has signature v(ii), the ABI says v(i)"])


def test_over_budget_build_fails_with_figure_and_writes_nothing(tmp_path):
    out = tmp_path / "hub.wasm"
    with pytest.raises(build.BudgetError, match=r"stack 3072 \+ data \d+ \+ bss \d+ = \d+ bytes > 36864"):
        build.build_module(out, defines={"MAX_PEERS": 60})
    assert not out.exists()


def test_layout_must_fit_the_bridge_memory_limit(tmp_path):
    """30 peers fit the 64 KiB page but not the 36 KiB WASM3 really allocates: refused, named."""
    out = tmp_path / "hub.wasm"
    with pytest.raises(build.BudgetError, match=r"bytes > 36864 bytes \(the bridge's default "
                                                r"memory_limit_bytes"):
        build.build_module(out, defines={"MAX_PEERS": 30})
    assert not out.exists()


def test_bridge_memory_limit_parser():
    header = ("#define PH_BRIDGE_DEFAULT_MAX_CONNECTIONS 24u\n"
              "#define PH_BRIDGE_DEFAULT_MEMORY_LIMIT    (40u * 1024u)\n")
    assert build.bridge_defaults(header) == {"MAX_CONNECTIONS": 24, "MEMORY_LIMIT": 40960}
    assert build.bridge_memory_limit(header) == 40960
    assert build.bridge_memory_limit("#define PH_BRIDGE_DEFAULT_MEMORY_LIMIT 0\n") == 65536
    assert build.bridge_memory_limit("nothing here") == 65536
    assert build.bridge_defaults()["MEMORY_LIMIT"] == 36 * 1024   # the real header


def test_bulk_memory_build_and_mvp_fallback(built, tmp_path):
    """The default module uses memory.copy/memory.fill (0xFC 0x0A/0x0B); --mvp has none, same ABI."""
    copy, fill = b"\xfc\x0a\x00\x00", b"\xfc\x0b\x00"   # opcodes with memory index 0
    wasm = built.path.read_bytes()
    assert copy in wasm and fill in wasm
    mvp = build.build_module(tmp_path / "mvp.wasm", bulk_memory=False)
    assert mvp.budget == build.MVP_BUDGET_BYTES >= mvp.info.size   # the fallback's own budget
    mvp_wasm = mvp.path.read_bytes()
    assert copy not in mvp_wasm and fill not in mvp_wasm
    assert not mvp.bulk_memory and "-mbulk-memory" not in mvp.command


# --- wasm-opt (binaryen) ----------------------------------------------------------------------

def test_wasm_opt_shrinks_the_module_and_keeps_its_abi(built):
    """The shipped module is the linked one optimised by wasm-opt -Oz (found here: binaryen)."""
    assert built.optimizer.startswith("wasm-opt -Oz") and "--enable-bulk-memory" in built.optimizer
    assert built.linked_size - built.info.size > 1500          # ~2.1 KB on the ABI 1 module
    build.check_budgets(built.info, built.layout)


def test_without_wasm_opt_an_oversized_module_names_the_fix(tmp_path):
    """Unoptimised, the module is over 16 KiB: the build fails and says to install binaryen."""
    out = tmp_path / "hub.wasm"
    with pytest.raises(build.BudgetError) as exc:
        build.build_module(out, wasm_opt=lambda: None)
    text = str(exc.value)
    assert "module size" in text and "> budget 16384 bytes" in text
    assert "apt-get install binaryen" in text and not out.exists()


def test_without_wasm_opt_a_module_that_fits_builds(tmp_path):
    """MAX_PEERS does not change the code: a generous budget shows the unoptimised path works."""
    result = build.build_module(tmp_path / "hub.wasm", wasm_opt=lambda: None, max_bytes=32768)
    assert result.optimizer == "" and result.info.size == result.linked_size
    assert "wasm-opt   not found" in build.format_report(result)


def test_clang_never_runs_a_wasm_opt_of_its_own(tmp_path):
    """clang 14 runs any wasm-opt it finds without feature flags (bulk memory then fails to
    validate): build.py hands it a do-nothing stub with -B, and runs the real one itself."""
    cmd = build._compile(build.find_toolchain(), tmp_path / "x.wasm", {"PH_STACK_SIZE": 3072},
                         inspect=False)
    stub = next(a[2:] for a in cmd if a.startswith("-B"))
    assert (build.Path(stub) / "wasm-opt").read_text() == "#!/bin/sh\nexit 0\n"


# --- toolchain detection ---------------------------------------------------------------------

def fake_which(available):
    return lambda name: f"/usr/bin/{name}" if name in available else None


def test_toolchain_preference():
    none = lambda name: None  # noqa: E731
    tc = build.find_toolchain(fake_which({"clang-14", "wasm-ld-14", "clang", "wasm-ld"}), none)
    assert (tc.kind, tc.cc) == ("clang", ["/usr/bin/clang-14"])
    tc = build.find_toolchain(fake_which({"clang", "wasm-ld", "clang-14"}), none)
    assert tc.cc == ["/usr/bin/clang"]
    tc = build.find_toolchain(fake_which({"clang"}), lambda name: object())
    assert tc.kind == "zig" and tc.cc[1:] == ["-m", "ziglang", "cc"]
    assert "-mcpu=mvp+bulk_memory" in tc.flags() and "-Wl,--stack-first" not in tc.flags()
    assert "-mcpu=mvp" in tc.flags(bulk_memory=False)


def test_toolchain_missing_message():
    with pytest.raises(build.ToolchainError) as exc:
        build.find_toolchain(fake_which({"clang"}), lambda name: None)   # clang without wasm-ld
    text = str(exc.value)
    assert "apt-get install clang-14 lld-14" in text and "pip install ziglang" in text


def test_clang_flags_follow_the_toolchain_notes():
    flags = build.Toolchain("clang", ["clang"], "").flags()
    for flag in ["--target=wasm32", "-nostdlib", "-Oz", "-flto", "-Wl,--no-entry", "-Wl,--strip-all",
                 "-Wl,--stack-first", "-Wl,--initial-memory=65536", "-Wl,--max-memory=131072",
                 "-Wl,-z,stack-size=3072", "-mbulk-memory"]:
        assert flag in flags


def test_compiler_failure_is_a_toolchain_error(tmp_path):
    broken = build.Toolchain("clang", [sys.executable, "-c", "import sys; sys.exit('boom')"], "fake cc")
    with pytest.raises(build.ToolchainError, match="(?s)fake cc failed.*boom"):
        build.build_module(tmp_path / "x.wasm", toolchain=broken)
    missing = build.Toolchain("clang", [str(tmp_path / "no-such-cc")], "gone")
    with pytest.raises(build.ToolchainError, match="cannot run"):
        build.build_module(tmp_path / "x.wasm", toolchain=missing)


# --- the CLI ---------------------------------------------------------------------------------

def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pigeonhub.cli", *args], capture_output=True,
                          text=True, cwd=SOURCE_ROOT, env=env)


def test_cli_build_prints_size_hash_layout(tmp_path):
    out = tmp_path / "hub.wasm"
    proc = cli("build", "--out", str(out), "--max-peers", "8")
    assert proc.returncode == 0, proc.stderr
    wasm = out.read_bytes()
    assert f"size       {len(wasm)} bytes" in proc.stdout
    assert hashlib.sha256(wasm).hexdigest() in proc.stdout
    assert "stack                      0    3072    3072" in proc.stdout
    assert "wasm-opt   wasm-opt -Oz --mvp-features --enable-bulk-memory:" in proc.stdout
    assert "Summary:" in proc.stdout


def test_cli_build_fails_clearly_without_toolchain(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))                 # no clang, no wasm-ld
    env["PYTHONNOUSERSITE"] = "1"
    proc = cli("build", "--out", str(tmp_path / "hub.wasm"), env=env)
    try:
        import ziglang  # noqa: F401
        pytest.skip("ziglang is installed: a toolchain exists")
    except ImportError:
        pass
    assert proc.returncode == 1
    assert "no C-to-WebAssembly toolchain found" in proc.stderr
    assert "clang-14 lld-14" in proc.stderr


def test_cli_build_over_budget_exit_1(tmp_path):
    proc = cli("build", "--out", str(tmp_path / "hub.wasm"), "--max-peers", "60")
    assert proc.returncode == 1
    assert "over by" in proc.stderr and not (tmp_path / "hub.wasm").exists()


def test_cli_info(built, tmp_path):
    proc = cli("info", str(built.path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert built.info.sha256 in proc.stdout and "matches the ABI and the budgets" in proc.stdout
    assert "max 2 pages" in proc.stdout
    garbage = tmp_path / "bad.wasm"
    garbage.write_bytes(b"hello")
    proc = cli("info", str(garbage))
    assert proc.returncode == 1 and "not a WebAssembly" in proc.stderr


def test_info_reports_abi_mismatch(tmp_path):
    # A module with one stray export and nothing else: info must say what is wrong.
    wat_module = wasmtime.wat2wasm('(module (memory (export "memory") 1 2) (func (export "init") (result i32) i32.const 0))')
    path = tmp_path / "tiny.wasm"
    path.write_bytes(wat_module)
    text, ok = info.describe(path)
    assert not ok
    assert "missing import millis i()" in text and "ok (original)" in text

"""Device figures for `pigeonhub bench --device`: counts that repeat exactly on any machine.

  * hub.wasm: size and linear-memory layout (stack, data, pages asked for);
  * WASM3 + bridge heap with 0 and 20 peers (peak and current), from tools/heap_probe built with
    `gcc -m32` (4-byte pointers and size_t as on the ESP32) and a counting malloc wrapper;
  * instructions per relayed frame (360 B candidate, 4.5 KB offer) and for module load + init, from
    `valgrind --tool=callgrind`: instructions inside ph_bridge_on_frame for runs relaying K and 2K
    frames; the difference / K cancels connecting and announcing;
  * a projection for an ESP32 at 240 MHz from those instruction counts (an estimate, see PROJECTION).
"""

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]   # src/pigeonhub/bench/ -> the checkout
PROBE_SOURCE = REPO_ROOT / "tools" / "heap_probe" / "heap_probe.c"
BRIDGE_SRC = REPO_ROOT / "lib" / "pigeonhub_bridge" / "src"
WASM3_SRC = REPO_ROOT / "lib" / "wasm3" / "src"
BUILD_DIR = REPO_ROOT / "build" / "bench"

# The WASM3 configuration m3_config_platforms.h applies when ESP32 is defined (that header cannot
# be used on a PC: it includes esp_system.h), so the probe's WASM3 has the board's table sizes.
ESP32_LIKE_DEFINES = ["-Dd_m3MaxFunctionStackHeight=128", "-Dd_m3VerboseErrorMessages=0",
                      "-Dd_m3MaxConstantTableSize=64"]
PROBE_CFLAGS = ["-m32", "-std=c11", "-O2", "-g"] + ESP32_LIKE_DEFINES
WRAP = "-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free"

RELAY_FRAMES = 200       # K; the second run relays 2K
PEERS = 20               # MAX_PEERS of the module

# ESP32 projection. Assumptions (stated in the output and in docs/PERFORMANCE.md):
#   x86-32 instructions -> Xtensa LX6 instructions: factor 1.0 to 1.5 (both are register machines
#   running the same C; Xtensa lacks memory operands and x86's complex addressing, so it needs
#   somewhat more instructions for the interpreter's load/op/store sequences);
#   CPI 1.5 to 3 on an LX6 with WASM3's op handlers in IRAM (M3_IN_IRAM) and the module's linear
#   memory in internal SRAM: loads have a 1-cycle penalty, taken branches 2-3 cycles, flash-cache
#   misses for the bridge code outside IRAM.
CPU_HZ = 240e6
XTENSA_FACTOR = (1.0, 1.5)
CPI = (1.5, 3.0)


class DeviceBenchError(RuntimeError):
    """A device figure could not be produced; the message says what is missing."""


# --- hub.wasm ------------------------------------------------------------------------------------

def wasm_layout(wasm: bytes) -> dict:
    """Size and memory layout from the module's sections, read by pigeonhub.module.build's parser.

    With clang's --stack-first the stack is [0, initial __stack_pointer); data segments follow;
    zero-initialised data (.bss) has no segment, so __heap_base (when exported) ends the static data.
    """
    from pigeonhub.module.build import WasmFormatError, inspect_module
    try:
        info = inspect_module(wasm)
    except WasmFormatError as exc:
        raise DeviceBenchError(str(exc)) from None
    segments = [(offset, size) for offset, size in info.data_segments if offset is not None]
    out = {"bytes": info.size, "data_segments": len(segments),
           "data_bytes": sum(size for _, size in segments),
           "exports": sorted(info.export_names())}
    if info.memory:
        out["initial_pages"], out["max_pages"] = info.memory
    stack = next((init for valtype, mutable, init in info.globals if mutable and valtype == "i"), None)
    if stack is not None:
        out["stack_bytes"] = stack
    if segments:
        out["data_start"] = min(offset for offset, _ in segments)
        out["data_end"] = max(offset + size for offset, size in segments)
    if "__heap_base" in info.export_index:
        out["heap_base"] = info.globals[info.export_index["__heap_base"]][2]
    return out


def module_figures(module=None, log=print) -> dict:
    """Build hub.wasm (pigeonhub.module.build) unless a path is given; size and layout.

    The build runs with the size budget lifted so an oversized module is still measured (the
    budget is asserted by test/bench and by `pigeonhub build`, not here)."""
    layout_rows = None
    if module is None:
        try:
            from pigeonhub.module import build
        except ImportError as exc:
            raise DeviceBenchError(f"pigeonhub.module.build is not available ({exc}); pass --module") from None
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        module = BUILD_DIR / "hub.wasm"
        log(f"building {module}")
        try:
            result = build.build_module(str(module), max_bytes=1 << 30)
        except Exception as exc:  # noqa: BLE001 - ToolchainError/BudgetError: say why, stop
            raise DeviceBenchError(f"hub.wasm build failed: {exc}") from None
        layout_rows = [(name, start, end) for name, start, end in result.layout.rows()]
    module = Path(module)
    if not module.is_file():
        raise DeviceBenchError(f"{module}: no such module")
    wasm = module.read_bytes()
    figures = {"path": str(module), "sha256": hashlib.sha256(wasm).hexdigest(),
               **wasm_layout(wasm)}
    if layout_rows:
        figures["layout"] = layout_rows
    return figures


# --- the probe -----------------------------------------------------------------------------------

def _sources():
    bridge = sorted(BRIDGE_SRC.glob("*.c"))
    wasm3 = sorted(WASM3_SRC.glob("*.c"))
    return bridge, wasm3


def ensure_wasm3(log=print):
    if sorted(WASM3_SRC.glob("*.c")):
        return
    # scripts/wasm3_source.py: repository tooling, not part of the package (a checkout is needed
    # here anyway: the probe compiles lib/ and tools/heap_probe)
    source = REPO_ROOT / "scripts" / "wasm3_source.py"
    if not source.is_file():
        raise DeviceBenchError(f"no WASM3 sources in {WASM3_SRC} and no {source}")
    spec = importlib.util.spec_from_file_location("wasm3_source", source)
    wasm3_source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wasm3_source)
    log(f"fetching WASM3 sources into {WASM3_SRC}")
    wasm3_source.ensure_wasm3_sources(WASM3_SRC)


def build_probe(log=print) -> Path:
    """Compile tools/heap_probe with gcc -m32; cached by a hash of every input."""
    ensure_wasm3(log)
    bridge, wasm3 = _sources()
    if not bridge:
        raise DeviceBenchError(f"no bridge core sources in {BRIDGE_SRC}")
    cc = os.environ.get("CC", "gcc")
    argv = [cc] + PROBE_CFLAGS + [f"-I{WASM3_SRC}", f"-I{BRIDGE_SRC}",
                                  f"-I{REPO_ROOT / 'wasm'}", str(PROBE_SOURCE)]
    argv += [str(p) for p in bridge + wasm3] + [WRAP, "-lm"]
    digest = hashlib.sha256(" ".join(argv).encode())
    for path in [PROBE_SOURCE] + bridge + wasm3 + sorted(BRIDGE_SRC.glob("*.h")) + \
            sorted((REPO_ROOT / "wasm").glob("*.h")):
        digest.update(path.read_bytes())
    out = BUILD_DIR / f"heap_probe-{digest.hexdigest()[:12]}"
    if out.is_file():
        return out
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    log(f"compiling {out.name} ({cc} -m32, {len(bridge)} bridge + {len(wasm3)} WASM3 files)")
    proc = subprocess.run(argv + ["-o", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        hint = ""
        if "cannot find" in proc.stderr and ("crt" in proc.stderr or "lgcc" in proc.stderr):
            hint = " (32-bit libc missing: apt-get install gcc-multilib, done by scripts/setup.sh test)"
        raise DeviceBenchError(f"probe build failed{hint}:\n{proc.stderr[-3000:]}")
    return out


def _run_probe(argv, timeout=300):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    values = {}
    for line in proc.stdout.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            values[key] = int(value) if value.lstrip("-").isdigit() else value
    if proc.returncode != 0:
        raise DeviceBenchError(f"{' '.join(map(str, argv))} failed ({proc.returncode}): "
                               f"{proc.stderr.strip()[-1500:]}")
    return values


def heap_figures(probe: Path, module: Path, extra=()) -> dict:
    """Heap with 0 and PEERS peers; `extra`: probe options (e.g. --memory-limit N)."""
    zero = _run_probe([str(probe), str(module), "--peers", "0", *extra])
    full = _run_probe([str(probe), str(module), "--peers", str(PEERS), "--relay", "offer",
                       "--count", "50", *extra])
    return {
        "memory_limit": full["config.memory_limit"], "wasm_stack": full["config.wasm_stack"],
        "peers0_current": zero["heap.peers0.current"], "peers0_peak": zero["heap.peers0.peak"],
        "peers0_blocks": zero["heap.peers0.blocks"],
        f"peers{PEERS}_current": full[f"heap.peers{PEERS}.current"],
        f"peers{PEERS}_peak": full[f"heap.peers{PEERS}.peak"],
        f"peers{PEERS}_blocks": full[f"heap.peers{PEERS}.blocks"],
        "relay_offer_peak": full["heap.relay_offer.peak"],
        "destroyed_current": full["heap.destroyed.current"],
        "hub_peer_count": full["hub.peer_count"],
    }


def _callgrind(argv, toggle, workdir) -> int:
    out = Path(workdir) / f"cg.{len(os.listdir(workdir))}.out"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           f"--toggle-collect={toggle}"] + [str(a) for a in argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise DeviceBenchError(f"callgrind run failed ({proc.returncode}): {proc.stderr[-1500:]}")
    text = out.read_text()
    match = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M)
    if not match:
        raise DeviceBenchError(f"no instruction total in {out}")
    return int(match.group(1))


def instruction_figures(probe: Path, module: Path, frames=RELAY_FRAMES, log=print) -> dict:
    if shutil.which("valgrind") is None:
        raise DeviceBenchError("valgrind not found (apt-get install valgrind; scripts/setup.sh "
                               "test installs it)")
    figures = {"frames_k": frames}
    with tempfile.TemporaryDirectory(prefix="ph-callgrind-") as tmp:
        figures["load_init"] = _callgrind([probe, module, "--peers", "0"], "ph_bridge_create",
                                          tmp)
        for kind in ("ice", "offer"):
            log(f"callgrind: {frames} and {2 * frames} {kind} frames through ph_bridge_on_frame")
            base = [probe, module, "--peers", str(PEERS), "--relay", kind, "--count"]
            one = _callgrind(base + [frames], "ph_bridge_on_frame", tmp)
            two = _callgrind(base + [2 * frames], "ph_bridge_on_frame", tmp)
            figures[f"{kind}_per_frame"] = round((two - one) / frames)
            figures[f"{kind}_runs"] = (one, two)
        # the announce of one peer into a full network: discovery cost for the module
        a = _callgrind([probe, module, "--peers", str(PEERS - 1)], "ph_bridge_on_frame", tmp)
        b = _callgrind([probe, module, "--peers", str(PEERS)], "ph_bridge_on_frame", tmp)
        figures["announce_20th"] = b - a
    return figures


def projection(instructions: int) -> dict:
    """Seconds per operation on an ESP32 at 240 MHz: (best, worst) under the stated assumptions."""
    best = instructions * XTENSA_FACTOR[0] * CPI[0] / CPU_HZ
    worst = instructions * XTENSA_FACTOR[1] * CPI[1] / CPU_HZ
    return {"best_s": best, "worst_s": worst, "best_per_s": 1 / best if best else None,
            "worst_per_s": 1 / worst if worst else None}


def measure(module=None, log=print) -> dict:
    figures = {"module": module_figures(module, log)}
    module_path = Path(figures["module"]["path"])
    probe = build_probe(log)
    figures["probe"] = {"binary": str(probe), "cflags": " ".join(PROBE_CFLAGS + [WRAP])}
    figures["heap"] = heap_figures(probe, module_path)
    layout = dict((name, (start, end)) for name, start, end in figures["module"].get("layout", []))
    if "free" in layout:
        # what-if: memoryLimit cut to what the module uses (stack + data + bss, 1 KiB-rounded)
        need = (layout["free"][0] + 1023) // 1024 * 1024
        figures["heap_fitted"] = heap_figures(probe, module_path, ("--memory-limit", str(need)))
    figures["instructions"] = instruction_figures(probe, module_path, log=log)
    ins = figures["instructions"]
    figures["projection"] = {
        "assumptions": {"cpu_hz": CPU_HZ, "xtensa_per_x86_instruction": XTENSA_FACTOR, "cpi": CPI},
        "offer": projection(ins["offer_per_frame"]),
        "ice": projection(ins["ice_per_frame"]),
        "load_init": projection(ins["load_init"]),
    }
    return figures


# --- printing ------------------------------------------------------------------------------------

def _kib(n):
    return f"{n / 1024:.1f} KiB" if n is not None else "—"


def device_table(fig) -> str:
    mod, heap, ins, proj = fig["module"], fig["heap"], fig["instructions"], fig["projection"]
    rows = [("hub.wasm size", f"{mod['bytes']:,} B ({_kib(mod['bytes'])})")]
    pages = mod.get("initial_pages")
    if pages is not None:
        rows.append(("linear memory asked for", f"{pages} page(s) initial, "
                     f"{mod.get('max_pages')} max (64 KiB pages)"))
    if mod.get("layout"):
        # from pigeonhub.module.build: stack / data / bss / free of the initial memory
        for name, start, end in mod["layout"]:
            rows.append((f"linear memory: {name}", f"{start:,} – {end:,} ({end - start:,} B)"))
    else:
        if "stack_bytes" in mod:
            rows.append(("wasm stack (stack-first)", f"0 – {mod['stack_bytes']:,} "
                         f"({_kib(mod['stack_bytes'])})"))
        if "data_start" in mod:
            rows.append(("initialised data", f"{mod['data_start']:,} – {mod['data_end']:,} "
                         f"({mod['data_bytes']:,} B in {mod['data_segments']} segment(s); "
                         f"bss not visible in a stripped module)"))
    rows += [
        ("heap, module loaded, 0 peers", f"{_kib(heap['peers0_current'])} current, "
                                         f"{_kib(heap['peers0_peak'])} peak"),
        (f"heap, {PEERS} peers announced", f"{_kib(heap[f'peers{PEERS}_current'])} current, "
                                           f"{_kib(heap[f'peers{PEERS}_peak'])} peak "
                                           f"({heap[f'peers{PEERS}_blocks']} blocks)"),
        ("heap peak while relaying 4.5 KB offers", _kib(heap["relay_offer_peak"])),
        ("bridge config measured", f"memory_limit {heap['memory_limit']:,} B, WASM3 stack "
                                   f"{heap['wasm_stack']:,} B (PH_BRIDGE_CONFIG_DEFAULT)"),
    ]
    fitted = fig.get("heap_fitted")
    if fitted:
        rows.append((f"what-if: memory_limit {fitted['memory_limit']:,} B (module's need)",
                     f"{PEERS} peers: {_kib(fitted[f'peers{PEERS}_peak'])} peak"))
    rows += [
        ("instructions: load + init", f"{ins['load_init']:,}"),
        ("instructions per 360 B candidate", f"{ins['ice_per_frame']:,}"),
        ("instructions per 4.5 KB offer", f"{ins['offer_per_frame']:,}"),
        (f"instructions: announce of peer {PEERS}", f"{ins['announce_20th']:,}"),
    ]
    for key, label in (("offer", "4.5 KB offer"), ("ice", "360 B candidate")):
        p = proj[key]
        rows.append((f"ESP32 projection, {label}",
                     f"{p['best_s'] * 1e3:.2f}–{p['worst_s'] * 1e3:.2f} ms CPU → "
                     f"{p['worst_per_s']:,.0f}–{p['best_per_s']:,.0f} frames/s"))
    p = proj["load_init"]
    rows.append(("ESP32 projection, load + init", f"{p['best_s'] * 1e3:.0f}–{p['worst_s'] * 1e3:.0f} ms"))
    lines = ["| device figure | value |", "| --- | --- |"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


PROJECTION_NOTE = (
    "ESP32 figures are a projection, not a measurement: x86-32 instructions counted by callgrind "
    f"× {XTENSA_FACTOR[0]}–{XTENSA_FACTOR[1]} Xtensa instructions per x86 instruction × CPI "
    f"{CPI[0]}–{CPI[1]} (WASM3 op handlers in IRAM, M3_IN_IRAM; linear memory in internal SRAM) "
    f"÷ {CPU_HZ / 1e6:.0f} MHz. They cover the bridge and the module only, not lwIP, httpd and "
    "WebSocket framing.")


def format_text(fig) -> str:
    return ("\nDevice figures (counts: identical on every run; gcc -m32 build of WASM3 + bridge, "
            f"{PEERS} peers):\n\n" + device_table(fig) + "\n\n" + PROJECTION_NOTE + "\n")

"""Budgets of the device figures (counts that repeat exactly, so they can be asserted).

    pytest test/bench -s        # -s not needed: the figures are printed either way

  * hub.wasm <= 16 KiB                                  (original design: ~15-20 KB)
  * WASM3 + bridge heap with 20 peers <= 128 KiB, peak, 32-bit build (original design: 128 KB RAM)
  * x86-32 instructions per relayed 4.5 KB offer / 360 B candidate <= budget (measured x ~1.5)

Timing figures (msg/s, ms) are never asserted here: they depend on the machine; `pigeonhub bench`
prints them. Needs gcc-multilib (32-bit libc) and valgrind: `scripts/setup.sh test` installs both.
"""

import os
from pathlib import Path

import pytest

from pigeonhub.bench import device as bench_device

MODULE_BUDGET = 16 * 1024
HEAP_BUDGET = 128 * 1024
# Measured (docs/PERFORMANCE.md) and multiplied by about 1.5, rounded up: room for features, but a
# change that makes relaying markedly more expensive fails here and has to raise the budget openly.
INSTRUCTIONS_PER_OFFER_BUDGET = 170_000         # measured 116,239 (member values checked by the host;
                                                # ABI 3 157,172; ABI 2 720,804; byte at a time 5,578,848)
INSTRUCTIONS_PER_CANDIDATE_BUDGET = 115_000     # measured 76,835 (ABI 3 134,420; ABI 2 218,371; at first 682,390)


@pytest.fixture(scope="module")
def module_path(tmp_path_factory):
    """hub.wasm: $HUB_WASM (built by scripts/test.sh), else built here with pigeonhub.module.build."""
    env = os.environ.get("HUB_WASM")
    if env:
        return Path(env)
    from pigeonhub.module import build
    out = tmp_path_factory.mktemp("bench") / "hub.wasm"
    # budget lifted: the size is asserted below, with the figure, instead of failing the build
    build.build_module(str(out), max_bytes=1 << 30)
    return out


@pytest.fixture(scope="module")
def probe():
    return bench_device.build_probe(log=lambda msg: None)


def show(capsys, text):
    with capsys.disabled():
        print(f"\n  {text}")


def test_module_fits_16_kib(module_path, capsys):
    layout = bench_device.wasm_layout(module_path.read_bytes())
    show(capsys, f"hub.wasm: {layout['bytes']:,} B (budget {MODULE_BUDGET:,} B), "
                 f"{layout.get('initial_pages')} initial / {layout.get('max_pages')} max pages, "
                 f"stack {layout.get('stack_bytes', 0):,} B")
    assert layout["bytes"] <= MODULE_BUDGET, \
        f"hub.wasm is {layout['bytes']} B, budget {MODULE_BUDGET} B"
    # the bridge refuses modules asking for more than PH_MODULE_MAX_PAGES (2) pages
    assert layout.get("max_pages") is not None and layout["max_pages"] <= 2


def test_heap_with_20_peers_fits_128_kib(probe, module_path, capsys):
    heap = bench_device.heap_figures(probe, module_path)
    show(capsys, f"heap (gcc -m32): 0 peers {heap['peers0_current']:,} B current / "
                 f"{heap['peers0_peak']:,} B peak; 20 peers {heap['peers20_current']:,} B current "
                 f"/ {heap['peers20_peak']:,} B peak; relaying offers {heap['relay_offer_peak']:,}"
                 f" B peak (budget {HEAP_BUDGET:,} B)")
    assert heap["hub_peer_count"] == 20, "the module did not count 20 announced peers"
    over = ("WASM3 + bridge heap over budget; the largest parts are the module's linear memory "
            f"(memory_limit {heap['memory_limit']} B), the WASM3 stack ({heap['wasm_stack']} B) "
            "and WASM3's 4 KiB code pages (`tools/heap_probe/heap_probe --trace` lists blocks)")
    assert heap["peers20_peak"] <= HEAP_BUDGET, over
    assert heap["relay_offer_peak"] <= HEAP_BUDGET, over
    assert heap["destroyed_current"] == 0, \
        f"{heap['destroyed_current']} B still allocated after ph_bridge_destroy (leak)"


@pytest.mark.slow
def test_instructions_per_relayed_frame(probe, module_path, capsys):
    ins = bench_device.instruction_figures(probe, module_path, frames=100, log=lambda m: None)
    show(capsys, f"instructions (x86-32, callgrind): load+init {ins['load_init']:,}; per 360 B "
                 f"candidate {ins['ice_per_frame']:,} (budget "
                 f"{INSTRUCTIONS_PER_CANDIDATE_BUDGET:,}); per 4.5 KB offer "
                 f"{ins['offer_per_frame']:,} (budget {INSTRUCTIONS_PER_OFFER_BUDGET:,}); "
                 f"announce of the 20th peer {ins['announce_20th']:,}")
    assert 0 < ins["offer_per_frame"] <= INSTRUCTIONS_PER_OFFER_BUDGET
    assert 0 < ins["ice_per_frame"] <= INSTRUCTIONS_PER_CANDIDATE_BUDGET

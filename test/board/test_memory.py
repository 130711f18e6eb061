"""Memory on the emulated board, as /health reports it: after boot, with 20 peers announced, and
after a relay storm of 4.5 KB offers. Prints the figures (docs/PERFORMANCE.md quotes them) and
holds them to the budgets below.

Stacks are measured on this kit's GCC 12 (no sibling calls on Xtensa): docs/PERFORMANCE.md states
the margin kept over the measured high-water mark.
"""

import json
import time

import pytest

from hubclient import announced_peers
from hubprocess import http_get

PEERS = 20                      # MAX_PEERS
OFFER_SDP_BYTES = 4500          # a typical WebRTC offer
OFFERS_PER_SENDER = 10
# Budgets set a little under what the chips measure (docs/PERFORMANCE.md), to catch a regression;
# the goal of 96 KiB free under load is not reached yet. Boot figures are steady; the low-water
# mark under load moves with QEMU's timing, so its floor keeps more room.
BOOT_FREE_HEAP_BUDGET = {"esp32": 120_000, "esp32c3": 113_000}
LOAD_MIN_FREE_HEAP_FLOOR = {"esp32": 56 * 1024, "esp32c3": 56 * 1024}
MODULE_RUNTIME_BUDGET = 120 * 1024    # WASM3 + bridge for hub.wasm, heap and IRAM heap together
STACK_MARGIN_BUDGET = 2048      # least stack a task may have had left
OUT_OF_MEMORY = ("no mem", "out of memory", "Stack canary", "stack overflow")


def memory(board):
    return json.loads(http_get(board, "/health")[2])["memory"]


def show(stage, m):
    print(f"\n  {stage:<26} free {m['freeHeap']:>7}  min free {m['minFreeHeap']:>7}  "
          f"largest block {m['largestFreeBlock']:>7}  IRAM free {m['iramFree']:>6}  hub stack left {m['hubStackFree']:>6}/"
          f"{m['hubStackSize']}  httpd stack left {m['httpdStackFree']:>5}/{m['httpdStackSize']}  "
          f"inbox peak {m['inboxPeak']:>6}  send queue peak {m['outQueuePeak']:>6}")


def test_heap_and_stacks_under_offer_load(new_board, board_target):
    board = new_board()
    booted = memory(board)
    show(f"{board_target} after boot", booted)
    print(f"  module runtime {booted['moduleRuntime']} B of heap + {booted['moduleRuntimeIram']} B "
          f"of IRAM heap")

    peers = announced_peers(board.url, PEERS)
    try:
        announced = memory(board)
        show(f"{board_target} 20 peers", announced)

        # Every sender has one offer in flight at a time, all senders at once: the hub relays
        # as fast as it can without a receiver ever being a slow consumer.
        sdp = "v=0\r\n" + "a=x" * (OFFER_SDP_BYTES // 3)
        pairs = list(zip(peers[0::2], peers[1::2]))
        started = time.monotonic()
        for i in range(OFFERS_PER_SENDER):
            for a, b in pairs:
                a.signal("offer", {"type": "offer", "sdp": sdp, "n": i}, targetPeerId=b.id)
            for a, b in pairs:
                got = b.expect("offer", timeout=30, fromPeerId=a.id)
                assert got["data"]["n"] == i, "offers arrive in order, none lost"
        elapsed = time.monotonic() - started
        stormed = memory(board)
        show(f"{board_target} after offer storm", stormed)
        print(f"  {len(pairs) * OFFERS_PER_SENDER} offers of {OFFER_SDP_BYTES} B relayed in "
              f"{elapsed:.1f} s (emulated: no timing fidelity)")
    finally:
        for p in peers:
            p.close()

    assert booted["freeHeap"] >= BOOT_FREE_HEAP_BUDGET[board_target], "free heap after boot"
    assert booted["moduleRuntime"] + booted["moduleRuntimeIram"] <= MODULE_RUNTIME_BUDGET, (
        "heap of the module's runtime")
    if board_target == "esp32":   # PIGEONHUB_WASM3_CODE_IN_IRAM, lib/wasm3/patches/0008
        assert booted["moduleRuntimeIram"] >= 40_000, "the module's code pages are in IRAM"
    floor = LOAD_MIN_FREE_HEAP_FLOOR[board_target]
    assert stormed["minFreeHeap"] >= floor, (
        f"minimum free heap {stormed['minFreeHeap']} B under offer load is below the {floor} B floor")
    assert stormed["hubStackFree"] >= STACK_MARGIN_BUDGET, "hub task stack margin"
    assert stormed["httpdStackFree"] >= STACK_MARGIN_BUDGET, "httpd task stack margin"
    log = board.log()
    for sign in OUT_OF_MEMORY:
        assert sign not in log, f"the board ran out of memory: {sign!r} in its log"

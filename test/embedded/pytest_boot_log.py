"""The boot log: what a user sees on the serial console after a reset, and that it is true.

Board: main/hub_task.c (module loaded, hub id, WebSocket server listening), main/wifi.c (IPv4 address;
main/ethernet.c in QEMU, reached through a port forwarded to 127.0.0.1).
PC twin: src/pigeonhub/hub/server.py boot(), printed on its pty after `reset`.
"""

from embedded_support import SLOT_BYTES, http_json, running_module


def test_boot_log_names_module_hub_id_address_and_port(boot, pc_twin, emulated_board):
    # The fixture harvested the four lines with anchored regexes; here: their values are the truth.
    assert 8 < boot.module_bytes <= SLOT_BYTES
    assert 1 <= boot.port <= 65535
    assert all(0 <= int(octet) <= 255 for octet in boot.ip.split("."))
    if pc_twin is not None:
        assert boot.ip == "127.0.0.1"   # the twin was started with --host 127.0.0.1
    if emulated_board is not None:
        assert boot.ip == "10.0.2.15"   # QEMU's user network gives the guest this address
        assert boot.port == emulated_board.guest_port   # the port QEMU forwards 127.0.0.1:P to

    # The address and port from the log reach the hub: what `curl http://IP:PORT/health` shows
    # (for an emulated board, through the port QEMU forwards to it: Boot.address).
    health = http_json(boot, "/health")
    assert health["status"] == "healthy"
    assert health["isHub"] is True
    assert health["connections"] == 0       # a reset dropped everyone

    # The module the log names is the one serving, byte count and hash alike.
    module = running_module(boot)
    assert (module["sha256"], module["bytes"]) == (boot.module_sha256, boot.module_bytes)

    # The hub id in the log is the module's own (its get_stats, which a swap replaces).
    assert http_json(boot, "/stats")["module"]["hubId"] == boot.hub_id


def test_hub_id_and_address_survive_a_reset(boot, reboot):
    """Peers and other hubs know a hub by its id: a reset must not change it (derived from the MAC
    on a board, from host name and port on the twin)."""
    first = boot
    again = reboot()
    assert again.hub_id == first.hub_id
    assert (again.ip, again.port) == (first.ip, first.port)

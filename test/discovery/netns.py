"""A private network namespace for the mDNS tests: its own loopback and nothing else, so the
multicast that `pigeonhub serve --mdns` and `pigeonhub discover` send never leaves it (no query
reaches this machine's real network, and two test runs at once cannot see each other's hubs).

Linux only, and creating one needs CAP_SYS_ADMIN (root, as in CI); without it the tests skip and
say so. Multicast on a namespace's loopback works although `lo` has no MULTICAST flag: the
kernel delivers a datagram sent on lo to every socket on it that joined the group
(python-zeroconf binds its sockets to the interface addresses it finds, here only 127.0.0.1).
"""

import ctypes
import os
import subprocess
from contextlib import contextmanager

import pytest

CLONE_NEWNET = 0x40000000
PREFIX = "ph-mdns-"
IP_TIMEOUT = 10   # s for an `ip` command


def _ip(*args):
    return subprocess.run(["ip", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=IP_TIMEOUT)


def _remove_stale():
    """Namespaces left by a run that was killed (their pid is gone)."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for name in names:
        pid = name[len(PREFIX):].split("-")[0]
        if name.startswith(PREFIX) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _ip("netns", "delete", name)


class Netns:
    """`ip netns add` + loopback up; exec() prefixes a command to run inside; delete() removes it."""

    def __init__(self, tag=""):
        self.name = f"{PREFIX}{os.getpid()}{tag}"
        _remove_stale()
        try:
            made = _ip("netns", "add", self.name)
        except FileNotFoundError:
            pytest.skip("needs iproute2's `ip` to create a network namespace")
        if made.returncode != 0:
            pytest.skip(f"cannot create a network namespace (needs root): {made.stdout.strip()}")
        up = _ip("-n", self.name, "link", "set", "lo", "up")
        if up.returncode != 0:
            self.delete()
            pytest.fail(f"loopback of {self.name} did not come up: {up.stdout}")

    def exec(self, *argv):
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    @contextmanager
    def entered(self):
        """This thread inside the namespace: sockets created here belong to it for good."""
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/self/ns/net") as home, open(f"/run/netns/{self.name}") as target:
            if libc.setns(target.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.name} failed")
            try:
                yield
            finally:
                if libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to this process's namespace failed")

    def delete(self):
        _ip("netns", "delete", self.name)

"""asyncio.run on uvloop when it is installed (a dependency on Linux and macOS), the standard loop
otherwise (Windows, or a bare install), with identical behaviour.

Both ends of the PC side use it: the hub (libuv's transports cut its per-frame socket overhead by
about a third) and the bench load generator (on the standard loop it was slower than either hub,
so both hubs measured alike; see docs/PERFORMANCE.md)."""

import asyncio
import sys


def run(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    if sys.version_info >= (3, 12):
        return asyncio.run(coro, loop_factory=uvloop.new_event_loop)
    return uvloop.run(coro)

"""The attacker of test_connection_limits.py: holds COUNT silent TCP connections to PORT
from SOURCES loopback addresses (127.0.0.1, the clients' own, first), reopening each one
the server closes. A process of its own, so that its event loop is not the clients'.

    python idle_flood.py PORT COUNT [SOURCES]

Prints "ready" once the connections are open; runs until killed.
"""

from __future__ import annotations

import contextlib
import resource
import sys

import trio


async def hold(port: int, source: str) -> None:
    while True:
        with contextlib.suppress(OSError, trio.BrokenResourceError):
            s = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
            with contextlib.suppress(trio.BrokenResourceError):
                while await s.receive_some(4096):  # libp2p says hello; we never do
                    pass
            await s.aclose()
        await trio.sleep(0.01)


async def main(port: int, count: int, sources: int) -> None:
    async with trio.open_nursery() as nursery:
        for i in range(count):
            k = i % sources
            nursery.start_soon(hold, port, f"127.0.{k // 250}.{k % 250 + 1}")
        await trio.sleep(1)
        print("ready", flush=True)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if sys.argv[3:] else 1)

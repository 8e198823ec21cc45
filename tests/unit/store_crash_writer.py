"""Writer process for test_store_crash.py: puts keys and reports each acknowledged one.

Usage: python store_crash_writer.py KIND PATH SYNC. Opens the store with ``open_store``,
then four tasks put keys concurrently; after each put returns, the key is printed (and
flushed) on stdout. The test kills the process with SIGKILL mid-stream.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from dscluster.store import open_store


def value_of(key: str) -> bytes:
    """Deterministic, varied values (0 to ~9 KiB) the test can recompute."""
    n = int(key.rsplit("/", 1)[1])
    return (key.encode() + b"|") * (n % 311)


async def main(kind: str, path: Path, sync: bool) -> None:
    store = await open_store(kind, path, sync=sync)
    print("ready", flush=True)

    async def writer(task: int) -> None:
        for i in range(1_000_000):
            key = f"/crash/{task}/{i}"
            await store.put(key, value_of(key))
            print(key, flush=True)

    async with trio.open_nursery() as nursery:
        for task in range(4):
            nursery.start_soon(writer, task)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "sync")

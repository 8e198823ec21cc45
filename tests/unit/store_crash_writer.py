"""Writer process for test_store_crash.py: puts keys and reports each one it puts.

Usage: python store_crash_writer.py KIND PATH SYNC. Opens the store with ``open_store``,
then ``TASKS`` tasks put keys concurrently. Each prints (and flushes) ``put KEY`` before
its put starts and ``ok KEY`` after it returned. The test kills the process with SIGKILL
mid-stream.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from dscluster.store import open_store

TASKS = 4


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
            # announced before the put, so the test knows every key that may be stored
            # without reasoning about how many puts were in flight at the kill
            print(f"put {key}", flush=True)
            await store.put(key, value_of(key))
            print(f"ok {key}", flush=True)

    async with trio.open_nursery() as nursery:
        for task in range(TASKS):
            nursery.start_soon(writer, task)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "sync")

"""Key-value throughput of any Datastore: a local store or the whole cluster.

Each measurement runs ``concurrency`` requester tasks for a fixed wall-clock window and
counts completed operations, so slow and fast configurations take the same time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import trio

from dscluster.datastore import Datastore


@dataclass
class Result:
    what: str
    op: str
    size: int
    concurrency: int
    ops: int
    seconds: float

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.ops * self.size / self.seconds / 1e6

    def line(self) -> str:
        return (f"{self.what:<14} {self.op:<4} {self.size // 1024:>4} KiB x{self.concurrency}: "
                f"{self.ops_per_s:9.0f} ops/s {self.mb_per_s:8.1f} MB/s")


async def run_kv(ds: Datastore, what: str, size: int, concurrency: int,
                 seconds: float, prefix: str) -> list[Result]:
    value = os.urandom(size)
    written: list[str] = []
    counter = 0

    async def put_worker(w: int) -> None:
        nonlocal counter
        i = 0
        while True:
            k = f"{prefix}/{size}/{concurrency}/{w}/{i}"
            await ds.put(k, value)
            written.append(k)
            counter += 1
            i += 1

    async def timed(worker) -> tuple[int, float]:  # type: ignore[no-untyped-def]
        nonlocal counter
        counter = 0
        t0 = time.perf_counter()
        with trio.move_on_after(seconds):
            async with trio.open_nursery() as n:
                for w in range(concurrency):
                    n.start_soon(worker, w)
        return counter, time.perf_counter() - t0

    puts, put_s = await timed(put_worker)
    keys = list(written)

    async def get_worker(w: int) -> None:
        nonlocal counter
        i = w
        while True:
            got = await ds.get(keys[i % len(keys)])
            assert len(got) == size
            counter += 1
            i += concurrency

    gets, get_s = await timed(get_worker)
    return [Result(what, "put", size, concurrency, puts, put_s),
            Result(what, "get", size, concurrency, gets, get_s)]

"""Key-value throughput of any Datastore: a local store or the whole cluster.

Each measurement runs ``concurrency`` requester tasks for a fixed wall-clock window and
counts completed operations, so slow and fast configurations take the same time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import trio

from dscluster.datastore import Datastore


def verdict(value: float, target: float | None, *, at_most: bool = False) -> str:
    """`` (target >= T: met)`` or ``NOT met`` (``<=`` with ``at_most``); nothing without
    a target."""
    if target is None:
        return ""
    met = value <= target if at_most else value >= target
    return f" (target {'<=' if at_most else '>='} {target:.2f}: {'met' if met else 'NOT met'})"


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


async def _timed(concurrency: int, seconds: float,
                 worker: Callable[[int, Callable[[], None]], Awaitable[None]]) -> Result:
    """``concurrency`` workers for ``seconds``, and past it until one operation is done
    (on a loaded machine a short window may otherwise count none, and the gets that
    follow a put window need a key); each calls its ``done`` per operation. The
    Result's labels are filled in by the caller."""
    count = 0
    first = trio.Event()

    def done() -> None:
        nonlocal count
        count += 1
        first.set()

    t0 = time.perf_counter()
    async with trio.open_nursery() as n:
        for w in range(concurrency):
            n.start_soon(worker, w, done)
        await trio.sleep(seconds)
        await first.wait()
        n.cancel_scope.cancel()
    return Result("", "", 0, concurrency, count, time.perf_counter() - t0)


async def put_window(ds: Datastore, what: str, size: int, concurrency: int,
                     seconds: float, prefix: str) -> tuple[Result, list[str]]:
    """Puts of new keys for ``seconds``: the result and the keys written."""
    value = os.urandom(size)
    written: list[str] = []

    async def worker(w: int, done: Callable[[], None]) -> None:
        i = 0
        while True:
            k = f"{prefix}/{size}/{concurrency}/{w}/{i}"
            await ds.put(k, value)
            written.append(k)
            done()
            i += 1

    r = await _timed(concurrency, seconds, worker)
    return replace(r, what=what, op="put", size=size), list(written)


async def get_window(ds: Datastore, what: str, keys: list[str], size: int,
                     concurrency: int, seconds: float) -> Result:
    """Gets of ``keys`` (of ``size`` bytes each), round robin, for ``seconds``."""
    async def worker(w: int, done: Callable[[], None]) -> None:
        i = w
        while True:
            got = await ds.get(keys[i % len(keys)])
            assert len(got) == size
            done()
            i += concurrency

    r = await _timed(concurrency, seconds, worker)
    return replace(r, what=what, op="get", size=size)


async def run_kv(ds: Datastore, what: str, size: int, concurrency: int,
                 seconds: float, prefix: str) -> list[Result]:
    """A put window, then a get window over the keys it wrote."""
    put, keys = await put_window(ds, what, size, concurrency, seconds, prefix)
    return [put, await get_window(ds, what, keys, size, concurrency, seconds)]

"""Bounded concurrency for block reads and writes.

Theory of operation: a ``Window`` runs block writes as tasks in a caller-owned nursery,
at most ``limit`` at a time; ``start`` waits for a free slot, which is the back-pressure
that keeps an import's memory flat (at most ``limit`` blocks in flight, whatever the file
size). ``open_prefetch`` fetches a known sequence of items ahead of a consumer that takes
them strictly in order, holding at most ``limit`` fetched-or-in-flight results.

Both live in dscluster.concurrency's nurseries, which fail with the first real error
rather than an exception group: callers of this package expect one DSClusterError (the
CLI prints it as one line, the S3 gateway maps its class).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import trio

from ..concurrency import open_nursery

T = TypeVar("T")
R = TypeVar("R")


class Window:
    """Runs jobs in a nursery with at most ``limit`` of them running."""

    def __init__(self, nursery: trio.Nursery, limit: int) -> None:
        self._nursery = nursery
        self._slots = trio.Semaphore(limit)

    async def start(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        await self._slots.acquire()
        self._nursery.start_soon(self._run, fn, args)

    async def _run(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        finally:
            self._slots.release()


@asynccontextmanager
async def open_window(limit: int) -> AsyncIterator[Window]:
    """A Window whose jobs have all finished when the block exits."""
    async with open_nursery() as nursery:
        yield Window(nursery, limit)


class Prefetch(Generic[T, R]):
    """``(item, fetch(item))`` for each of ``items``, fetched ahead, handed out in order."""

    def __init__(
        self,
        nursery: trio.Nursery,
        items: Sequence[T],
        fetch: Callable[[T], Awaitable[R]],
        limit: int,
    ) -> None:
        self._nursery = nursery
        self._items = items
        self._fetch = fetch
        self._slots = trio.Semaphore(limit)
        self._ready = [trio.Event() for _ in items]
        self._results: dict[int, R] = {}
        self._next = 0

    async def _feed(self) -> None:
        for i, item in enumerate(self._items):
            await self._slots.acquire()  # released when the consumer takes result i
            self._nursery.start_soon(self._fetch_one, i, item)

    async def _fetch_one(self, i: int, item: T) -> None:
        self._results[i] = await self._fetch(item)
        self._ready[i].set()

    def __aiter__(self) -> Prefetch[T, R]:
        return self

    async def __anext__(self) -> tuple[T, R]:
        i = self._next
        if i == len(self._items):
            raise StopAsyncIteration
        await self._ready[i].wait()
        self._next = i + 1
        self._slots.release()
        return self._items[i], self._results.pop(i)


@asynccontextmanager
async def open_prefetch(
    items: Sequence[T], fetch: Callable[[T], Awaitable[R]], limit: int
) -> AsyncIterator[Prefetch[T, R]]:
    """Iterate (item, result) in order while later items are being fetched.

    Leaving the block early cancels the fetches still running.
    """
    async with open_nursery() as nursery:
        prefetch = Prefetch(nursery, items, fetch, limit)
        nursery.start_soon(prefetch._feed)
        yield prefetch
        nursery.cancel_scope.cancel()

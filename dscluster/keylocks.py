"""Exclusive holds on sets of keys, for trio tasks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Hashable

import trio


class KeyLocks:
    """Exclusive holds on sets of keys, so that a check and the write it allowed cannot
    interleave with another write of the same key."""

    def __init__(self) -> None:
        self._held: set[Hashable] = set()
        self._released = trio.Event()

    @contextlib.asynccontextmanager
    async def hold(self, keys: Collection[Hashable]) -> AsyncIterator[None]:
        # all the keys at once or none, so two batches never wait for each other
        while not self._held.isdisjoint(keys):
            await self._released.wait()
        self._held.update(keys)
        try:
            yield
        finally:
            self._held.difference_update(keys)
            self._released.set()
            self._released = trio.Event()

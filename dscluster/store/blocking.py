"""Running a store's blocking calls (file I/O, plyvel, pymongo) from trio.

Every backend owns one ``BlockingCalls``: calls go to worker threads through one
``trio.CapacityLimiter`` (DEFAULT_THREADS, like flatfs's 16 concurrent fsyncs), the
backend's own exception types become a one-line ``StoreError``, and ``drain`` closes the
store by taking every token, so it returns only once no call is running and every later
call fails with "closed" instead of touching a closed database.

Thread calls are not cancellable (trio's default): a write that was started finishes and
its outcome is known, even if the caller is cancelled meanwhile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import trio

from ..errors import StoreError
from .base import DEFAULT_THREADS

T = TypeVar("T")

# the real bound is our own limiter; trio's default one (40 threads, process-wide) must not
# add a second, shared queue in front of it
_UNBOUNDED = trio.CapacityLimiter(math.inf)


class BlockingCalls:
    def __init__(
        self,
        what: str,
        errors: tuple[type[BaseException], ...],
        threads: int = DEFAULT_THREADS,
    ) -> None:
        self.what = what  # e.g. "flatfs store at /data/blocks", for messages
        self._errors = errors
        self._limiter = trio.CapacityLimiter(threads)
        self.closed = False

    def check_open(self) -> None:
        if self.closed:
            raise StoreError(f"{self.what} is closed")

    def error(self, exc: BaseException) -> StoreError:
        return StoreError(f"{self.what}: {exc}")

    def inline(self, fn: Callable[..., T], *args: object) -> T:
        """Call ``fn`` on the trio thread: for lookups measured faster than a thread hop."""
        self.check_open()
        try:
            return fn(*args)
        except self._errors as e:
            raise self.error(e) from e

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Call ``fn`` in a worker thread, at most ``threads`` at a time."""
        self.check_open()
        async with self._limiter:
            self.check_open()  # close() may have started while we queued
            try:
                return await trio.to_thread.run_sync(fn, *args, limiter=_UNBOUNDED)
            except self._errors as e:
                raise self.error(e) from e

    async def drain(self) -> bool:
        """Refuse new calls and wait for running ones; False if already closed."""
        if self.closed:
            return False
        self.closed = True
        for _ in range(int(self._limiter.total_tokens)):
            await self._limiter.acquire_on_behalf_of(object())
        return True

"""The local store interface every backend implements, and what they share.

A backend implements the primitive operations plus ``scan``: one bounded page of
key-ordered entries under a prefix. ``ScanQueryMixin`` builds go-datastore's ``query``
and ``batch`` on top of those primitives, pushing prefix, key order and keys-only into
``scan`` and leaving the rest to the naive engine (go-datastore's NaiveQueryApply).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..datastore import Batch, BatchOp
from ..errors import NotFound
from ..keys import prefix_bound, validate_key
from ..query import Entry, Query, anaive_query_apply, matches, seek_after

# flatfs's default of 16 concurrent fsyncs; also the worker-thread limit per store
DEFAULT_THREADS = 16
# what one ScanQueryMixin page asks a backend for
QUERY_PAGE_ENTRIES = 1000
QUERY_PAGE_BYTES = 4 << 20
# a scan page gives up after examining this many times `limit` keys (see Store.scan)
SCAN_EXAMINE_FACTOR = 10


@dataclass(frozen=True, slots=True)
class ScanPage:
    entries: list[Entry]
    # Where the next page starts (pass as start_after): the last key the scan examined,
    # which with a predicate may be past the last entry returned. None is the explicit
    # end marker: nothing is left under the prefix.
    cursor: str | None


Predicate = Callable[[Entry], bool]


@runtime_checkable
class Store(Protocol):
    """A node's local store (flatfs, leveldb, mongo, memory)."""

    kind: str

    async def get(self, key: str) -> bytes: ...
    async def has(self, key: str) -> bool: ...
    async def get_size(self, key: str) -> int: ...
    async def put(self, key: str, value: bytes) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def apply(self, ops: Sequence[BatchOp]) -> None: ...

    async def scan(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        reverse: bool = False,
        limit: int = QUERY_PAGE_ENTRIES,
        max_bytes: int = QUERY_PAGE_BYTES,
        keys_only: bool = False,
        predicate: Predicate | None = None,
    ) -> ScanPage:
        """Up to ``limit`` entries whose keys are strict descendants of ``prefix`` (every
        key for "/"), in key order (descending if ``reverse``), strictly after
        ``start_after`` in that order, that satisfy ``predicate``. Every entry carries its
        size; values are omitted when ``keys_only``. A page stops early once its values
        reach ``max_bytes`` but always holds at least one entry if any is left."""
        ...

    async def count(self) -> int:
        """Number of keys stored."""
        ...

    async def keys_in_slot(self, slot: int) -> list[str]:
        """Every key stored whose ``slot_of`` is ``slot``, in key order (slot migration)."""
        ...

    async def sync(self, prefix: str = "/") -> None: ...
    async def disk_usage(self) -> int: ...
    async def close(self) -> None: ...


class ScanQueryMixin:
    """``scan`` for any sorted backend, and go-datastore ``query`` and ``batch`` on top.

    A backend supplies ``_scan_items``: its entries within a KeyRange, in order, as
    ``(key, size, value or loader)``. Paging, cursors and the examine bound are the same
    everywhere because ``page_from_items`` does them, once, here."""

    def _scan_items(
        self, r: KeyRange, *, reverse: bool, keys_only: bool, limit: int
    ) -> AbstractContextManager[Iterable[tuple[str, int, ValueSource]]]:
        raise NotImplementedError  # pragma: no cover - interface

    async def _run_scan(self, page: Callable[[], ScanPage]) -> ScanPage:
        """Where a page is built: inline here; blocking backends use their workers."""
        return page()

    async def scan(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        reverse: bool = False,
        limit: int = QUERY_PAGE_ENTRIES,
        max_bytes: int = QUERY_PAGE_BYTES,
        keys_only: bool = False,
        predicate: Predicate | None = None,
    ) -> ScanPage:
        r = scan_range(prefix, start_after, reverse)
        if r is None:
            return ScanPage([], None)

        def page() -> ScanPage:
            with self._scan_items(r, reverse=reverse, keys_only=keys_only,
                                  limit=limit) as items:
                return page_from_items(items, limit=limit, max_bytes=max_bytes,
                                       keys_only=keys_only, predicate=predicate)

        return await self._run_scan(page)

    async def apply(self, ops: Sequence[BatchOp]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    async def put(self, key: str, value: bytes) -> None:
        await self.apply([BatchOp(key, value)])

    async def delete(self, key: str) -> None:
        await self.apply([BatchOp(key, None)])

    def batch(self) -> Batch:
        return Batch(self.apply)

    async def query(self, q: Query) -> AsyncIterator[Entry]:
        order = q.key_ordered()
        reverse = order == "-key"
        entries = scan_all(
            self,
            q.clean_prefix,
            start_after=seek_after(q, reverse) if order else None,
            reverse=reverse,
            keys_only=not q.needs_values(),
            predicate=(lambda e: matches(q, e)) if q.filters else None,
        )
        async with contextlib.aclosing(entries):
            async for e in anaive_query_apply(q, entries, presorted=order is not None):
                yield e


async def scan_all(
    store: ScanQueryMixin | Store,
    prefix: str,
    *,
    start_after: str | None = None,
    reverse: bool = False,
    keys_only: bool = False,
    predicate: Predicate | None = None,
) -> AsyncIterator[Entry]:
    """Every entry under ``prefix`` (after ``start_after``), page by page, in key order."""
    after = start_after
    while True:
        page = await store.scan(
            prefix, start_after=after, reverse=reverse, keys_only=keys_only, predicate=predicate
        )
        for e in page.entries:
            yield e
        if page.cursor is None:
            return
        after = page.cursor


ValueSource = bytes | Callable[[], bytes]


def checked_ops(ops: Sequence[BatchOp]) -> list[tuple[str, bytes | None]]:
    """A batch's operations with clean keys and values as immutable bytes (every write
    path starts here, so a bad key refuses the whole batch before anything is written)."""
    return [(validate_key(op.key), None if op.value is None else bytes(op.value))
            for op in ops]


def page_from_items(
    items: Iterable[tuple[str, int, ValueSource]],
    *,
    limit: int,
    max_bytes: int,
    keys_only: bool,
    predicate: Predicate | None,
) -> ScanPage:
    """Build one scan page from ``(key, size, value or loader)`` in scan order.

    Every backend's ``scan`` is a sorted iterator fed to this, so page limits, the
    examine bound and cursors behave the same everywhere. A loader is only called when
    the value is needed (not keys-only); a value that vanished between listing and
    loading (NotFound) is skipped, as a concurrent delete would have been.
    """
    entries: list[Entry] = []
    used = examined = 0
    budget = SCAN_EXAMINE_FACTOR * max(limit, 1)
    last: str | None = None
    for key, size, source in items:
        if len(entries) >= limit or (entries and used >= max_bytes) or examined >= budget:
            return ScanPage(entries, last)
        examined += 1
        last = key
        value: bytes | None = None
        if not keys_only:
            if callable(source):
                try:
                    value = source()
                except NotFound:
                    continue
            else:
                value = source
            size = len(value)
        e = Entry(key, value, size)
        if predicate is not None and not predicate(e):
            continue
        entries.append(e)
        used += size if value is not None else 0
    return ScanPage(entries, None)


def in_prefix_range(prefix: str) -> tuple[str, str | None]:
    """(lowest, highest-exclusive) strings bounding the strict descendants of prefix.

    None as the upper bound means unbounded. Used by sorted backends to seek.
    """
    bound = prefix_bound(prefix)
    if not bound:
        return "", None
    # '/' + 1 == '0': every key under "bound" sorts before bound[:-1] + "0"
    return bound, bound[:-1] + "0"


@dataclass(frozen=True, slots=True)
class KeyRange:
    """The keys one scan visits: ``low`` (inclusive or not) up to ``high`` (exclusive,
    None = unbounded), ascending or descending. Sorted backends seek with it."""

    low: str
    low_inclusive: bool
    high: str | None


def scan_range(prefix: str, start_after: str | None, reverse: bool) -> KeyRange | None:
    """The KeyRange of ``Store.scan(prefix, start_after=..., reverse=...)``; None if empty.

    Python's str order is code point order, which equals the byte order of UTF-8, so the
    same bounds work on str keys (memory, mongo) and on UTF-8 bytes (LevelDB).
    """
    low, high = in_prefix_range(prefix)
    if start_after is None:
        return KeyRange(low, True, high)
    if reverse:
        if start_after <= low:
            return None
        return KeyRange(low, True, start_after if high is None else min(high, start_after))
    if high is not None and start_after >= high:
        return None
    if start_after < low:
        return KeyRange(low, True, high)
    return KeyRange(start_after, False, high)

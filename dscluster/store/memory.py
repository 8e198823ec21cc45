"""In-memory store for tests: a dict plus a sorted key list."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from ..datastore import BatchOp
from ..errors import NotFound
from .base import (
    QUERY_PAGE_BYTES,
    QUERY_PAGE_ENTRIES,
    Predicate,
    ScanPage,
    ScanQueryMixin,
    in_prefix_range,
    page_from_items,
)


class MemoryStore(ScanQueryMixin):
    kind = "memory"

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}
        self._keys: list[str] = []

    async def get(self, key: str) -> bytes:
        try:
            return self._values[key]
        except KeyError:
            raise NotFound(f"key not found: {key}") from None

    async def has(self, key: str) -> bool:
        return key in self._values

    async def get_size(self, key: str) -> int:
        return len(await self.get(key))

    def _put(self, key: str, value: bytes) -> None:
        if key not in self._values:
            bisect.insort(self._keys, key)
        self._values[key] = bytes(value)

    def _delete(self, key: str) -> None:
        if self._values.pop(key, None) is not None:
            del self._keys[bisect.bisect_left(self._keys, key)]

    async def put(self, key: str, value: bytes) -> None:
        self._put(key, value)

    async def delete(self, key: str) -> None:
        self._delete(key)

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        for op in ops:
            if op.value is None:
                self._delete(op.key)
            else:
                self._put(op.key, op.value)

    def _ordered(self, prefix: str, start_after: str | None, reverse: bool) -> Iterator[str]:
        lo, hi = in_prefix_range(prefix)
        if reverse:
            end = len(self._keys) if hi is None else bisect.bisect_left(self._keys, hi)
            if start_after is not None:
                end = min(end, bisect.bisect_left(self._keys, start_after))
            start = bisect.bisect_left(self._keys, lo)
            return reversed(self._keys[start:end])
        start = bisect.bisect_left(self._keys, lo)
        if start_after is not None:
            start = max(start, bisect.bisect_right(self._keys, start_after))
        end = len(self._keys) if hi is None else bisect.bisect_left(self._keys, hi)
        return iter(self._keys[start:end])

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
        items = (
            (k, len(self._values[k]), self._values[k])
            for k in self._ordered(prefix, start_after, reverse)
        )
        return page_from_items(
            items, limit=limit, max_bytes=max_bytes, keys_only=keys_only, predicate=predicate
        )

    async def count(self) -> int:
        return len(self._values)

    async def sync(self, prefix: str = "/") -> None:
        return None

    async def disk_usage(self) -> int:
        return sum(len(v) for v in self._values.values())

    async def close(self) -> None:
        return None

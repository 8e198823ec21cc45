"""In-memory store for tests: a dict plus a sorted key list."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from ..datastore import BatchOp
from ..errors import NotFound
from ..keys import slot_of, validate_key
from .base import (
    QUERY_PAGE_BYTES,
    QUERY_PAGE_ENTRIES,
    Predicate,
    ScanPage,
    ScanQueryMixin,
    page_from_items,
    scan_range,
)


class MemoryStore(ScanQueryMixin):
    kind = "memory"

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}
        self._keys: list[str] = []

    async def get(self, key: str) -> bytes:
        k = validate_key(key)
        try:
            return self._values[k]
        except KeyError:
            raise NotFound(f"key not found: {k}") from None

    async def has(self, key: str) -> bool:
        return validate_key(key) in self._values

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
        self._put(validate_key(key), value)

    async def delete(self, key: str) -> None:
        self._delete(validate_key(key))

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        checked = [(validate_key(op.key), op.value) for op in ops]
        for key, value in checked:
            if value is None:
                self._delete(key)
            else:
                self._put(key, value)

    def _ordered(self, prefix: str, start_after: str | None, reverse: bool) -> Iterator[str]:
        r = scan_range(prefix, start_after, reverse)
        if r is None:
            return iter(())
        find = bisect.bisect_left if r.low_inclusive else bisect.bisect_right
        start = find(self._keys, r.low)
        end = len(self._keys) if r.high is None else bisect.bisect_left(self._keys, r.high)
        window = self._keys[start:end]
        return reversed(window) if reverse else iter(window)

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

    async def keys_in_slot(self, slot: int) -> list[str]:
        return [k for k in self._keys if slot_of(k) == slot]

    async def sync(self, prefix: str = "/") -> None:
        return None

    async def disk_usage(self) -> int:
        return sum(len(v) for v in self._values.values())

    async def close(self) -> None:
        return None

"""In-memory store for tests: a dict plus a sorted key list."""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterable, Sequence

from ..datastore import BatchOp
from ..errors import NotFound
from ..keys import slot_of, validate_key
from .base import (
    KeyRange,
    ScanQueryMixin,
    checked_ops,
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

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        for key, value in checked_ops(ops):
            if value is None:
                self._delete(key)
            else:
                self._put(key, value)

    def _scan_items(self, r: KeyRange, *, reverse: bool, keys_only: bool,
                    limit: int) -> contextlib.nullcontext[Iterable[tuple[str, int, bytes]]]:
        find = bisect.bisect_left if r.low_inclusive else bisect.bisect_right
        start = find(self._keys, r.low)
        end = len(self._keys) if r.high is None else bisect.bisect_left(self._keys, r.high)
        window = self._keys[start:end]
        keys = reversed(window) if reverse else window
        return contextlib.nullcontext((k, len(self._values[k]), self._values[k]) for k in keys)

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

"""A datastore seen through a key prefix (go-datastore's namespace wrapper).

Every key ``k`` is stored as ``prefix + k``; results come back without the prefix.
Queries are translated exactly rather than filtered afterwards: key comparisons and key
prefixes gain the same prefix, which keeps their meaning because every key in the
namespace shares it, so the backend still pushes everything down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from .datastore import Batch, BatchOp, Datastore
from .keys import Key
from .query import Entry, Filter, FilterKeyCompare, FilterKeyPrefix, Query


class NamespacedDatastore:
    def __init__(self, inner: Datastore, prefix: str) -> None:
        self.inner = inner
        self.prefix = Key(prefix)
        if self.prefix == "/":
            raise ValueError("a namespace needs a non-root prefix")

    def _in(self, key: str) -> str:
        k = Key(key)
        return self.prefix if k == "/" else self.prefix + k

    def _out(self, key: str) -> str:
        return Key.from_clean(key[len(self.prefix):] or "/")

    def _filter(self, f: Filter) -> Filter:
        if isinstance(f, FilterKeyCompare):
            return FilterKeyCompare(f.op, self.prefix + f.key)
        if isinstance(f, FilterKeyPrefix):
            return FilterKeyPrefix(self.prefix + f.prefix)
        return f

    async def get(self, key: str) -> bytes:
        return await self.inner.get(self._in(key))

    async def has(self, key: str) -> bool:
        return await self.inner.has(self._in(key))

    async def get_size(self, key: str) -> int:
        return await self.inner.get_size(self._in(key))

    async def put(self, key: str, value: bytes) -> None:
        await self.inner.put(self._in(key), value)

    async def delete(self, key: str) -> None:
        await self.inner.delete(self._in(key))

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        await self.inner.apply([BatchOp(self._in(op.key), op.value) for op in ops])

    def batch(self) -> Batch:
        return Batch(self.apply)

    async def query(self, q: Query) -> AsyncIterator[Entry]:
        inner_q = replace(q, prefix=self._in(q.clean_prefix),
                          filters=tuple(self._filter(f) for f in q.filters))
        async for e in self.inner.query(inner_q):
            yield Entry(self._out(e.key), e.value, e.size)

    async def sync(self, prefix: str = "/") -> None:
        await self.inner.sync(self._in(prefix))

    async def disk_usage(self) -> int:
        return await self.inner.disk_usage()

    async def close(self) -> None:
        return None

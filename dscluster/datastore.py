"""The go-datastore-shaped interface shared by local stores and the cluster client.

Everything above the store layer (the node server, the UnixFS importer, the S3
gateway) is written against ``Datastore``; a local store and the whole cluster are
interchangeable behind it, which is also how one conformance suite covers both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .keys import Key
from .query import Entry, Query


@dataclass(frozen=True, slots=True)
class BatchOp:
    """A put (value is bytes) or a delete (value is None) of one key."""

    key: str
    value: bytes | None


@runtime_checkable
class Datastore(Protocol):
    async def get(self, key: str) -> bytes:
        """The value; raises NotFound."""

    async def has(self, key: str) -> bool: ...

    async def get_size(self, key: str) -> int:
        """The value's size in bytes; raises NotFound."""

    async def put(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None:
        """Deleting a missing key is not an error (go-datastore)."""

    def query(self, q: Query) -> AsyncIterator[Entry]: ...

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        """Apply a batch; ``ops`` have distinct keys."""

    def batch(self) -> Batch: ...

    async def sync(self, prefix: str = "/") -> None: ...

    async def disk_usage(self) -> int: ...

    async def close(self) -> None: ...


class Batch:
    """Operations buffered until ``commit``; the last operation on a key wins."""

    def __init__(self, apply: Callable[[Sequence[BatchOp]], Awaitable[None]]) -> None:
        self._apply = apply
        self._ops: dict[str, BatchOp] = {}

    def put(self, key: str, value: bytes) -> None:
        k = Key(key)
        self._ops.pop(k, None)  # re-insert so the op order is the order of last writes
        self._ops[k] = BatchOp(k, bytes(value))

    def delete(self, key: str) -> None:
        k = Key(key)
        self._ops.pop(k, None)
        self._ops[k] = BatchOp(k, None)

    def __len__(self) -> int:
        return len(self._ops)

    async def commit(self) -> None:
        ops = list(self._ops.values())
        self._ops.clear()
        if ops:
            await self._apply(ops)

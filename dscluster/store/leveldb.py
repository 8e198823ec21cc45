"""The LevelDB store (plyvel): values inline, in key order.

Records (see ``ldb``): ``k`` + UTF-8 key -> the value; ``s`` + slot + key -> empty (the
per-slot index); ``m`` + "version". A put or a batch is one atomic ``WriteBatch``, written
with LevelDB's ``sync`` (the log is fsynced before the write returns) when the store's
``sync`` is on. Without it the write is still handed to the OS before it returns (LevelDB
flushes its log buffer on every write), so a kill -9 of the process loses nothing
acknowledged; a machine crash may lose the last writes.

Key order is the byte order of the UTF-8 keys, which is Python's str order, so a scan is
one LevelDB iterator over a ``KeyRange``. Every call runs in a worker thread: values may be
large and a LevelDB write may stall behind a compaction, which must not block trio.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import plyvel
import trio

from ..datastore import BatchOp
from ..errors import NotFound
from ..keys import slot_of, validate_key
from . import ldb
from .base import (
    DEFAULT_THREADS,
    KeyRange,
    ScanPage,
    ScanQueryMixin,
    ValueSource,
    checked_ops,
)
from .blocking import BlockingCalls

VERSION = b"1"
_VERSION = ldb.meta_record("version")


class LevelDBStore(ScanQueryMixin):
    kind = "leveldb"

    def __init__(self, db: plyvel.DB, path: Path, *, sync: bool, threads: int) -> None:
        self.path = path
        self._db = db
        self._sync = sync
        self._calls = BlockingCalls(f"leveldb store at {path}", (plyvel.Error,), threads)

    @classmethod
    async def open(
        cls, path: Path, *, sync: bool = True, threads: int = DEFAULT_THREADS
    ) -> LevelDBStore:
        """Open (creating) the LevelDB in directory ``path``."""
        path = Path(path)
        return await trio.to_thread.run_sync(cls._open, path, sync, threads)

    @classmethod
    def _open(cls, path: Path, sync: bool, threads: int) -> LevelDBStore:
        db = ldb.open_versioned(path, f"leveldb store at {path}", VERSION)
        return cls(db, path, sync=sync, threads=threads)

    async def close(self) -> None:
        if await self._calls.drain():
            await trio.to_thread.run_sync(self._db.close)

    async def get(self, key: str) -> bytes:
        k = validate_key(key)
        value = await self._calls.run(self._db.get, ldb.key_record(k))
        if value is None:
            raise NotFound(f"key not found: {k}")
        return value

    async def has(self, key: str) -> bool:
        k = validate_key(key)
        # the slot record is tiny (no value is read), and a plyvel get measured 0.9 µs
        # inline against 200 µs through a worker thread: look it up on the trio thread
        return self._calls.inline(self._db.get, ldb.slot_record(slot_of(k), k)) is not None

    async def get_size(self, key: str) -> int:
        return len(await self.get(key))

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        checked = checked_ops(ops)
        if checked:
            await self._calls.run(self._write, checked)

    def _write(self, ops: list[tuple[str, bytes | None]]) -> None:
        with self._db.write_batch(sync=self._sync) as wb:
            for key, value in ops:
                slot = ldb.slot_record(slot_of(key), key)
                if value is None:
                    wb.delete(ldb.key_record(key))
                    wb.delete(slot)
                else:
                    wb.put(ldb.key_record(key), value)
                    wb.put(slot, b"")

    @contextlib.contextmanager
    def _scan_items(self, r: KeyRange, *, reverse: bool, keys_only: bool,
                    limit: int) -> Iterator[Iterable[tuple[str, int, ValueSource]]]:
        # values are inline: reading them is what gives the sizes anyway
        with ldb.iter_keys_in_range(self._db, r, reverse=reverse, include_value=True) as it:
            yield ((ldb.key_of(rec), len(v), v) for rec, v in it)

    async def _run_scan(self, page: Callable[[], ScanPage]) -> ScanPage:
        return await self._calls.run(page)

    async def keys_in_slot(self, slot: int) -> list[str]:
        return await self._calls.run(ldb.keys_in_slot, self._db, slot)

    async def count(self) -> int:
        """Counted by walking the slot index: O(keys), but reads no values."""
        return await self._calls.run(ldb.count_keys, self._db)

    async def disk_usage(self) -> int:
        """Bytes of the LevelDB files (compressed, including not yet compacted data)."""
        return await self._calls.run(_dir_size, self.path)

    async def sync(self, prefix: str = "/") -> None:
        # a synced write fsyncs LevelDB's log, which holds every earlier write too
        if not self._sync:
            await self._calls.run(lambda: self._db.put(_VERSION, VERSION, sync=True))


def _dir_size(path: Path) -> int:
    total = 0
    with os.scandir(path) as it:
        for e in it:
            with contextlib.suppress(FileNotFoundError):  # a compaction removed it
                if e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
    return total

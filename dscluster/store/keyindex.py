"""flatfs's key index: a LevelDB (plyvel) that lists a flatfs tree in key order.

Theory of operation. The tree is the truth; the index is a cache of it that can always
be rebuilt from the tree alone. It holds, in the families of ``ldb``:

- ``k`` + key -> the value's size (8 bytes big-endian): sorted listing, sizes without a
  stat, prefix and range scans;
- ``s`` + slot + key: the keys of each hash slot, for slot migration;
- ``m`` meta: ``version``; ``dirty`` (present while a store has the index open);
  ``count``, ``bytes`` and ``fingerprint`` (written on clean close).

The writer keeps one rule: the value file is durable first, then the index is updated
(a delete unlinks first, then updates the index). The ``dirty`` marker is written with
sync when the store opens and removed on clean close, so after any unclean stop — a
kill -9 or a machine crash — the next open sees it and reconciles: entries whose file is
gone are dropped, files without an entry are added. Hence index writes themselves need
no fsync: whatever they lose, reconciliation restores, and after recovery the index never
points at a value that is not there.

The ``fingerprint`` (a digest of the tree's top-level entries: shard directories and
diskUsage.cache, with inode and mtime) detects a tree changed while we were closed, e.g.
by go-ds-flatfs or Kubo; adding or removing a file changes its shard directory's mtime.
"""

from __future__ import annotations

import logging
import shutil
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import plyvel

from ..keys import slot_of
from . import ldb
from .base import KeyRange

log = logging.getLogger(__name__)

VERSION = b"1"
_SIZE = struct.Struct(">Q")
# reconciliation commits its fixes in batches of this many records
_FLUSH_EVERY = 10_000

_DIRTY = ldb.meta_record("dirty")
_VERSION = ldb.meta_record("version")
_COUNT = ldb.meta_record("count")
_BYTES = ldb.meta_record("bytes")
_FINGERPRINT = ldb.meta_record("fingerprint")


class KeyIndex:
    def __init__(self, db: plyvel.DB) -> None:
        self._db = db
        # guards the counters together with the index records they summarise
        self._lock = threading.Lock()
        self.count = 0
        self.bytes = 0

    @classmethod
    def open(cls, path: Path, what: str) -> KeyIndex:
        """Open or create the index; a corrupt one is deleted and starts empty (it is
        rebuilt from the tree, see ``stale_reason``)."""
        try:
            return cls(ldb.open_leveldb(path, what))
        except plyvel.CorruptionError as e:
            log.warning("%s is corrupt (%s); rebuilding it from the tree", what, e)
            shutil.rmtree(path)
            return cls(ldb.open_leveldb(path, what))

    # --- open / close -------------------------------------------------------------

    def stale_reason(self, fingerprint: bytes) -> str | None:
        """Why the index cannot be trusted as is, or None (then counters are loaded)."""
        version = self._db.get(_VERSION)
        if version != VERSION:
            if version is not None:
                self._wipe()
            return "rebuild"
        if self._db.get(_DIRTY) is not None:
            return "dirty"
        count, size = self._db.get(_COUNT), self._db.get(_BYTES)
        if self._db.get(_FINGERPRINT) != fingerprint or count is None or size is None:
            return "changed"
        self.count, self.bytes = _SIZE.unpack(count)[0], _SIZE.unpack(size)[0]
        return None

    def mark_dirty(self) -> None:
        with self._db.write_batch(sync=True) as wb:
            wb.put(_VERSION, VERSION)
            wb.put(_DIRTY, b"")

    def close_clean(self, fingerprint: bytes) -> None:
        """Record the counters and the tree's fingerprint, clear ``dirty``, close."""
        with self._lock, self._db.write_batch(sync=True) as wb:
            wb.put(_COUNT, _SIZE.pack(self.count))
            wb.put(_BYTES, _SIZE.pack(self.bytes))
            wb.put(_FINGERPRINT, fingerprint)
            wb.delete(_DIRTY)
        self._db.close()

    def close(self) -> None:
        """Close without marking clean (the next open reconciles)."""
        self._db.close()

    # --- reads ---------------------------------------------------------------------

    def size(self, key: str) -> int | None:
        raw = self._db.get(ldb.key_record(key))
        return None if raw is None else _SIZE.unpack(raw)[0]

    def items(self, r: KeyRange, *, reverse: bool) -> Iterator[tuple[str, int]]:
        """(key, size) in ``r``; close the generator to release the LevelDB iterator."""
        with ldb.iter_keys_in_range(self._db, r, reverse=reverse, include_value=True) as it:
            for record, raw in it:
                yield ldb.key_of(record), _SIZE.unpack(raw)[0]

    def keys_in_slot(self, slot: int) -> list[str]:
        return ldb.keys_in_slot(self._db, slot)

    # --- writes --------------------------------------------------------------------

    def apply(self, changes: Iterable[tuple[str, int | None]]) -> None:
        """Record puts (key, size) and deletes (key, None) that are already on disk.

        The caller serialises changes of one key (flatfs's key locks), so the size read
        here is the one the change replaces.
        """
        with self._lock, self._db.write_batch() as wb:
            for key, size in changes:
                before = self.size(key)
                if size is None:
                    if before is not None:
                        wb.delete(ldb.key_record(key))
                        wb.delete(ldb.slot_record(slot_of(key), key))
                        self.count -= 1
                        self.bytes -= before
                    continue
                wb.put(ldb.key_record(key), _SIZE.pack(size))
                if before is None:
                    wb.put(ldb.slot_record(slot_of(key), key), b"")
                    self.count += 1
                    before = 0
                self.bytes += size - before

    def reconcile(
        self, tree: Iterable[tuple[str, int]], exists: Callable[[str], bool]
    ) -> tuple[int, int]:
        """Make the index match the tree; returns (entries added or fixed, dropped).

        ``tree`` yields every (key, size) stored in the tree, ``exists`` says whether a
        key's file is there. Memory use stays flat: neither side is loaded whole.
        """
        dropped = added = 0
        wb = self._db.write_batch()
        with self._db.iterator(prefix=ldb.KEY, include_value=False) as it:
            for record in it:
                key = ldb.key_of(record)
                if not exists(key):
                    wb.delete(record)
                    wb.delete(ldb.slot_record(slot_of(key), key))
                    dropped += 1
                    wb = self._flush_every(wb, dropped)
        wb.write()
        count = total = 0
        wb = self._db.write_batch()
        for key, size in tree:
            count += 1
            total += size
            if self.size(key) != size:
                wb.put(ldb.key_record(key), _SIZE.pack(size))
                wb.put(ldb.slot_record(slot_of(key), key), b"")
                added += 1
                wb = self._flush_every(wb, added)
        wb.write()
        self.count, self.bytes = count, total
        return added, dropped

    def _flush_every(self, wb: plyvel.WriteBatch, n: int) -> plyvel.WriteBatch:
        if n % _FLUSH_EVERY:
            return wb
        wb.write()
        return self._db.write_batch()

    def _wipe(self) -> None:
        """Drop every record (an index of another format version is just a cache)."""
        wb = self._db.write_batch()
        with self._db.iterator(include_value=False) as it:
            for n, record in enumerate(it, 1):
                wb.delete(record)
                wb = self._flush_every(wb, n)
        wb.write()

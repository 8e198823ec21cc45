"""flatfs's key index: a LevelDB (plyvel) that lists a flatfs tree in key order.

Theory of operation. The tree is the truth; the index is a cache of it that can always
be rebuilt from the tree alone. It holds, in the families of ``ldb`` and its own ``j``:

- ``k`` + key -> the value's size (8 bytes big-endian): sorted listing, sizes without a
  stat, prefix and range scans;
- ``s`` + slot + key: the keys of each hash slot, for slot migration;
- ``j`` + key: the journal, keys whose files a write may be changing right now;
- ``m`` meta: ``version``; ``dirty`` (present while a store has the index open, its
  value the machine's boot id); ``count`` and ``bytes`` (rewritten with every change,
  in the same write batch); ``fingerprint`` (written on clean close).

The writer keeps one rule: a key is journalled before its file changes (rename or
unlink), and the journal record is removed in the write batch that records the change
in ``k``/``s`` and the counters. The ``dirty`` marker is written with sync when the
store opens and removed on clean close, so after any unclean stop the next open sees it
and reconciles. Index writes themselves are not fsynced, so what they promise depends on
how the process stopped:

- the process died (kill -9) and the machine kept running — the boot id in ``dirty`` is
  the current one: LevelDB hands every write to the kernel before it returns, so every
  index write made survives, whole batches or nothing. Only the journalled keys can
  disagree with the tree; each is stat'ed and fixed, and the counters are exact as they
  are (``"journal"``);
- the machine crashed, or the boot id is unknown: unsynced index writes may be lost, so
  the whole tree is walked: entries whose file is gone are dropped, files without an
  entry are added (``"dirty"``).

Either way, after recovery the index never points at a value that is not there.

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

# The journal, the boot id and the counters kept current came without a new version: an
# index written before them leaves ``dirty`` empty (boot id unknown), so its next open
# after an unclean stop walks the tree as it always did, and one written since is still
# valid for that older code, which ignores ``j`` records and rewrites what it needs.
VERSION = b"1"
_SIZE = struct.Struct(">Q")
# reconciliation commits its fixes in batches of this many records
_FLUSH_EVERY = 10_000

_DIRTY = ldb.meta_record("dirty")
_VERSION = ldb.meta_record("version")
_COUNT = ldb.meta_record("count")
_BYTES = ldb.meta_record("bytes")
_FINGERPRINT = ldb.meta_record("fingerprint")
# the journal's family (flatfs's alone, so it is not in ldb): ``j`` + UTF-8 key -> empty
_JOURNAL = b"j"
_BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> bytes:
    """The running kernel's boot id, b"" if unknown (not Linux): ``dirty`` holding
    another one means the machine restarted since, and unsynced writes may be lost."""
    try:
        return _BOOT_ID_FILE.read_bytes().strip()
    except OSError:
        return b""


def _journal_record(key: str) -> bytes:
    return _JOURNAL + key.encode()


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
        """Why the index cannot be trusted as is, or None: "rebuild", "journal" (only
        the journalled keys need a look, see ``replay_journal``), "dirty" or "changed"
        (the tree must be walked, see ``reconcile``). For None and "journal" the
        counters are loaded."""
        version = self._db.get(_VERSION)
        if version != VERSION:
            if version is not None:
                self._wipe()
            return "rebuild"
        dirty = self._db.get(_DIRTY)
        counted = self._load_counters()
        if dirty is not None:
            return "journal" if dirty and dirty == boot_id() and counted else "dirty"
        if self._db.get(_FINGERPRINT) != fingerprint or not counted:
            return "changed"
        return None

    def mark_dirty(self) -> None:
        """Set ``dirty`` to this boot's id, synced: from here on an unclean stop
        must be noticed."""
        with self._db.write_batch(sync=True) as wb:
            wb.put(_VERSION, VERSION)
            wb.put(_DIRTY, boot_id())

    def close_clean(self, fingerprint: bytes) -> None:
        """Record the counters and the tree's fingerprint, clear ``dirty``, close."""
        with self._lock, self._db.write_batch(sync=True) as wb:
            self._put_counters(wb, self.count, self.bytes)
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

    def journal(self, keys: Iterable[str]) -> None:
        """Record that the files of ``keys`` are about to change; call before any of
        them does. Not synced: after a kill -9 it is in the kernel, and after a machine
        crash the whole tree is walked anyway."""
        with self._db.write_batch() as wb:
            for key in keys:
                wb.put(_journal_record(key), b"")

    def apply(
        self, changes: Iterable[tuple[str, int | None]], journalled: Iterable[str] = ()
    ) -> None:
        """Record puts (key, size) and deletes (key, None) that are already on disk, and
        drop the journal records of ``journalled``, in one write batch with the counters.

        Each key comes at most once, and the caller serialises changes of one key
        (flatfs's key locks), so the size read here is the one the change replaces.
        """
        # Under the lock, so the last batch in LevelDB's log holds the latest counters;
        # they change in memory only once the batch is written, so a failed write
        # leaves them matching the records (the journal then still lists its keys).
        with self._lock:
            wb = self._db.write_batch()
            count, total = self.count, self.bytes
            for key, size in changes:
                keys, size_change = self._record(wb, key, size)
                count += keys
                total += size_change
            for key in journalled:
                wb.delete(_journal_record(key))
            self._put_counters(wb, count, total)
            wb.write()
            self.count, self.bytes = count, total

    def _record(self, wb: plyvel.WriteBatch, key: str, size: int | None) -> tuple[int, int]:
        """Add one change to ``wb``; how it changes the key count and the bytes."""
        before = self.size(key)
        if size is None:
            if before is None:
                return 0, 0
            wb.delete(ldb.key_record(key))
            wb.delete(ldb.slot_record(slot_of(key), key))
            return -1, -before
        wb.put(ldb.key_record(key), _SIZE.pack(size))
        if before is None:
            wb.put(ldb.slot_record(slot_of(key), key), b"")
            return 1, size
        return 0, size - before

    def replay_journal(self, size_on_disk: Callable[[str], int | None]) -> int:
        """Set each journalled key's entry to what the tree holds (``size_on_disk``: its
        file's size, None if it has none) and clear the journal; how many keys.

        Only for an index whose every write survived (``stale_reason`` said "journal"):
        then the other entries and the counters are exact already. The journal holds
        the keys of the batches in flight at the stop, so it is loaded whole.
        """
        with self._db.iterator(prefix=_JOURNAL, include_value=False) as it:
            keys = [record[len(_JOURNAL) :].decode() for record in it]
        self.apply([(key, size_on_disk(key)) for key in keys], keys)
        return len(keys)

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
        # the walk covered the journalled keys too
        with self._db.iterator(prefix=_JOURNAL, include_value=False) as it:
            for record in it:
                wb.delete(record)
        self._put_counters(wb, count, total)
        wb.write()
        self.count, self.bytes = count, total
        return added, dropped

    def _load_counters(self) -> bool:
        """Load ``count`` and ``bytes`` if both are recorded; whether they were."""
        count, size = self._db.get(_COUNT), self._db.get(_BYTES)
        if count is None or size is None:
            return False
        self.count, self.bytes = _SIZE.unpack(count)[0], _SIZE.unpack(size)[0]
        return True

    @staticmethod
    def _put_counters(wb: plyvel.WriteBatch, count: int, total: int) -> None:
        wb.put(_COUNT, _SIZE.pack(count))
        wb.put(_BYTES, _SIZE.pack(total))

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

"""The replica store's durable records: the version and state of every key, and hints.

Two implementations of ``Records``: ``LevelDBRecords`` (a node's own LevelDB, beside the
store whatever its kind, never the flatfs key index: that is a cache rebuilt from the
tree, and versions cannot be rebuilt from values) and ``MemoryRecords`` (for the memory
store and tests). The LevelDB families:

- ``r`` + slot (2 bytes big-endian) + UTF-8 key -> hlc (8 bytes big-endian), state
  (1 byte: 1 live, 2 tombstone), writer (UTF-8): a slot's records are one range scan;
- ``h`` + target member (4 bytes big-endian) + UTF-8 key -> the newest hint of that key
  for that member: hlc, state, writer length (2 bytes), writer, value (live only);
- ``m`` + name -> ``version`` (of this format) and ``migrated`` (the keys stored before
  replication have their records).

Nothing here locks: the caller (ReplicaStore) holds the keys it passes, so that a
compare-and-write of one key is never interleaved with another.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import plyvel
import trio

from ..keys import slot_of
from ..store import ldb
from ..store.blocking import BlockingCalls
from .versions import MAX_WRITER_CHARS, Version

_RECORD = b"r"
_HINT = b"h"
_MIGRATED = ldb.meta_record("migrated")
# every slot's digest, kept by a close for the next open (ReplicaStore._start)
_DIGESTS = ldb.meta_record("digests")
VERSION = b"1"
_LIVE, _TOMBSTONE = 1, 2
# UTF-8 takes at most 4 bytes a character
_MAX_WRITER_BYTES = 4 * MAX_WRITER_CHARS


# lookups of up to this many records run inline (see LevelDBRecords.get_many)
INLINE_GETS = 16


@dataclass(frozen=True, slots=True)
class Record:
    version: Version
    tombstone: bool


@dataclass(frozen=True, slots=True)
class VersionedOp:
    key: str
    value: bytes | None  # None = tombstone
    version: Version


# called with (slot, key, record) for every record
Visitor = Callable[[int, str, Record], None]


class Records(Protocol):
    async def get_many(self, keys: Sequence[str]) -> list[Record | None]: ...

    async def put_many(self, records: Sequence[tuple[str, Record]]) -> None:
        """One atomic write, durable when the records are configured with sync."""

    async def slot_page(self, slot: int, start_after: str | None,
                        limit: int) -> list[tuple[str, Record]]:
        """Up to ``limit`` records of ``slot`` in key order, after ``start_after``."""

    async def visit(self, fn: Visitor) -> None:
        """Call ``fn`` for every record (in a worker thread for LevelDB: only while
        nothing else touches what ``fn`` updates)."""

    async def drop_live(self) -> int:
        """Drop every live record (the store lost its values); how many."""

    async def drop(self, keys: Sequence[str]) -> None:
        """Forget the records of ``keys`` (their slot moved to other members)."""

    async def add_hints(self, target: int, ops: Sequence[VersionedOp]) -> int:
        """Keep each op unless a hint at least as new is kept for its key (``ops`` have
        distinct keys); how many keys had no hint before."""

    async def hints(self, target: int, limit: int) -> list[VersionedOp]: ...

    async def drop_hints(self, target: int, ops: Sequence[VersionedOp]) -> int:
        """Drop the hints that are exactly these (distinct) versions; how many."""

    async def hint_counts(self) -> dict[int, int]: ...
    async def migrated(self) -> bool: ...
    async def mark_migrated(self) -> None: ...

    async def take_digests(self) -> bytes | None:
        """The digests a close kept, removed as they are taken (durably, before anything
        is written), so that only the open right after that close can use them."""

    async def close(self, digests: bytes | None = None) -> None:
        """Close; ``digests`` (every slot's, given only once nothing writes any more)
        are kept for the next open's ``take_digests``."""


class MemoryRecords:
    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._slots: dict[int, list[str]] = defaultdict(list)  # sorted keys
        self._hints: dict[int, dict[str, VersionedOp]] = defaultdict(dict)
        self._migrated = False

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        return [self._records.get(k) for k in keys]

    async def put_many(self, records: Sequence[tuple[str, Record]]) -> None:
        for key, record in records:
            if key not in self._records:
                bisect.insort(self._slots[slot_of(key)], key)
            self._records[key] = record

    async def slot_page(self, slot: int, start_after: str | None,
                        limit: int) -> list[tuple[str, Record]]:
        keys = self._slots.get(slot, [])
        start = 0 if start_after is None else bisect.bisect_right(keys, start_after)
        return [(k, self._records[k]) for k in keys[start:start + limit]]

    async def visit(self, fn: Visitor) -> None:
        for slot, keys in self._slots.items():
            for k in keys:
                fn(slot, k, self._records[k])

    async def drop(self, keys: Sequence[str]) -> None:
        for k in keys:
            if self._records.pop(k, None) is not None:
                self._slots[slot_of(k)].remove(k)

    async def drop_live(self) -> int:
        live = [k for k, r in self._records.items() if not r.tombstone]
        for k in live:
            del self._records[k]
        for slot, keys in self._slots.items():
            self._slots[slot] = [k for k in keys if k in self._records]
        return len(live)

    async def add_hints(self, target: int, ops: Sequence[VersionedOp]) -> int:
        kept = self._hints[target]
        added = sum(1 for op in ops if op.key not in kept)
        for op in ops:
            old = kept.get(op.key)
            if old is None or op.version > old.version:
                kept[op.key] = op
        return added

    async def hints(self, target: int, limit: int) -> list[VersionedOp]:
        kept = self._hints.get(target, {})
        return [kept[k] for k in sorted(kept)[:limit]]

    async def drop_hints(self, target: int, ops: Sequence[VersionedOp]) -> int:
        kept = self._hints.get(target, {})
        dropped = 0
        for op in ops:
            old = kept.get(op.key)
            if old is not None and old.version == op.version:
                del kept[op.key]
                dropped += 1
        return dropped

    async def hint_counts(self) -> dict[int, int]:
        return {t: len(kept) for t, kept in self._hints.items() if kept}

    async def migrated(self) -> bool:
        return self._migrated

    async def mark_migrated(self) -> None:
        self._migrated = True

    async def take_digests(self) -> bytes | None:
        return None  # nothing outlives a close

    async def close(self, digests: bytes | None = None) -> None:
        return None


class _Corrupt(Exception):
    """A record that does not decode; BlockingCalls names the file in the StoreError."""


class LevelDBRecords:
    def __init__(self, db: plyvel.DB, path: Path, *, sync: bool) -> None:
        self.path = path
        self._db = db
        self._sync = sync
        self._calls = BlockingCalls(f"replica records at {path}", (plyvel.Error, _Corrupt))

    @classmethod
    async def open(cls, path: Path, *, sync: bool) -> LevelDBRecords:
        """Open (creating) the LevelDB in directory ``path``."""
        return await trio.to_thread.run_sync(cls._open, Path(path), sync)

    @classmethod
    def _open(cls, path: Path, sync: bool) -> LevelDBRecords:
        db = ldb.open_versioned(path, f"replica records at {path}", VERSION)
        return cls(db, path, sync=sync)

    async def close(self, digests: bytes | None = None) -> None:
        if await self._calls.drain():
            await trio.to_thread.run_sync(self._close, digests)

    def _close(self, digests: bytes | None) -> None:
        try:
            if digests is not None:
                self._db.put(_DIGESTS, digests, sync=True)
        finally:
            self._db.close()

    async def take_digests(self) -> bytes | None:
        def take() -> bytes | None:
            raw = self._db.get(_DIGESTS)
            if raw is not None:
                self._db.delete(_DIGESTS, sync=True)
            return raw

        return await self._calls.run(take)

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        # a record is a few dozen bytes, mostly in LevelDB's block cache: a lookup on the
        # trio thread costs microseconds, a thread hop ~200 µs (as for the flatfs index)
        if len(keys) <= INLINE_GETS:
            return self._calls.inline(self._get_many, keys)
        return await self._calls.run(self._get_many, keys)

    def _get_many(self, keys: Sequence[str]) -> list[Record | None]:
        out: list[Record | None] = []
        for k in keys:
            raw = self._db.get(_record_key(slot_of(k), k))
            out.append(None if raw is None else _decode_record(raw))
        return out

    async def put_many(self, records: Sequence[tuple[str, Record]]) -> None:
        await self._calls.run(self._put_many, records)

    def _put_many(self, records: Sequence[tuple[str, Record]]) -> None:
        with self._db.write_batch(sync=self._sync) as wb:
            for key, record in records:
                wb.put(_record_key(slot_of(key), key), _encode_record(record))

    async def slot_page(self, slot: int, start_after: str | None,
                        limit: int) -> list[tuple[str, Record]]:
        return await self._calls.run(self._slot_page, slot, start_after, limit)

    def _slot_page(self, slot: int, start_after: str | None,
                   limit: int) -> list[tuple[str, Record]]:
        out: list[tuple[str, Record]] = []
        with self._db.iterator(
            start=_record_key(slot, start_after or ""), include_start=start_after is None,
            stop=_RECORD + (slot + 1).to_bytes(2, "big"),
        ) as it:
            for rec, raw in it:
                if len(out) >= limit:
                    break
                out.append((_record_name(rec), _decode_record(raw)))
        return out

    async def visit(self, fn: Visitor) -> None:
        await self._calls.run(self._visit, fn)

    def _visit(self, fn: Visitor) -> None:
        with self._db.iterator(prefix=_RECORD) as it:
            for rec, raw in it:
                fn(int.from_bytes(rec[1:3], "big"), _record_name(rec), _decode_record(raw))

    async def drop(self, keys: Sequence[str]) -> None:
        def drop() -> None:
            with self._db.write_batch(sync=self._sync) as wb:
                for k in keys:
                    wb.delete(_record_key(slot_of(k), k))

        await self._calls.run(drop)

    async def drop_live(self) -> int:
        return await self._calls.run(self._drop_live)

    def _drop_live(self) -> int:
        dropped = 0
        with self._db.write_batch(sync=self._sync) as wb, \
                self._db.iterator(prefix=_RECORD) as it:
            for rec, raw in it:
                if not _decode_record(raw).tombstone:
                    wb.delete(rec)
                    dropped += 1
        return dropped

    async def add_hints(self, target: int, ops: Sequence[VersionedOp]) -> int:
        return await self._calls.run(self._add_hints, target, ops)

    def _add_hints(self, target: int, ops: Sequence[VersionedOp]) -> int:
        added = 0
        with self._db.write_batch(sync=self._sync) as wb:
            for op in ops:
                k = _hint_key(target, op.key)
                raw = self._db.get(k)
                if raw is None:
                    added += 1
                elif _decode_hint(k, raw).version >= op.version:
                    continue
                wb.put(k, _encode_hint(op))
        return added

    async def hints(self, target: int, limit: int) -> list[VersionedOp]:
        return await self._calls.run(self._hints, target, limit)

    def _hints(self, target: int, limit: int) -> list[VersionedOp]:
        out: list[VersionedOp] = []
        with self._db.iterator(prefix=_HINT + target.to_bytes(4, "big")) as it:
            for k, raw in it:
                if len(out) >= limit:
                    break
                out.append(_decode_hint(k, raw))
        return out

    async def drop_hints(self, target: int, ops: Sequence[VersionedOp]) -> int:
        return await self._calls.run(self._drop_hints, target, ops)

    def _drop_hints(self, target: int, ops: Sequence[VersionedOp]) -> int:
        dropped = 0
        with self._db.write_batch(sync=self._sync) as wb:
            for op in ops:
                k = _hint_key(target, op.key)
                raw = self._db.get(k)
                if raw is not None and _decode_hint(k, raw).version == op.version:
                    wb.delete(k)
                    dropped += 1
        return dropped

    async def hint_counts(self) -> dict[int, int]:
        return await self._calls.run(self._hint_counts)

    def _hint_counts(self) -> dict[int, int]:
        counts: dict[int, int] = defaultdict(int)
        with self._db.iterator(prefix=_HINT, include_value=False) as it:
            for k in it:
                counts[int.from_bytes(k[1:5], "big")] += 1
        return dict(counts)

    async def migrated(self) -> bool:
        return await self._calls.run(self._db.get, _MIGRATED) is not None

    async def mark_migrated(self) -> None:
        await self._calls.run(lambda: self._db.put(_MIGRATED, b"", sync=self._sync))


def _record_key(slot: int, key: str) -> bytes:
    return _RECORD + slot.to_bytes(2, "big") + key.encode()


def _hint_key(target: int, key: str) -> bytes:
    return _HINT + target.to_bytes(4, "big") + key.encode()


def _record_name(rec: bytes) -> str:
    return _utf8(rec[3:], rec)


def _encode_record(r: Record) -> bytes:
    return (r.version.hlc.to_bytes(8, "big") + bytes([_TOMBSTONE if r.tombstone else _LIVE])
            + r.version.writer.encode())


def _decode_record(raw: bytes) -> Record:
    if not 9 <= len(raw) <= 9 + _MAX_WRITER_BYTES or raw[8] not in (_LIVE, _TOMBSTONE):
        raise _Corrupt(f"corrupt version record {raw[:64]!r}")
    return Record(Version(int.from_bytes(raw[:8], "big"), _utf8(raw[9:], raw)),
                  raw[8] == _TOMBSTONE)


def _encode_hint(op: VersionedOp) -> bytes:
    writer = op.version.writer.encode()
    state = _TOMBSTONE if op.value is None else _LIVE
    return (op.version.hlc.to_bytes(8, "big") + bytes([state]) + len(writer).to_bytes(2, "big")
            + writer + (op.value or b""))


def _decode_hint(k: bytes, raw: bytes) -> VersionedOp:
    wlen = int.from_bytes(raw[9:11], "big") if len(raw) >= 11 else -1
    if (not 0 <= wlen <= _MAX_WRITER_BYTES or len(raw) < 11 + wlen
            or raw[8] not in (_LIVE, _TOMBSTONE)
            or (raw[8] == _TOMBSTONE and len(raw) != 11 + wlen)):
        raise _Corrupt(f"corrupt hint {k[:64]!r}")
    version = Version(int.from_bytes(raw[:8], "big"), _utf8(raw[11:11 + wlen], k))
    value = None if raw[8] == _TOMBSTONE else raw[11 + wlen:]
    return VersionedOp(_utf8(k[5:], k), value, version)


def _utf8(data: bytes, record: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise _Corrupt(f"corrupt record {record[:64]!r}: not UTF-8") from None


"""A node's replica store: its local store's values, with a version record per key.

Theory of operation. Values stay in the local store, unchanged; the version (and live or
tombstone) of every key is a record in ``records`` (doc/architecture.md, "Replication").
What a replica holds for a key is the *effective* record: a live record whose value the store
lost reads as missing (so the next write of it applies), and a key in the store without
a record (data from before replication) is live at ZERO. ``open`` writes those ZERO
records once; if it finds the store empty while records claim live keys (the data
directory was wiped, the records kept), it drops those records.

A write compares each op with the effective record under a lock on its key: newer
applies, equal is an idempotent retry, older is refused with the version held. Values go
to the store first, in one ``apply``, then the records in one durable write, so a crash
in between leaves a record older than its value (anti-entropy repairs that), never a
record of a value that is not there.

Each slot's digest, the XOR of a hash of every record in it, is kept in memory: two
replicas agree on a slot exactly when (with overwhelming probability) its digests do.
Tombstones are kept forever, so a replica that missed a delete cannot resurrect the key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from ..blocks import block_matches
from ..datastore import BatchOp
from ..errors import InvalidArgument, NotFound
from ..keylocks import KeyLocks
from ..keys import SLOT_COUNT, slot_of, validate_key
from ..store.base import Store, scan_all
from .records import LevelDBRecords, MemoryRecords, Record, Records, VersionedOp
from .versions import MAX_WRITER_CHARS, ZERO, Version

__all__ = [
    "DIGEST_BYTES",
    "LIVE",
    "MISSING",
    "TOMBSTONE",
    "Held",
    "KeyLocks",
    "ReplicaStore",
    "VersionedOp",
]

log = logging.getLogger(__name__)

DIGEST_BYTES = 16
MISSING, LIVE, TOMBSTONE = 0, 1, 2
# store keys looked up per records call while migrating
_MIGRATION_BATCH = 1000
_MAX_TARGET = 1 << 32


@dataclass(frozen=True, slots=True)
class Held:
    """What one replica holds for a key."""

    version: Version
    state: int  # MISSING / LIVE / TOMBSTONE
    size: int  # of the value when LIVE, else 0
    value: bytes | None = None  # when asked for and LIVE


_NOTHING = Held(ZERO, MISSING, 0)


class ReplicaStore:
    def __init__(self, store: Store, records: Records) -> None:
        self.store = store
        self._records = records
        self._locks = KeyLocks()
        self._digests = [0] * SLOT_COUNT
        self._hint_counts: dict[int, int] = {}

    @classmethod
    async def open(cls, store: Store, records_dir: Path | None, *, sync: bool) -> ReplicaStore:
        """The replica store over ``store`` with its records in ``records_dir`` (None: in
        memory). Closing it closes ``store``; failing to open leaves ``store`` open."""
        records: Records = (MemoryRecords() if records_dir is None
                            else await LevelDBRecords.open(records_dir, sync=sync))
        replica = cls(store, records)
        try:
            await replica._start()
        except BaseException:
            with trio.CancelScope(shield=True):
                await records.close()
            raise
        return replica

    async def _start(self) -> None:
        # Taken before anything is written: if this run stops without its close, the
        # next open finds none and recomputes them from every record (seconds at a
        # million keys, which is why a close keeps them).
        saved = await self._records.take_digests()
        changed = False
        if not (await self.store.scan("/", limit=1, keys_only=True)).entries:
            dropped = await self._records.drop_live()
            if dropped:
                changed = True
                log.warning("the %s store is empty but %d version records claim live keys "
                            "(a wiped data directory?): dropped them, repair restores the "
                            "values from the other replicas", self.store.kind, dropped)
        if not await self._records.migrated():
            migrated = await self._migrate()
            changed = changed or migrated > 0
            if migrated:
                log.info("%d keys stored before replication are now versioned (at zero)",
                         migrated)
        if saved is not None and not changed and len(saved) == SLOT_COUNT * DIGEST_BYTES:
            self._digests = [int.from_bytes(saved[i:i + DIGEST_BYTES], "big")
                             for i in range(0, len(saved), DIGEST_BYTES)]
        else:
            await self._records.visit(self._toggle_digest)
        self._hint_counts = await self._records.hint_counts()

    async def _migrate(self) -> int:
        migrated = 0
        keys: list[str] = []
        async for e in scan_all(self.store, "/", keys_only=True):
            keys.append(e.key)
            if len(keys) >= _MIGRATION_BATCH:
                migrated += await self._migrate_keys(keys)
                keys = []
        migrated += await self._migrate_keys(keys)
        await self._records.mark_migrated()
        return migrated

    async def _migrate_keys(self, keys: list[str]) -> int:
        found = await self._records.get_many(keys)
        new = [(k, Record(ZERO, False)) for k, r in zip(keys, found, strict=True) if r is None]
        if new:
            await self._records.put_many(new)
        return len(new)

    async def close(self) -> None:
        """Close the records (keeping the digests for the next open: the caller calls
        this once nothing writes any more) and the store."""
        try:
            await self._records.close(self.digests(range(SLOT_COUNT)))
        finally:
            await self.store.close()

    # -- versioned reads and writes -------------------------------------------------------
    async def read(self, key: str, *, value: bool) -> Held:
        key = validate_key(key)
        [record] = await self._records.get_many([key])
        return await self._effective(key, record, value=value)

    async def _effective(self, key: str, record: Record | None, *, value: bool) -> Held:
        if record is not None and record.tombstone:
            return Held(record.version, TOMBSTONE, 0)
        version = ZERO if record is None else record.version
        try:
            if value:
                data = await self.store.get(key)
                return Held(version, LIVE, len(data), data)
            return Held(version, LIVE, await self.store.get_size(key))
        except NotFound:
            return _NOTHING

    async def write(self, ops: Sequence[VersionedOp]) -> list[tuple[bool, Version]]:
        """Apply each op newer than what is held; per op (applied, the version now held,
        or the newer one that refused it). ``ops`` have distinct keys."""
        ops = [_checked(op) for op in ops]
        keys = [op.key for op in ops]
        if len(set(keys)) != len(keys):
            raise InvalidArgument("one versioned write has one operation per key")
        async with self._locks.hold(keys):
            before = dict(zip(keys, await self._records.get_many(keys), strict=True))
            values: list[BatchOp] = []
            records: list[tuple[str, Record]] = []
            results: list[tuple[bool, Version]] = []
            for op in ops:
                held = await self._effective(op.key, before[op.key], value=False)
                # a value at ZERO onto nothing: data from before replication, repaired
                if op.version > held.version or (held.state == MISSING and op.value is not None):
                    values.append(BatchOp(op.key, op.value))
                    records.append((op.key, Record(op.version, op.value is None)))
                    results.append((True, op.version))
                elif op.version == held.version:
                    if await self._rotten_block(op, held):
                        values.append(BatchOp(op.key, op.value))
                    results.append((True, held.version))
                else:
                    results.append((False, held.version))
            # once the values are written their records follow, even if the caller gave up
            with trio.CancelScope(shield=True):
                if values:
                    await self.store.apply(values)
                if records:
                    await self._records.put_many(records)
            for key, record in records:
                slot = slot_of(key)
                old = before[key]
                if old is not None:
                    self._toggle_digest(slot, key, old)
                self._toggle_digest(slot, key, record)
        return results

    async def _rotten_block(self, op: VersionedOp, held: Held) -> bool:
        """Whether ``op`` holds the bytes of its block key and the store does not."""
        if held.state != LIVE or op.value is None or not block_matches(op.key, op.value):
            return False
        try:
            return block_matches(op.key, await self.store.get(op.key)) is False
        except NotFound:  # removed from under us since: the good bytes are welcome
            return True

    # -- anti-entropy -----------------------------------------------------------------------
    def _toggle_digest(self, slot: int, key: str, record: Record) -> None:
        k = key.encode()
        v = record.version
        h = hashlib.blake2b(
            len(k).to_bytes(2, "big") + k + v.hlc.to_bytes(8, "big")
            + bytes([TOMBSTONE if record.tombstone else LIVE]) + v.writer.encode(),
            digest_size=DIGEST_BYTES,
        )
        self._digests[slot] ^= int.from_bytes(h.digest(), "big")

    def digests(self, slots: Iterable[int]) -> bytes:
        """``DIGEST_BYTES`` per slot, in order; zeros for a slot without records."""
        out = bytearray()
        for slot in slots:
            if not 0 <= slot < SLOT_COUNT:
                raise InvalidArgument(f"slot must be 0..{SLOT_COUNT - 1}, not {slot}")
            out += self._digests[slot].to_bytes(DIGEST_BYTES, "big")
        return bytes(out)

    async def slot_versions(self, slot: int, start_after: str | None, limit: int
                            ) -> tuple[list[tuple[str, Version, bool]], str | None]:
        """Up to ``limit`` records of ``slot`` after ``start_after``, in key order, as
        (key, version, tombstone); and the cursor of the next page, None at the end."""
        if not 0 <= slot < SLOT_COUNT or limit < 1:
            raise InvalidArgument(f"no slot {slot} page of {limit} records")
        page = await self._records.slot_page(slot, start_after, limit + 1)
        cursor = page[limit - 1][0] if len(page) > limit else None
        return [(k, r.version, r.tombstone) for k, r in page[:limit]], cursor

    def holds(self, slot: int) -> bool:
        """Whether this replica has records in ``slot`` (its digest is their XOR)."""
        return self._digests[slot] != 0

    async def drop_slot(self, slot: int, gone: Callable[[], bool] = lambda: True) -> int:
        """Delete every key of ``slot`` with its record: the slot moved to other members,
        which copied it first (cluster/rebalance.py). ``gone`` is asked before each
        page (the slot may come back meanwhile). How many keys went."""
        dropped = 0
        while gone() and (page := await self._records.slot_page(slot, None,
                                                                 _MIGRATION_BATCH)):
            keys = [k for k, _ in page]
            async with self._locks.hold(keys):
                with trio.CancelScope(shield=True):  # values first, as write() does
                    await self.store.apply([BatchOp(k, None) for k in keys])
                    await self._records.drop(keys)
                for k, record in page:
                    self._toggle_digest(slot, k, record)
            dropped += len(keys)
        if not gone():
            return dropped
        # values without a record (put beside the store, e.g. by go-ds-flatfs) go too
        strays = await self.store.keys_in_slot(slot)
        if strays:
            await self.store.apply([BatchOp(k, None) for k in strays])
        return dropped + len(strays)

    # -- hints ------------------------------------------------------------------------------
    async def add_hints(self, target: int, ops: Sequence[VersionedOp]) -> None:
        """Keep ``ops`` for member ``target``: the newest per key."""
        newest: dict[str, VersionedOp] = {}
        for op in map(_checked, ops):
            if op.key not in newest or op.version > newest[op.key].version:
                newest[op.key] = op
        async with self._locks.hold(_hint_keys(target, newest)):
            added = await self._records.add_hints(target, list(newest.values()))
        if added:
            self._hint_counts[target] = self._hint_counts.get(target, 0) + added

    async def hints(self, target: int, limit: int) -> list[VersionedOp]:
        """Up to ``limit`` hints for ``target``, in key order."""
        return await self._records.hints(_checked_target(target), limit)

    async def drop_hints(self, target: int, ops: Sequence[VersionedOp]) -> None:
        """Drop the hints that are these versions (a newer one of a key is kept)."""
        exact = list({(op.key, op.version): op for op in map(_checked, ops)}.values())
        async with self._locks.hold(_hint_keys(target, [op.key for op in exact])):
            dropped = await self._records.drop_hints(target, exact)
        left = self._hint_counts.get(target, 0) - dropped
        if left > 0:
            self._hint_counts[target] = left
        else:
            self._hint_counts.pop(target, None)

    def hint_targets(self) -> set[int]:
        return set(self._hint_counts)

    def hint_count(self) -> int:
        return sum(self._hint_counts.values())


def _checked(op: VersionedOp) -> VersionedOp:
    """``op`` with its clean key, its version within what records encode."""
    v = op.version
    if not (0 <= v.hlc < 1 << 64 and len(v.writer) <= MAX_WRITER_CHARS):
        raise InvalidArgument(f"version {v} of {op.key!r} is out of range")
    key = validate_key(op.key)
    return op if key == op.key else VersionedOp(key, op.value, v)


def _checked_target(target: int) -> int:
    if not 0 <= target < _MAX_TARGET:
        raise InvalidArgument(f"no member {target} to keep hints for")
    return target


def _hint_keys(target: int, keys: Iterable[str]) -> list[tuple[int, str]]:
    # hints and records share one KeyLocks; tuples never equal a record's str key
    return [(_checked_target(target), k) for k in keys]

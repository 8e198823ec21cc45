"""What the plyvel users (the leveldb store, flatfs's key index, replica records) share.

Both keep their records in one LevelDB under one-byte family prefixes, so that each
family is one contiguous, sorted key range:

- ``k`` + UTF-8 key  -> the record of a key (the value itself, or its size);
- ``s`` + slot as 2 bytes big-endian + UTF-8 key -> empty: the per-slot index, so a slot's
  keys are one range scan (slot migration);
- ``m`` + name -> metadata (format version, markers).

UTF-8 byte order is code point order, so a range of ``k`` records is in the same order
as Python's sorted str keys, and a ``KeyRange`` maps directly onto an iterator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plyvel

from ..errors import StoreError
from .base import KeyRange

KEY = b"k"
SLOT = b"s"
META = b"m"

MiB = 1 << 20
# Every open LevelDB gets these, so that what it holds in memory has a size set here
# rather than by the key count. A memtable of 4 MiB (LevelDB's default) holds ~40,000
# index or version records before it is written out; LevelDB keeps at most two (one
# being flushed). Table files are read through mmap (LevelDB maps up to 1,000 on
# 64-bit), and blocks read that way bypass the block cache, which then only serves files
# opened past that limit: 4 MiB is plenty (LevelDB would make 8 MiB by default).
# Per DB that is at most 12 MiB, ~24 MiB for a node's key index and replica records.
LEVELDB_OPTIONS: dict[str, int] = {
    "write_buffer_size": 4 * MiB,
    "lru_cache_size": 4 * MiB,
}


def key_record(key: str) -> bytes:
    return KEY + key.encode()


def slot_record(slot: int, key: str) -> bytes:
    return SLOT + slot.to_bytes(2, "big") + key.encode()


def meta_record(name: str) -> bytes:
    return META + name.encode()


def open_leveldb(path: Path, what: str) -> plyvel.DB:
    """Open (creating) a LevelDB; a held lock becomes a readable StoreError."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        return plyvel.DB(str(path), create_if_missing=True, **LEVELDB_OPTIONS)
    except plyvel.IOError as e:
        if "lock" in str(e).lower():
            raise StoreError(f"{what} is in use by another process") from None
        raise StoreError(f"{what} cannot be opened: {e}") from e


def open_versioned(path: Path, what: str, version: bytes) -> plyvel.DB:
    """Open (creating) a LevelDB whose ``m`` + "version" record must be ``version``; a
    new one gets it."""
    try:
        db = open_leveldb(path, what)
    except plyvel.Error as e:
        raise StoreError(f"{what} cannot be opened: {e}") from e
    found = db.get(meta_record("version"))
    if found is None:
        db.put(meta_record("version"), version, sync=True)
    elif found != version:
        db.close()
        raise StoreError(f"{what} has format version {found!r}, expected {version!r}")
    return db


def iter_keys_in_range(
    db: plyvel.DB, r: KeyRange, *, reverse: bool, include_value: bool
) -> Iterator[Any]:
    """A plyvel iterator over the ``k`` records in ``r`` (caller closes it)."""
    return db.iterator(
        start=key_record(r.low),
        stop=key_record(r.high) if r.high is not None else _family_end(KEY),
        include_start=r.low_inclusive,
        include_stop=False,
        reverse=reverse,
        include_value=include_value,
    )


def keys_in_slot(db: plyvel.DB, slot: int) -> list[str]:
    prefix = SLOT + slot.to_bytes(2, "big")
    with db.iterator(prefix=prefix, include_value=False) as it:
        return [k[len(prefix) :].decode() for k in it]


def count_keys(db: plyvel.DB) -> int:
    """Count keys by walking the slot index (its records are the smallest)."""
    with db.iterator(prefix=SLOT, include_value=False) as it:
        return sum(1 for _ in it)


def key_of(record: bytes) -> str:
    """The key of a ``k`` record."""
    return record[len(KEY) :].decode()


def _family_end(family: bytes) -> bytes:
    return bytes([family[0] + 1])

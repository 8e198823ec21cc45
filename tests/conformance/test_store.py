"""The Store suite: what only local stores have (scan pages, counts, slots, reopening)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from dscluster.errors import InvalidKey, StoreError
from dscluster.keys import MAX_KEY_BYTES, slot_of
from dscluster.query import Entry
from dscluster.store import Store
from dscluster.store.base import SCAN_EXAMINE_FACTOR

from .conftest import StoreBackend

KEYS = [f"/p/{i:02d}" for i in range(25)]


async def fill(store: Store, keys: list[str] = KEYS, size: int = 10) -> None:
    for k in keys:
        await store.put(k, k.encode().ljust(size, b"."))


async def pages(store: Store, prefix: str = "/", **kw: object) -> list[list[Entry]]:
    """Every page of a scan, following cursors; checks the end marker on the way."""
    out: list[list[Entry]] = []
    after = None
    for _ in range(1000):
        page = await store.scan(prefix, start_after=after, **kw)
        out.append(page.entries)
        if page.cursor is None:
            return out
        after = page.cursor
    raise AssertionError("scan never ended")


async def test_scan_pages_by_limit(store: Store) -> None:
    await fill(store)
    await store.put("/p", b"the prefix itself is not under it")
    await store.put("/q/0", b"outside")
    got = await pages(store, "/p", limit=10)
    assert [[e.key for e in p] for p in got] == [KEYS[:10], KEYS[10:20], KEYS[20:]]
    first = await store.scan("/p", limit=10)
    assert first.cursor == KEYS[9]
    assert all(e.value == e.key.encode().ljust(10, b".") and e.size == 10 for p in got for e in p)


async def test_scan_exact_fit_ends_with_marker(store: Store) -> None:
    await fill(store, KEYS[:10])
    page = await store.scan("/p", limit=10)
    assert [e.key for e in page.entries] == KEYS[:10]
    assert page.cursor is None  # nothing left: the explicit end marker, not a cursor
    assert (await store.scan("/nothing")).entries == []
    assert (await store.scan("/nothing")).cursor is None


async def test_scan_reverse(store: Store) -> None:
    await fill(store)
    got = await pages(store, "/p", limit=7, reverse=True)
    assert [e.key for p in got for e in p] == KEYS[::-1]
    assert [len(p) for p in got] == [7, 7, 7, 4]


async def test_scan_start_after(store: Store) -> None:
    await fill(store)
    after = await store.scan("/p", start_after=KEYS[20])
    assert [e.key for e in after.entries] == KEYS[21:]
    between = await store.scan("/p", start_after="/p/10x")  # not a stored key
    assert [e.key for e in between.entries] == KEYS[11:]
    before = await store.scan("/p", start_after="/a")
    assert [e.key for e in before.entries] == KEYS
    assert (await store.scan("/p", start_after="/z")).entries == []
    rev = await store.scan("/p", start_after=KEYS[3], reverse=True)
    assert [e.key for e in rev.entries] == KEYS[:3][::-1]
    assert (await store.scan("/p", start_after="/a", reverse=True)).entries == []


async def test_scan_max_bytes(store: Store) -> None:
    await fill(store, size=100)
    page = await store.scan("/p", max_bytes=250)
    assert [e.key for e in page.entries] == KEYS[:3]  # stops once 250 bytes are reached
    assert page.cursor == KEYS[2]
    one = await store.scan("/p", max_bytes=1)
    assert len(one.entries) == 1  # always at least one entry
    keys_only = await store.scan("/p", max_bytes=250, keys_only=True)
    assert len(keys_only.entries) == len(KEYS)  # no values, no bytes counted
    assert all(e.value is None and e.size == 100 for e in keys_only.entries)


async def test_scan_predicate_examine_bound(store: Store) -> None:
    keys = [f"/e/{i:03d}" for i in range(100)]
    await fill(store, keys)
    wanted = {keys[5], keys[97]}

    def pred(e: Entry) -> bool:
        return e.key in wanted

    page = await store.scan("/e", limit=2, predicate=pred)
    budget = SCAN_EXAMINE_FACTOR * 2
    # one match among the first `budget` examined keys; then the page gives up there
    assert [e.key for e in page.entries] == [keys[5]]
    assert page.cursor == keys[budget - 1]
    found = [e.key for p in await pages(store, "/e", limit=2, predicate=pred) for e in p]
    assert found == sorted(wanted)


async def test_scan_predicate_sees_values(store: Store) -> None:
    await fill(store)
    page = await store.scan("/p", predicate=lambda e: e.value is not None and b"/p/1" in e.value)
    assert [e.key for e in page.entries] == KEYS[10:20]


async def test_count(store: Store) -> None:
    assert await store.count() == 0
    await fill(store)
    await store.put(KEYS[0], b"overwrite does not count twice")
    assert await store.count() == len(KEYS)
    await store.delete(KEYS[1])
    await store.delete("/not/there")
    assert await store.count() == len(KEYS) - 1


async def test_keys_in_slot(store: Store) -> None:
    keys = [f"/slot/{i}" for i in range(300)]
    await fill(store, keys)
    by_slot: dict[int, list[str]] = defaultdict(list)
    for k in keys:
        by_slot[slot_of(k)].append(k)
    for slot, expected in list(by_slot.items())[:40]:
        assert await store.keys_in_slot(slot) == sorted(expected)
    empty = next(s for s in range(16384) if s not in by_slot)
    assert await store.keys_in_slot(empty) == []
    victim = keys[0]
    await store.delete(victim)
    assert victim not in await store.keys_in_slot(slot_of(victim))


async def test_invalid_keys_rejected(store: Store) -> None:
    too_long = "/" + "x" * MAX_KEY_BYTES
    for call in (store.get, store.has, store.get_size, store.delete):
        with pytest.raises(InvalidKey):
            await call(too_long)
    with pytest.raises(InvalidKey):
        await store.put("/bad\udc80surrogate", b"")


async def test_reopen_keeps_everything(store_backend: StoreBackend, tmp_path: Path) -> None:
    if not store_backend.persistent:
        pytest.skip("not a persistent store")
    data = {f"/r/{i}": bytes([i]) * i for i in range(50)}
    s = await store_backend.open(tmp_path)
    try:
        for k, v in data.items():
            await s.put(k, v)
        await s.delete("/r/7")
        del data["/r/7"]
        await s.close()
        await s.close()  # closing twice is harmless
        # a closed store refuses calls instead of answering from a closed database
        with pytest.raises(StoreError, match="closed"):
            await s.get("/r/1")
        s = await store_backend.open(tmp_path)
        assert await s.count() == len(data)
        assert {e.key: e.value for e in (await s.scan("/", limit=100)).entries} == data
        assert await s.get_size("/r/9") == 9
        assert await s.keys_in_slot(slot_of("/r/9")) == sorted(
            k for k in data if slot_of(k) == slot_of("/r/9")
        )
    finally:
        await s.close()
        if store_backend.cleanup is not None:
            await store_backend.cleanup(tmp_path)

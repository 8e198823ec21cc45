"""The replica store: the write rule, effective records, digests, slot pages, hints and
migration, over memory and LevelDB records with a memory and a flatfs store beneath."""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import random
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import plyvel
import pytest
import trio
from multiformats import multihash

from dscluster.blocks import BLOCKS_PREFIX
from dscluster.cluster.replica import (
    DIGEST_BYTES,
    LIVE,
    MISSING,
    TOMBSTONE,
    Held,
    ReplicaStore,
    VersionedOp,
)
from dscluster.cluster.versions import ZERO, Version
from dscluster.datastore import BatchOp
from dscluster.errors import InvalidArgument, StoreError
from dscluster.keys import SLOT_COUNT, slot_of
from dscluster.store import FlatFSStore, MemoryStore, Store, ldb


def v(hlc: int, writer: str = "w") -> Version:
    return Version(hlc, writer)


def put(key: str, value: bytes, hlc: int, writer: str = "w") -> VersionedOp:
    return VersionedOp(key, value, v(hlc, writer))


def delete(key: str, hlc: int, writer: str = "w") -> VersionedOp:
    return VersionedOp(key, None, v(hlc, writer))


def block_key(data: bytes) -> str:
    mh = bytes(multihash.wrap(hashlib.sha256(data).digest(), "sha2-256"))
    return BLOCKS_PREFIX + base64.b32encode(mh).decode().rstrip("=")


def keys_in_one_slot(n: int) -> list[str]:
    slot = slot_of("/s/0")
    keys = (f"/s/{i}" for i in itertools.count())
    return sorted(itertools.islice((k for k in keys if slot_of(k) == slot), n))


class YieldingMemoryStore(MemoryStore):
    """A memory store that lets other tasks run inside its calls, as real stores do."""

    async def get_size(self, key: str) -> int:
        await trio.lowlevel.checkpoint()
        return await super().get_size(key)

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        await trio.lowlevel.checkpoint()
        await super().apply(ops)


class Node:
    """One replica's directories, opened and reopened as a node restarts."""

    def __init__(self, store_kind: str, records_kind: str, root: Path) -> None:
        self.store_kind = store_kind
        self.durable = records_kind == "leveldb"
        self.root = root
        self.records_dir = root / "records" if self.durable else None
        self._memory = YieldingMemoryStore()

    async def open_store(self) -> Store:
        if self.store_kind == "memory":
            return self._memory  # closing it keeps its data, like a directory
        return await FlatFSStore.open(self.root / "store", sync=False)

    async def open(self, store: Store | None = None, *, sync: bool = False) -> ReplicaStore:
        return await ReplicaStore.open(store or await self.open_store(), self.records_dir,
                                       sync=sync)

    def wipe_store(self) -> None:
        self._memory = YieldingMemoryStore()
        shutil.rmtree(self.root / "store", ignore_errors=True)


NodeFactory = Callable[[str], Node]


@pytest.fixture(params=["memory+memory", "memory+leveldb", "flatfs+memory", "flatfs+leveldb"])
def node_of(request: pytest.FixtureRequest, tmp_path: Path) -> NodeFactory:
    store_kind, records_kind = request.param.split("+")
    return lambda name: Node(store_kind, records_kind, tmp_path / name)


@pytest.fixture
def node(node_of: NodeFactory) -> Node:
    return node_of("a")


@pytest.fixture
async def replica(node: Node) -> AsyncIterator[ReplicaStore]:
    r = await node.open()
    try:
        yield r
    finally:
        await r.close()


def durable_only(node: Node) -> None:
    if not node.durable:
        pytest.skip("memory records do not outlive their replica store")


async def write_one_by_one(r: ReplicaStore, ops: Sequence[VersionedOp]) -> None:
    for op in ops:
        await r.write([op])


# -- the write rule ----------------------------------------------------------------------


async def test_newer_wins_and_older_is_refused_with_the_held_version(replica: ReplicaStore):
    assert await replica.write([put("/k", b"one", 1)]) == [(True, v(1))]
    assert await replica.write([put("/k", b"three", 3), put("/j", b"j", 5)]) == [
        (True, v(3)), (True, v(5))]
    assert await replica.write([put("/k", b"two", 2), put("/j", b"j6", 6)]) == [
        (False, v(3)), (True, v(6))]
    assert await replica.read("/k", value=True) == Held(v(3), LIVE, 5, b"three")
    assert await replica.read("/j", value=False) == Held(v(6), LIVE, 2)
    assert await replica.store.get("/k") == b"three"
    # the writer breaks a tie of stamps
    assert await replica.write([put("/k", b"b", 3, "x")]) == [(True, v(3, "x"))]
    assert await replica.write([put("/k", b"a", 3, "a")]) == [(False, v(3, "x"))]


async def test_an_equal_version_is_an_idempotent_retry(replica: ReplicaStore):
    await replica.write([put("/k", b"value", 4)])
    before = replica.digests(range(SLOT_COUNT))
    await replica.store.put("/k", b"changed underneath")
    assert await replica.write([put("/k", b"value", 4)]) == [(True, v(4))]
    assert await replica.store.get("/k") == b"changed underneath"  # nothing was written
    assert replica.digests(range(SLOT_COUNT)) == before
    with pytest.raises(InvalidArgument, match="one operation per key"):
        await replica.write([put("/k", b"a", 5), put("/k", b"b", 6)])


async def test_a_tombstone_keeps_an_older_put_out(replica: ReplicaStore):
    await replica.write([put("/k", b"v", 1)])
    assert await replica.write([delete("/k", 3)]) == [(True, v(3))]
    assert await replica.write([put("/k", b"late", 2)]) == [(False, v(3))]
    assert await replica.read("/k", value=True) == Held(v(3), TOMBSTONE, 0)
    assert not await replica.store.has("/k")
    # a delete of a key never written is recorded too
    assert await replica.write([delete("/never", 7)]) == [(True, v(7))]
    assert await replica.write([put("/never", b"x", 6)]) == [(False, v(7))]
    assert await replica.read("/never", value=False) == Held(v(7), TOMBSTONE, 0)
    assert await replica.read("/unknown", value=True) == Held(ZERO, MISSING, 0)


async def test_corrupt_block_bytes_are_replaced_only_by_matching_ones(replica: ReplicaStore):
    data = b"the real block"
    key = block_key(data)
    await replica.write([put(key, data, 5)])
    await replica.store.put(key, b"rotten bytes")
    assert await replica.write([put(key, b"other wrong bytes", 5)]) == [(True, v(5))]
    assert await replica.store.get(key) == b"rotten bytes"
    assert await replica.write([put(key, data, 4)]) == [(False, v(5))]
    assert await replica.store.get(key) == b"rotten bytes"
    assert await replica.write([put(key, data, 5)]) == [(True, v(5))]
    assert await replica.read(key, value=True) == Held(v(5), LIVE, len(data), data)


async def test_a_live_record_without_its_value_reads_missing_and_takes_the_same_write(
        replica: ReplicaStore):
    await replica.write([put("/k", b"v", 4)])
    digests = replica.digests(range(SLOT_COUNT))
    await replica.store.delete("/k")  # lost between a crash and the record's write
    assert await replica.read("/k", value=True) == Held(ZERO, MISSING, 0)
    assert await replica.write([put("/k", b"v", 4)]) == [(True, v(4))]
    assert await replica.read("/k", value=True) == Held(v(4), LIVE, 1, b"v")
    assert replica.digests(range(SLOT_COUNT)) == digests


async def test_concurrent_writes_of_one_key_leave_the_highest_version(
        replica: ReplicaStore, node_of: NodeFactory):
    stamps = random.Random(7).sample(range(1, 1000), 40)
    results: dict[int, list[tuple[bool, Version]]] = {}

    async def one(hlc: int) -> None:
        results[hlc] = await replica.write([put("/race", b"%d" % hlc, hlc)])

    async with trio.open_nursery() as n:
        for hlc in stamps:
            n.start_soon(one, hlc)
    top = max(stamps)
    assert results[top] == [(True, v(top))]
    value = b"%d" % top
    assert await replica.read("/race", value=True) == Held(v(top), LIVE, len(value), value)
    # the digest counts the winning record once, the losing ones not at all
    alone = await node_of("alone").open()
    try:
        await alone.write([put("/race", b"%d" % top, top)])
        assert replica.digests(range(SLOT_COUNT)) == alone.digests(range(SLOT_COUNT))
    finally:
        await alone.close()


class FailingStore(MemoryStore):
    async def apply(self, ops: Sequence[BatchOp]) -> None:
        raise StoreError("disk full")


@pytest.mark.parametrize("durable", [False, True])
async def test_a_value_the_store_refused_leaves_its_record_as_it_was(tmp_path: Path,
                                                                     durable: bool):
    store = FailingStore()
    await MemoryStore.apply(store, [BatchOp("/k", b"old")])
    r = await ReplicaStore.open(store, tmp_path / "records" if durable else None, sync=False)
    try:
        digests = r.digests(range(SLOT_COUNT))
        with pytest.raises(StoreError, match="disk full"):
            await r.write([put("/k", b"new", 5)])
        assert await r.read("/k", value=True) == Held(ZERO, LIVE, 3, b"old")
        assert r.digests(range(SLOT_COUNT)) == digests
    finally:
        await r.close()


# -- digests and slot pages ------------------------------------------------------------------


async def test_digests_agree_on_the_same_ops_in_any_order_and_differ_after_one_more(
        node_of: NodeFactory):
    ops = [put(f"/d/{i}", b"x" * i, 10 + i) for i in range(30)]
    ops += [put("/d/3", b"newer", 100), delete("/d/4", 101), put(block_key(b"b"), b"b", 5)]
    shuffled = random.Random(1).sample(ops, len(ops))
    a, b = await node_of("a").open(), await node_of("b").open()
    try:
        everything = range(SLOT_COUNT)
        assert a.digests(everything) == bytes(DIGEST_BYTES * SLOT_COUNT)
        await write_one_by_one(a, ops)
        await write_one_by_one(b, shuffled)
        assert a.digests(everything) == b.digests(everything)
        assert a.digests([slot_of("/d/3")]) != bytes(DIGEST_BYTES)

        await b.write([put("/d/7", b"x", 200)])
        differing = [s for s in everything if a.digests([s]) != b.digests([s])]
        assert differing == [slot_of("/d/7")]
        # so do the same stamp live on one replica and deleted on the other, and the
        # same stamp from two writers
        await a.write([put("/e", b"x", 300), put("/f", b"x", 300, "one")])
        await b.write([delete("/e", 300), put("/f", b"x", 300, "two")])
        assert a.digests([slot_of("/e")]) != b.digests([slot_of("/e")])
        assert a.digests([slot_of("/f")]) != b.digests([slot_of("/f")])
        empty = next(s for s in everything if s not in {slot_of(op.key) for op in ops})
        assert a.digests([empty, empty]) == bytes(2 * DIGEST_BYTES)
    finally:
        await a.close()
        await b.close()


async def test_slot_versions_pages_one_slot_in_key_order(replica: ReplicaStore):
    keys = keys_in_one_slot(6)
    slot = slot_of(keys[0])
    await replica.write([put(k, b"v", 10 + i) for i, k in enumerate(keys)])
    await replica.write([delete(keys[2], 50), put("/elsewhere", b"x", 1)])
    expected = [(k, v(50) if i == 2 else v(10 + i), i == 2) for i, k in enumerate(keys)]

    first, cursor = await replica.slot_versions(slot, None, 4)
    assert (first, cursor) == (expected[:4], keys[3])
    assert await replica.slot_versions(slot, cursor, 4) == (expected[4:], None)
    # a page that ends exactly at the last record says so
    assert await replica.slot_versions(slot, keys[2], 3) == (expected[3:], None)
    assert await replica.slot_versions(slot, keys[-1], 3) == ([], None)
    # a cursor between two keys (the key itself gone or never here)
    assert (await replica.slot_versions(slot, keys[1] + "!", 1))[0] == expected[2:3]
    assert all(k in keys for k, _, _ in (await replica.slot_versions(slot, None, 100))[0])


# -- hints ---------------------------------------------------------------------------------


async def test_hints_keep_the_newest_per_key_and_drop_only_what_was_delivered(
        replica: ReplicaStore):
    await replica.add_hints(2, [put("/a", b"a1", 1), delete("/b", 1)])
    await replica.add_hints(3, [put("/c", b"c", 1)])
    assert replica.hint_targets() == {2, 3} and replica.hint_count() == 3
    await replica.add_hints(2, [put("/a", b"a0", 0)])  # older: the kept one stays
    assert await replica.hints(2, 10) == [put("/a", b"a1", 1), delete("/b", 1)]
    delivered = await replica.hints(2, 10)
    await replica.add_hints(2, [put("/a", b"a2", 2)])  # arrives while delivering
    await replica.drop_hints(2, delivered)
    assert await replica.hints(2, 10) == [put("/a", b"a2", 2)]
    assert replica.hint_count() == 2
    await replica.drop_hints(3, await replica.hints(3, 1))
    assert replica.hint_targets() == {2} and await replica.hints(3, 10) == []


async def test_hints_and_records_survive_a_restart(node: Node):
    durable_only(node)
    r = await node.open(sync=True)
    await r.add_hints(1, [put(f"/h/{i}", b"%d" % i, i) for i in range(5)] + [delete("/h/x", 9)])
    await r.write([put("/k", b"v", 3), delete("/gone", 4)])
    digests = r.digests(range(SLOT_COUNT))
    await r.close()

    r = await node.open(sync=True)
    try:
        assert r.hint_targets() == {1} and r.hint_count() == 6
        assert await r.hints(1, 2) == [put("/h/0", b"0", 0), put("/h/1", b"1", 1)]
        assert (await r.hints(1, 10))[-1] == delete("/h/x", 9)
        assert await r.read("/gone", value=False) == Held(v(4), TOMBSTONE, 0)
        assert await r.read("/k", value=True) == Held(v(3), LIVE, 1, b"v")
        assert r.digests(range(SLOT_COUNT)) == digests
    finally:
        await r.close()


# -- opening: migration, a wiped store, corruption ----------------------------------------------


async def test_keys_stored_before_replication_get_zero_records_once(node: Node):
    store = await node.open_store()
    await store.apply([BatchOp("/old/1", b"one"), BatchOp("/old/2", b"two")])
    r = await node.open(store)
    for key in ("/old/1", "/old/2"):
        assert (await r.slot_versions(slot_of(key), None, 100))[0] == [(key, ZERO, False)]
    assert await r.read("/old/1", value=True) == Held(ZERO, LIVE, 3, b"one")
    assert await r.write([put("/old/1", b"newer", 1)]) == [(True, v(1))]
    assert await r.write([VersionedOp("/old/2", b"zero again", ZERO)]) == [(True, ZERO)]
    assert await r.store.get("/old/2") == b"two"
    # another replica's data from before replication, repaired onto this one
    assert await r.write([VersionedOp("/theirs", b"t", ZERO)]) == [(True, ZERO)]
    assert await r.read("/theirs", value=True) == Held(ZERO, LIVE, 1, b"t")
    if not node.durable:
        await r.close()
        return
    await r.write([delete("/old/2", 2)])
    digests = r.digests(range(SLOT_COUNT))
    await r.close()

    store = await node.open_store()
    await store.put("/after", b"written around the replica store")
    r = await node.open(store)
    try:
        assert r.digests(range(SLOT_COUNT)) == digests
        assert await r.read("/old/1", value=False) == Held(v(1), LIVE, 5)
        assert await r.read("/old/2", value=False) == Held(v(2), TOMBSTONE, 0)
        assert "/after" not in [k for k, _, _ in
                                (await r.slot_versions(slot_of("/after"), None, 100))[0]]
    finally:
        await r.close()


async def test_an_emptied_store_drops_the_live_records_and_keeps_tombstones(
        node: Node, caplog: pytest.LogCaptureFixture):
    durable_only(node)
    r = await node.open()
    await r.write([put("/a", b"a", 1), put("/b", b"b", 2), delete("/c", 3)])
    await r.close()
    node.wipe_store()
    with caplog.at_level(logging.WARNING, "dscluster.cluster.replica"):
        r = await node.open()
    try:
        assert "2 version records claim live keys" in caplog.text
        assert await r.read("/a", value=False) == Held(ZERO, MISSING, 0)
        assert (await r.slot_versions(slot_of("/a"), None, 100))[0] == []
        assert await r.read("/c", value=False) == Held(v(3), TOMBSTONE, 0)
        only_tombstone = [s for s in range(SLOT_COUNT) if r.digests([s]) != bytes(DIGEST_BYTES)]
        assert only_tombstone == [slot_of("/c")]
        assert await r.write([put("/a", b"a", 1)]) == [(True, v(1))]
    finally:
        await r.close()


@pytest.mark.parametrize("record", ["version", "hint"])
async def test_a_corrupt_record_is_a_store_error_naming_the_file(node: Node, record: str):
    durable_only(node)
    r = await node.open()
    await r.write([put("/k", b"v", 1)])
    await r.add_hints(1, [put("/k", b"v", 1)])
    await r.close()
    assert node.records_dir is not None
    db = plyvel.DB(str(node.records_dir))
    prefix = b"r" + slot_of("/k").to_bytes(2, "big") if record == "version" else b"h"
    for k, _ in db.iterator(prefix=prefix):
        db.put(k, b"\x00\x01\x02")
    db.close()

    store = await node.open_store()
    if record == "version":
        # the clean close kept the digests, so the open reads no record: the first read
        # of the key finds the corruption
        r = await node.open(store)
        with pytest.raises(StoreError, match=f"replica records at {node.records_dir}"):
            await r.read("/k", value=False)
        await r.close()
        # an open that recomputes them (as after a crash) reads every record: it refuses
        db = plyvel.DB(str(node.records_dir))
        db.delete(ldb.meta_record("digests"))
        db.close()
        store = await node.open_store()
        with pytest.raises(StoreError, match=f"replica records at {node.records_dir}"):
            await node.open(store)
        await store.close()
        return
    r = await node.open(store)
    try:
        with pytest.raises(StoreError, match=f"replica records at {node.records_dir}: corrupt"):
            await r.hints(1, 10)
    finally:
        await r.close()


async def test_dropping_a_slot_takes_its_keys_records_and_digest_and_nothing_else(
        node: Node):
    durable_only(node)
    r = await node.open(sync=True)
    keys = [f"/s/{i}" for i in range(40)]
    await r.write([put(k, b"x", 5) for k in keys[:30]] + [delete(k, 6) for k in keys[30:]])
    gone = slot_of(keys[0])
    in_slot = [k for k in keys if slot_of(k) == gone]
    kept = {s: r.digests([s]) for s in {slot_of(k) for k in keys} - {gone}}
    assert r.holds(gone)
    assert await r.drop_slot(gone) == len(in_slot)
    assert not r.holds(gone) and r.digests([gone]) == bytes(DIGEST_BYTES)
    assert all(r.digests([s]) == d for s, d in kept.items())
    await r.close()
    r = await node.open(sync=True)  # gone for good, not only from memory
    try:
        assert not r.holds(gone)
        for k in keys:
            held = await r.read(k, value=False)
            assert (held.state == MISSING) == (k in in_slot), k
    finally:
        await r.close()


async def test_a_clean_close_keeps_the_digests_and_a_crash_recomputes_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dscluster.cluster.records import LevelDBRecords

    async def opened() -> ReplicaStore:
        return await ReplicaStore.open(MemoryStore(), tmp_path / "records", sync=False)

    r = await opened()
    await r.write([put(f"/k/{i}", b"v", 5) for i in range(50)] + [delete("/gone", 6)])
    before = r.digests(range(SLOT_COUNT))
    store = r.store
    await r.close()
    visits = 0
    visit = LevelDBRecords.visit

    async def counted(self, fn):  # type: ignore[no-untyped-def]
        nonlocal visits
        visits += 1
        await visit(self, fn)

    monkeypatch.setattr(LevelDBRecords, "visit", counted)
    r = await ReplicaStore.open(store, tmp_path / "records", sync=False)
    assert visits == 0 and r.digests(range(SLOT_COUNT)) == before
    await r.write([put("/k/new", b"v", 7)])
    after = r.digests(range(SLOT_COUNT))
    await r._records.close()  # a crash: no close of the replica, no digests kept
    r = await ReplicaStore.open(store, tmp_path / "records", sync=False)
    assert visits == 1 and r.digests(range(SLOT_COUNT)) == after
    await r.close()

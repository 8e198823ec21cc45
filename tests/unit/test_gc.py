"""Pins and garbage collection (dscluster.gc) on an in-memory cluster: what is marked,
what is freed, and what concurrent adds and gateway writes keep."""

from __future__ import annotations

import os

import pytest
import trio

from dscluster.blocks import BLOCKS_PREFIX
from dscluster.client.datastore import ClusterDatastore
from dscluster.datastore import BatchOp
from dscluster.errors import NotFound
from dscluster.gc.claims import ClaimingDatastore, open_claims
from dscluster.gc.collect import plan_collection, sweep
from dscluster.gc.keys import LEASES_PREFIX, OWNED_PREFIX, owned_key
from dscluster.gc.pins import add_pin, list_pins, remove_pin
from dscluster.query import Query
from dscluster.s3 import keymap
from dscluster.s3.meta import ObjectMeta, PartRecord, encode
from dscluster.testing.memcluster import MemoryCluster
from dscluster.unixfs import AddOptions, BlockCid, add_stream, linked_cids, read_file

CHUNK = 1024
OPTIONS = AddOptions(chunk_size=CHUNK)


async def source(data: bytes):  # type: ignore[no-untyped-def]
    yield data


async def add(ds: ClusterDatastore, data: bytes, **claims: float) -> str:
    async with open_claims(ds, "test", **claims) as claiming:
        return (await add_stream(claiming, source(data), options=OPTIONS)).cid


async def content(ds: ClusterDatastore, cid: str) -> bytes:
    return b"".join([piece async for piece in read_file(ds, cid)])


async def keys(ds: ClusterDatastore, prefix: str) -> set[str]:
    return {e.key async for e in ds.query(Query(prefix=prefix, keys_only=True))}


@pytest.fixture
async def ds() -> ClusterDatastore:
    cluster = await MemoryCluster.start(3, 2)
    return cluster.client()


async def collect(ds: ClusterDatastore, grace: float = 0) -> tuple[int, int]:
    plan = await plan_collection(ds, grace=grace)
    freed = await sweep(ds, plan)
    return len(plan.garbage), freed.blocks


async def test_unreferenced_add_is_freed_and_its_lease_removed(ds: ClusterDatastore) -> None:
    cid = await add(ds, os.urandom(5 * CHUNK))  # 5 leaves and their parent
    assert len(await keys(ds, BLOCKS_PREFIX)) == 6
    assert len(await keys(ds, OWNED_PREFIX)) == 6
    assert await collect(ds) == (6, 6)
    assert await keys(ds, BLOCKS_PREFIX) == set()
    assert await keys(ds, OWNED_PREFIX) == set()
    assert await keys(ds, LEASES_PREFIX) == set()
    with pytest.raises(NotFound):
        await ds.get(BlockCid.parse(cid).key)


async def test_roots_keep_their_dags_byte_identical(ds: ClusterDatastore) -> None:
    pinned, in_object, in_part, loose = (os.urandom(3 * CHUNK + 7) for _ in range(4))
    pin_cid = await add(ds, pinned)
    await add_pin(ds, pin_cid)
    obj_cid = await add(ds, in_object)
    meta = ObjectMeta(size=len(in_object), etag="e", mtime_ms=1, cid=obj_cid)
    await ds.put(keymap.meta_key("bkt", "big"), encode(meta))
    part_cid = await add(ds, in_part)
    part = PartRecord(cid=part_cid, size=len(in_part), etag="p", mtime_ms=1)
    await ds.put(keymap.part_key("bkt", "0" * 32, 1), encode(part))
    loose_cid = await add(ds, loose)

    plan = await plan_collection(ds, grace=0)
    assert plan.roots == {"upload parts": 1, "pins": 1, "S3 objects": 1}
    assert len(plan.garbage) == 5  # the loose file's 4 leaves and root
    assert (await sweep(ds, plan)).blocks == 5
    assert await content(ds, pin_cid) == pinned
    assert await content(ds, obj_cid) == in_object
    assert await content(ds, part_cid) == in_part
    assert not await ds.has(BlockCid.parse(loose_cid).key)

    await remove_pin(ds, pin_cid)
    assert await collect(ds) == (5, 5)
    assert not await ds.has(BlockCid.parse(pin_cid).key)
    assert await content(ds, obj_cid) == in_object


async def test_blocks_of_others_are_never_freed(ds: ClusterDatastore) -> None:
    # Kubo through the gateway's "blocks" bucket: data key and object record
    kubo = os.urandom(100)
    kubo_key = BlockCid.for_block(kubo, version=1, codec=0x55).key
    name = kubo_key[len(BLOCKS_PREFIX):]
    await ds.apply([BatchOp(keymap.meta_key("blocks", name), encode(ObjectMeta.foreign(100))),
                    BatchOp(kubo_key, kubo)])
    # a block dscluster claimed too (the same bytes added by both) stays
    await ClaimingDatastore(ds).put(kubo_key, kubo)
    # a block written around the importer (no claim) stays
    other = os.urandom(100)
    other_key = BlockCid.for_block(other, version=1, codec=0x55).key
    await ds.put(other_key, other)
    plan = await plan_collection(ds, grace=0)
    assert plan.s3_blocks == 1 and plan.garbage == []
    await sweep(ds, plan)
    assert await ds.get(kubo_key) == kubo and await ds.get(other_key) == other


async def test_grace_period_keeps_young_claims(ds: ClusterDatastore) -> None:
    await add(ds, os.urandom(2 * CHUNK))
    plan = await plan_collection(ds, grace=900)
    assert plan.young == 3 and plan.garbage == []


async def test_live_lease_protects_an_add_longer_than_the_grace(ds: ClusterDatastore) -> None:
    grace = 0.5
    async with open_claims(ds, "slow add", refresh=0.1) as claiming:
        cid = (await add_stream(claiming, source(os.urandom(2 * CHUNK)),
                                options=OPTIONS)).cid
        await trio.sleep(2 * grace)  # the blocks' claims are older than the grace now
        plan = await plan_collection(ds, grace=grace)
        assert plan.live_leases == 1 and plan.young == 3 and plan.garbage == []
    # the lease's last write keeps the blocks for one more grace period after the add
    assert (await plan_collection(ds, grace=grace)).garbage == []
    await trio.sleep(2 * grace)
    plan = await plan_collection(ds, grace=grace)
    assert plan.stale_leases and len(plan.garbage) == 3
    await sweep(ds, plan)
    assert not await ds.has(BlockCid.parse(cid).key)


async def test_block_claimed_again_before_the_sweep_stays(ds: ClusterDatastore) -> None:
    data = os.urandom(CHUNK)
    cid = await add(ds, data)
    plan = await plan_collection(ds, grace=0)
    assert len(plan.garbage) == 1
    await add(ds, data)  # the same file added again, after the plan
    assert (await sweep(ds, plan)).blocks == 0
    assert await content(ds, cid) == data


async def test_block_claimed_again_during_the_sweep_is_put_back(
        ds: ClusterDatastore, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(CHUNK)
    cid = await add(ds, data)
    key = BlockCid.parse(cid).key
    plan = await plan_collection(ds, grace=0)
    apply = ds.apply

    async def racing_apply(ops: list[BatchOp]) -> None:
        await apply(ops)
        if any(op.key == key and op.value is None for op in ops):
            # an add that wrote its claim and the block just before our delete landed
            await ds.put(owned_key(key), b"")

    monkeypatch.setattr(ds, "apply", racing_apply)
    freed = await sweep(ds, plan)
    assert (freed.blocks, freed.restored) == (0, 1)
    assert await content(ds, cid) == data


async def test_pin_add_checks_the_dag_and_pins_list_and_remove(ds: ClusterDatastore) -> None:
    cid = await add(ds, os.urandom(3 * CHUNK))
    await add_pin(ds, cid, name="three")
    assert [(p.cid, p.name) for p in await list_pins(ds)] == [(cid, "three")]
    await remove_pin(ds, cid)
    assert await list_pins(ds) == []
    with pytest.raises(NotFound, match="is not pinned"):
        await remove_pin(ds, cid)

    broken = await add(ds, os.urandom(2 * CHUNK))
    root = BlockCid.parse(broken)
    leaves = linked_cids(root, await ds.get(root.key))
    await ds.delete(leaves[0].key)
    with pytest.raises(NotFound, match=r"can't pin .*: 1 block\(s\) of its DAG are "
                       rf"missing: {leaves[0]}$"):
        await add_pin(ds, broken)
    assert await list_pins(ds) == []

"""Replicated reads and writes on an in-memory cluster (dscluster.testing.memcluster):
quorums, hints, read repair, restamping under clock skew, listings across replicas."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
import trio
from multiformats import multihash

from dscluster import wire
from dscluster.blocks import BLOCKS_PREFIX
from dscluster.cluster.quorum import STRAGGLER_GRACE
from dscluster.cluster.replica import VersionedOp
from dscluster.cluster.versions import MAX_AHEAD_MS, HybridClock
from dscluster.datastore import BatchOp
from dscluster.errors import Forbidden, InvalidArgument, NotFound, Unavailable
from dscluster.keys import slot_of
from dscluster.limits import Limits
from dscluster.query import Query
from dscluster.testing.memcluster import MemoryCluster


def block_key(data: bytes) -> str:
    mh = bytes(multihash.wrap(hashlib.sha256(data).digest(), "sha2-256"))
    return BLOCKS_PREFIX + base64.b32encode(mh).decode().rstrip("=")


async def listing(ds, prefix: str = "/") -> list[str]:
    return [e.key async for e in ds.query(Query(prefix=prefix, keys_only=True))]


async def test_any_one_node_down_everything_works_r3():
    cluster = await MemoryCluster.start(3, 3)
    ds = cluster.client()
    for i in range(30):
        await ds.put(f"/k/{i}", b"v%d" % i)
    for dead in range(3):
        cluster.kill(dead)
        assert await ds.get("/k/7") == b"v7"
        await ds.put(f"/dead{dead}", b"x")
        await ds.delete("/k/3")
        assert not await ds.has("/k/3")
        assert await ds.get_size("/k/8") == 2
        keys = await listing(ds, "/k")
        assert keys == sorted(f"/k/{i}" for i in range(30) if i != 3)
        cluster.revive(dead)
    await cluster.repair_all()
    assert cluster.digests(0) == cluster.digests(1) == cluster.digests(2)


async def test_a_write_without_its_quorum_fails_naming_the_slot_and_the_owners():
    cluster = await MemoryCluster.start(5, 3)
    ds = cluster.client()
    key = "/two/down"
    data = b"a block"
    bkey = block_key(data)
    await ds.put(bkey, data)
    await ds.put(key, b"before")
    for owner in cluster.map.owners[slot_of(key)][1:]:
        cluster.kill(owner)
    with pytest.raises(Unavailable) as e:
        await ds.put(key, b"after")
    msg = str(e.value)
    assert f"slot {slot_of(key)}" in msg and "1 of 3 owners applied it" in msg
    for owner in cluster.map.owners[slot_of(key)][1:]:
        assert f"member {owner}" in msg
    # blocks still read from whichever owner is left, whichever two are down
    for i in range(5):
        cluster.revive(i)
    for owner in cluster.map.owners[slot_of(bkey)][:2]:
        cluster.kill(owner)
    assert await ds.get(bkey) == data


async def test_r2_one_owner_down_writes_on_with_a_hint_that_is_delivered():
    cluster = await MemoryCluster.start(3, 2)
    ds = cluster.client()
    key = next(f"/h/{i}" for i in range(100))
    owners = cluster.map.owners[slot_of(key)]
    holder = ({0, 1, 2} - set(owners)).pop()
    cluster.kill(owners[1])
    await ds.put(key, b"hinted")
    assert cluster.nodes[holder].server.replica.hint_count() == 1
    assert await ds.get(key) == b"hinted"
    cluster.revive(owners[1])
    await cluster.nodes[holder].anti_entropy.deliver_hints()
    assert cluster.nodes[holder].server.replica.hint_count() == 0
    held = await cluster.nodes[owners[1]].server.replica.read(key, value=True)
    assert held.value == b"hinted"


async def test_r_equals_n_an_owner_that_applied_the_write_keeps_the_hint():
    # with every member an owner there is no non-owner to hint to: the owner skipped as
    # down would miss the write until a full anti-entropy pass
    cluster = await MemoryCluster.start(3, 3)
    ds = cluster.client()
    cluster.kill(2)
    await ds.put("/h/r3", b"for node 2")
    holders = [i for i in (0, 1) if cluster.nodes[i].server.replica.hint_count()]
    assert len(holders) == 1
    cluster.revive(2)
    assert await cluster.nodes[holders[0]].anti_entropy.deliver_hints() == 1
    held = await cluster.nodes[2].server.replica.read("/h/r3", value=True)
    assert held.value == b"for node 2"


async def test_an_owner_held_hint_does_not_count_toward_durability():
    # R=2 on 2 nodes: one owner applied it, no second copy anywhere: not acknowledged
    cluster = await MemoryCluster.start(2, 2)
    ds = cluster.client()
    cluster.kill(1)
    with pytest.raises(Unavailable, match="1 of 2 owners applied it"):
        await ds.put("/h/r2", b"one copy")


def black_hole(cluster: MemoryCluster, i: int, kind: type) -> None:
    """Member ``i`` stays connected but never answers requests of ``kind``."""
    server = cluster.nodes[i].server
    answer = server._answer

    async def silent(msg, caller):
        if isinstance(msg, kind):
            await trio.sleep_forever()
        return await answer(msg, caller)

    server._answer = silent


async def test_an_owner_that_stops_answering_costs_a_write_a_grace_not_a_timeout(
        autojump_clock):
    cluster = await MemoryCluster.start(3, 3)
    ds = cluster.client()
    black_hole(cluster, 2, wire.WriteRecords)
    t0 = trio.current_time()
    await ds.put("/slow/owner", b"v")
    took = trio.current_time() - t0
    assert took <= STRAGGLER_GRACE + 0.1, took
    hints = sum(n.server.replica.hint_count() for n in cluster.nodes[:2])
    assert hints == 1  # node 2 gets it when it answers again


@pytest.mark.parametrize("silent", [0, 1])  # the owner asked for the value, or another
async def test_an_owner_that_stops_answering_costs_a_read_a_grace_not_a_timeout(
        autojump_clock, silent):
    cluster = await MemoryCluster.start(3, 3)
    ds = cluster.client()
    data = b"a block read while an owner is silent"
    bkey = block_key(data)
    await ds.put(bkey, data)
    await ds.put("/slow/read", b"mutable")
    for key in (bkey, "/slow/read"):
        owner = cluster.map.owners[slot_of(key)][silent]
        black_hole(cluster, owner, wire.ReadRecord)
    t0 = trio.current_time()
    assert await ds.get(bkey) == data
    assert await ds.get("/slow/read") == b"mutable"
    took = trio.current_time() - t0
    assert took <= 2 * STRAGGLER_GRACE + 0.1, took


async def test_read_repair_brings_a_stale_owner_up_to_date():
    cluster = await MemoryCluster.start(3, 3)
    ds = cluster.client()
    key = "/rr"
    await ds.put(key, b"old")
    cluster.kill(2)
    await ds.put(key, b"new")
    cluster.revive(2)
    stale = cluster.nodes[2].server.replica
    assert (await stale.read(key, value=True)).value == b"old"
    # reads ask two owners; ask until the stale one was among them
    for _ in range(3):
        assert await ds.get(key) == b"new"
        cluster.kill(0 if (await stale.read(key, value=True)).value == b"old" else 2)
        assert await ds.get(key) == b"new"
        for i in range(3):
            cluster.revive(i)
    assert (await stale.read(key, value=True)).value == b"new"


async def test_a_delete_is_not_resurrected_by_an_owner_that_missed_it():
    cluster = await MemoryCluster.start(3, 3)
    ds = cluster.client()
    await ds.put("/gone", b"v")
    cluster.kill(1)
    await ds.delete("/gone")
    cluster.revive(1)
    for dead in (0, 2):  # leave the stale owner and one that saw the delete
        cluster.kill(dead)
        with pytest.raises(NotFound):
            await ds.get("/gone")
        assert "/gone" not in await listing(ds)
        cluster.revive(dead)
    await cluster.repair_all()
    assert (await cluster.nodes[1].server.replica.read("/gone", value=False)).state == 2


async def test_a_corrupt_block_replica_is_skipped_and_repaired():
    cluster = await MemoryCluster.start(3, 3)
    ds = cluster.client()
    data = b"the real block"
    key = block_key(data)
    await ds.put(key, data)
    primary = cluster.map.owners[slot_of(key)][0]
    replica = cluster.nodes[primary].server.replica
    await replica.store.put(key, b"rotten bytes")  # bit rot under the store
    assert await ds.get(key) == data
    assert await replica.store.get(key) == data


async def test_a_later_write_wins_over_a_writer_whose_clock_runs_ahead():
    cluster = await MemoryCluster.start(3, 3)
    ahead, behind = cluster.client(writer="ahead"), cluster.client(writer="behind")
    ahead.replicas.clock = HybridClock("ahead", wall=lambda: time.time() + 180)
    await ahead.put("/skew", b"early")
    await behind.put("/skew", b"late")  # restamped above "early"
    assert await ahead.get("/skew") == b"late"
    assert await behind.get("/skew") == b"late"


async def test_a_write_too_far_in_the_future_is_refused():
    cluster = await MemoryCluster.start(3, 3)
    ds = cluster.client()
    ds.replicas.clock = HybridClock("w", wall=lambda: time.time() + MAX_AHEAD_MS / 1000 + 60)
    with pytest.raises(InvalidArgument, match=r"ahead of node .* clock"):
        await ds.put("/future", b"x")
    with pytest.raises(NotFound):
        await cluster.client().get("/future")


async def test_concurrent_versions_resolve_to_the_newest_on_every_reader():
    cluster = await MemoryCluster.start(3, 3)
    ds = cluster.client()
    await ds.put("/c", b"v1")
    # owners disagree: each holds a different version
    clock = HybridClock("x")
    v2, v3 = clock.now(), clock.now()
    await cluster.nodes[0].server.replica.write([VersionedOp("/c", b"v2", v2)])
    await cluster.nodes[1].server.replica.write([VersionedOp("/c", None, v3)])
    cluster.kill(1)  # the tombstone is on the dead one: v2 beats v1, and repairs it
    assert await ds.get("/c") == b"v2"
    assert (await cluster.nodes[2].server.replica.read("/c", value=True)).value == b"v2"
    cluster.revive(1)
    for dead in (0, 2):  # the tombstone beats v2 wherever it is asked
        cluster.kill(dead)
        with pytest.raises(NotFound):
            await ds.get("/c")
        cluster.revive(dead)
    for node in cluster.nodes:
        assert (await node.server.replica.read("/c", value=False)).version == v3


async def test_listings_are_complete_without_duplicates_when_a_node_dies_midway():
    # small pages, so that the listing is still going when the node dies
    cluster = await MemoryCluster.start(3, 3, limits=Limits(max_page_entries=16))
    ds = cluster.client()
    keys = sorted(f"/l/{i:04d}" for i in range(500))
    await ds.apply([BatchOp(k, b"v") for k in keys])
    assert await listing(ds, "/l") == keys
    seen = []
    async for e in ds.query(Query(prefix="/l", keys_only=True)):
        seen.append(e.key)
        if len(seen) == 10:
            cluster.kill(0)
    assert seen == keys


def _primary_slot_key(cmap, prefix: str, member: int) -> str:
    """A key under ``prefix`` whose slot lists ``member`` first (a listing's first pick)."""
    return next(k for k in (f"{prefix}{i}" for i in range(10_000))
                if cmap.read_set(slot_of(k))[0] == member)


async def test_a_listing_is_as_strong_as_a_read_when_the_first_owner_is_stale():
    # R=2: an owner back from the dead, seen up by the client, whose hints have not
    # arrived: a listing that trusted it alone would miss a write and show a delete
    cluster = await MemoryCluster.start(3, 2)
    ds = cluster.client()
    await cluster.repair_all()  # every node has compared its slots: none is catching up
    cmap = cluster.map
    stale = 1
    gone, new, changed = (_primary_slot_key(cmap, f"/q/{name}-", stale)
                          for name in ("gone", "new", "changed"))
    await ds.put(gone, b"v")
    await ds.put(changed, b"old")
    cluster.kill(stale)
    await ds.delete(gone)
    await ds.put(new, b"v")
    await ds.put(changed, b"newer")
    cluster.revive(stale)
    ds.caller.liveness.reachable(stale)  # as after any answer from it
    # nothing delivered the hints: the stale owner still holds what it held
    assert (await cluster.nodes[stale].server.replica.read(gone, value=False)).state == 1
    assert (await cluster.nodes[stale].server.replica.read(new, value=False)).state == 0
    keys = await listing(ds, "/q")
    assert gone not in keys and new in keys and changed in keys
    values = {e.key: e.value async for e in ds.query(Query(prefix="/q"))}
    assert values == {new: b"v", changed: b"newer"}


async def test_reads_and_writes_fail_cleanly_when_every_owner_is_down():
    cluster = await MemoryCluster.start(3, 1)
    ds = cluster.client()
    key = "/solo"
    cluster.kill(cluster.map.owners[slot_of(key)][0])
    with pytest.raises(Unavailable, match=f"slot {slot_of(key)}"):
        await ds.put(key, b"x")
    with pytest.raises(Unavailable, match=f"slot {slot_of(key)}"):
        await ds.get(key)


async def test_write_once_nodes_refuse_overwrites_and_deletes_on_every_replica():
    cluster = await MemoryCluster.start(3, 3, disable_delete=True)
    ds = cluster.client()
    await ds.put("/once", b"first")
    await ds.put("/once", b"first")  # the same bytes again: no change, accepted
    with pytest.raises(Forbidden, match="overwrites are disabled"):
        await ds.put("/once", b"second")
    with pytest.raises(Forbidden, match="deletes are disabled"):
        await ds.delete("/once")
    for node in cluster.nodes:
        assert (await node.server.replica.read("/once", value=True)).value == b"first"


async def test_a_read_only_client_reads_but_cannot_write_or_repair():
    cluster = await MemoryCluster.start(3, 3)
    await cluster.client().put("/ro", b"v")
    ro = cluster.client(role="readonly")
    assert await ro.get("/ro") == b"v"
    with pytest.raises(Forbidden, match="read-only"):
        await ro.put("/ro", b"w")
    with pytest.raises(Forbidden, match="read-only"):
        await ro.delete("/ro")
    assert await cluster.client().get("/ro") == b"v"


async def test_many_concurrent_writes_of_one_key_all_succeed_and_one_wins():
    cluster = await MemoryCluster.start(3, 3)
    ds = cluster.client()
    values = [bytes([i]) * (10 + i) for i in range(40)]
    async with trio.open_nursery() as n:
        for v in values:
            n.start_soon(ds.put, "/race", v)
    got = await ds.get("/race")
    assert got in values
    for node in cluster.nodes:
        assert (await node.server.replica.read("/race", value=True)).value == got


async def test_a_batch_of_blocks_skips_the_check_and_any_other_batch_is_checked():
    cluster = await MemoryCluster.start(3, 1)
    checks = 0
    for node in cluster.nodes:
        answer = node.server._answer

        async def counting(msg, caller, answer=answer):
            nonlocal checks
            checks += isinstance(msg, wire.CheckBatch)
            return await answer(msg, caller)

        node.server._answer = counting
    ds = cluster.client()
    blocks = [b"block %d" % i for i in range(40)]  # enough to span every node
    await ds.apply([BatchOp(block_key(b), b) for b in blocks])
    assert checks == 0
    for b in blocks:
        assert await ds.get(block_key(b)) == b
    await ds.apply([BatchOp(block_key(b"one more"), b"one more")]
                   + [BatchOp(f"/plain/{i}", b"v") for i in range(40)])
    assert checks == 3  # one CheckBatch per node: not only blocks

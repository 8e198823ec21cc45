"""The move coordinator (cluster/rebalance.py) on an in-process cluster: real node
servers, replica stores, anti-entropy and map gossip over dscluster.testing.memcluster,
on trio's MockClock. Real processes make the same claims in
tests/integration/test_elastic.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing

from dscluster import wire
from dscluster.cluster.handoff import drop_handed_over
from dscluster.cluster.rebalance import Coordinator
from dscluster.clustermap import RETIRED
from dscluster.errors import ClusterError, Forbidden, InvalidArgument, NotFound
from dscluster.keys import SLOT_COUNT, Key, slot_of
from dscluster.query import Query
from dscluster.testing.memcluster import MemoryCluster


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def gossip(c: MemoryCluster, n: trio.Nursery) -> None:
    for node in c.nodes:
        n.start_soon(node.caller.watch)


def coordinator(c: MemoryCluster, tmp_path: Path) -> Coordinator:
    boot = c.nodes[0]
    coord = Coordinator(boot.server.state, boot.caller, 0, tmp_path / "rebalance.json")
    boot.server.on_rebalance = coord.handle
    return coord


async def until_done(coord: Coordinator) -> None:
    with trio.fail_after(600):
        while coord.job["state"] == "moving":
            await trio.sleep(0.5)


async def test_a_new_member_gets_its_share_and_every_write_survives_the_move(
        autojump_clock, tmp_path):
    c = await MemoryCluster.start(3, 3)
    ds = c.client()
    for k in range(300):
        await ds.put(Key(f"/pre/{k}"), b"v%d" % k)
    for k in range(0, 300, 3):
        await ds.delete(Key(f"/pre/{k}"))
    new = await c.add_node()
    coord = coordinator(c, tmp_path)
    written: dict[str, bytes | None] = {}

    async def load() -> None:
        # writes and deletes all through the move, from a client whose map goes stale
        for k in range(400):
            key = f"/during/{k}"
            await ds.put(Key(key), b"d%d" % k)
            written[key] = b"d%d" % k
            if k % 5 == 0:
                await ds.delete(Key(f"/pre/{k % 300 + 1}"))
                written[f"/pre/{k % 300 + 1}"] = None
            await trio.sleep(0.05)

    async with trio.open_nursery() as n:
        await gossip(c, n)
        n.start_soon(coord.run)
        plan = await coord.handle(wire.Rebalance(action="plan"))
        assert plan["slots"] == SLOT_COUNT * 3 // 4 - 1 or abs(
            plan["slots"] - SLOT_COUNT * 3 // 4) <= 3, plan
        assert c.nodes[0].server.state.map.moving == {}  # a dry run moves nothing
        n.start_soon(load)
        job = await coord.handle(wire.Rebalance(action="start"))
        assert job["state"] == "moving" and job["slots_total"] == plan["slots"]
        await until_done(coord)
        await trio.sleep(10)  # the load finishes
        n.cancel_scope.cancel()
    cmap = c.nodes[0].server.state.map
    assert coord.job["state"] == "finished" and not cmap.moving
    # the old owners forget what they handed over, and keep what they own
    for node in c.nodes:
        assert node.server.state.map.epoch == cmap.epoch
        before = await node.server.store.count()
        dropped = await drop_handed_over(node.server.replica, node.server.state, node.index)
        assert (dropped > 0) == (node.index != new.index), (node.index, dropped)
        # (records of deletes went too: they have no value in the store)
        assert (await node.server.store.count() < before) == (node.index != new.index)
        async for e in node.server.store.query(Query(prefix="/", keys_only=True)):
            assert cmap.owns(node.index, slot_of(e.key)), e.key
        assert not any(node.server.replica.holds(s) for s in range(SLOT_COUNT)
                       if not cmap.owns(node.index, s))
    held = [sum(i in o for o in cmap.owners) for i in range(4)]
    # every member within one slot of its share of the 3 x 16384 replicas
    assert max(held) - min(held) <= 1 and sum(held) == 3 * SLOT_COUNT, held
    fresh = c.client()
    for k in range(300):
        key = f"/pre/{k}"
        want = written.get(key, None if k % 3 == 0 else b"v%d" % k)
        if want is None:
            with pytest.raises(NotFound):  # deletes are not resurrected
                await fresh.get(Key(key))
        else:
            assert await fresh.get(Key(key)) == want
    for key, want in written.items():
        if want is not None:
            assert await fresh.get(Key(key)) == want
    # the new member holds every live key of its slots itself, not by asking others
    mine = [k for k in written if new.index in cmap.owners[slot_of(k)] and written[k]]
    assert mine
    for key in mine:
        held_rec = await new.server.replica.read(key, value=True)
        assert held_rec.value == written[key]
    assert json.loads((tmp_path / "rebalance.json").read_text())["state"] == "finished"


async def test_a_coordinator_killed_mid_move_resumes_from_its_files(autojump_clock, tmp_path):
    c = await MemoryCluster.start(3, 2)
    ds = c.client()
    for k in range(200):
        await ds.put(Key(f"/k/{k}"), b"x%d" % k)
    await c.add_node()
    coord = coordinator(c, tmp_path)
    async with trio.open_nursery() as n:
        await gossip(c, n)
        n.start_soon(coord.run)
        c.kill(3)  # the target is down: nothing can finish yet
        await coord.handle(wire.Rebalance(action="start", rate=1_000_000))
        await trio.sleep(5)
        assert coord.job["slots_done"] == 0 and c.nodes[0].server.state.map.moving
        assert "target node 3" in (coord.status()["last_error"] or "")
        n.cancel_scope.cancel()  # the coordinator dies
    c.revive(3)
    again = coordinator(c, tmp_path)  # a new process: the job file and the saved map
    assert again.job["state"] == "moving" and again.job["rate"] == 1_000_000
    async with trio.open_nursery() as n:
        await gossip(c, n)
        n.start_soon(again.run)
        await until_done(again)
        n.cancel_scope.cancel()
    assert not c.nodes[0].server.state.map.moving
    fresh = c.client()
    for k in range(200):
        assert await fresh.get(Key(f"/k/{k}")) == b"x%d" % k


async def test_abort_leaves_the_old_owners_in_charge(autojump_clock, tmp_path):
    c = await MemoryCluster.start(3, 3)
    ds = c.client()
    for k in range(50):
        await ds.put(Key(f"/k/{k}"), b"a")
    await c.add_node()
    coord = coordinator(c, tmp_path)
    async with trio.open_nursery() as n:
        await gossip(c, n)
        n.start_soon(coord.run)
        c.kill(3)
        await coord.handle(wire.Rebalance(action="start"))
        before = c.nodes[0].server.state.map
        assert before.moving
        with pytest.raises(ClusterError, match="is running"):
            await coord.handle(wire.Rebalance(action="start"))
        job = await coord.handle(wire.Rebalance(action="abort"))
        assert job["state"] == "aborted"
        after = c.nodes[0].server.state.map
        assert not after.moving and after.owners == before.owners
        assert after.epoch > before.epoch and after.layout_epoch == before.layout_epoch
        n.cancel_scope.cancel()
    for k in range(50):
        assert await c.client().get(Key(f"/k/{k}")) == b"a"


async def test_remove_node_drains_it_then_retires_it(autojump_clock, tmp_path):
    c = await MemoryCluster.start(4, 3)
    ds = c.client()
    for k in range(200):
        await ds.put(Key(f"/k/{k}"), b"r%d" % k)
    coord = coordinator(c, tmp_path)
    async with trio.open_nursery() as n:
        await gossip(c, n)
        n.start_soon(coord.run)
        with pytest.raises(InvalidArgument, match="bootstrapper"):
            await coord.handle(wire.Rebalance(action="remove", node=0))
        await coord.handle(wire.Rebalance(action="remove", node=2))
        await until_done(coord)
        cmap = c.nodes[0].server.state.map
        assert cmap.members[2].state == RETIRED
        assert not any(cmap.owns(2, s) for s in range(SLOT_COUNT))
        with pytest.raises(InvalidArgument, match="3 replicas"):
            await coord.handle(wire.Rebalance(action="remove", node=1))
        c.kill(2)  # gone for good: nothing asks it
        fresh = c.client()
        for k in range(200):
            assert await fresh.get(Key(f"/k/{k}")) == b"r%d" % k
        n.cancel_scope.cancel()


async def test_a_node_that_is_the_last_live_owner_of_a_slot_is_not_removed(
        autojump_clock, tmp_path):
    c = await MemoryCluster.start(4, 2)
    coord = coordinator(c, tmp_path)
    async with trio.open_nursery() as n:
        await gossip(c, n)
        c.kill(1)
        c.kill(3)
        await trio.sleep(3)  # node 0 sees them down
        with pytest.raises(InvalidArgument, match="last live owner"):
            await coord.handle(wire.Rebalance(action="remove", node=2))
        n.cancel_scope.cancel()


async def test_a_writer_with_a_map_older_than_the_layout_is_sent_to_refresh(
        autojump_clock, tmp_path):
    c = await MemoryCluster.start(3, 3)
    stale = c.client()
    await stale.put(Key("/x"), b"1")
    await c.add_node()
    coord = coordinator(c, tmp_path)
    async with trio.open_nursery() as n:
        await gossip(c, n)
        c.kill(3)  # keeps the move staged
        await coord.handle(wire.Rebalance(action="start"))
        await trio.sleep(3)  # every node has the staged map; the client does not
        assert stale.caller.state.map.layout_epoch < c.nodes[1].server.state.map.layout_epoch
        await stale.put(Key("/x"), b"2")  # refused once, then written with the new map
        assert stale.caller.state.map.layout_epoch == c.nodes[1].server.state.map.layout_epoch
        assert await c.client().get(Key("/x")) == b"2"
        n.cancel_scope.cancel()


async def test_only_admins_and_nodes_move_slots(autojump_clock, tmp_path):
    c = await MemoryCluster.start(3, 1)
    coordinator(c, tmp_path)
    for role in ("client", "readonly"):
        caller = c.client(role=role).caller
        with pytest.raises(Forbidden, match="admin token"):
            await caller.ask(0, wire.Rebalance(action="start"))
        # anyone may look
        ans = await caller.ask(0, wire.Rebalance(action="status"))
        assert ans.status["state"] == "idle"
    ans = await c.client(role="admin").caller.ask(0, wire.Rebalance(action="plan"))
    assert ans.status["slots"] == 0
    with pytest.raises(Forbidden, match="member 0"):
        await c.client(role="admin").caller.ask(1, wire.Rebalance(action="status"))


async def test_weights_give_members_slots_in_proportion(autojump_clock, tmp_path):
    c = await MemoryCluster.start(3, 1)
    await c.add_node()
    coord = coordinator(c, tmp_path)
    async with trio.open_nursery() as n:
        await gossip(c, n)
        n.start_soon(coord.run)
        plan = await coord.handle(wire.Rebalance(action="plan", weights={"3": 2.0}))
        after = {m["index"]: m["slots_after"] for m in plan["members"]}
        # 2 / 5 and 1 / 5 of 16384, within one slot
        assert abs(after[3] - SLOT_COUNT * 2 / 5) <= 1, after
        assert all(abs(after[i] - SLOT_COUNT / 5) <= 1 for i in range(3)), after
        assert c.nodes[0].server.state.map.members[3].weight == 1.0  # a dry run
        await coord.handle(wire.Rebalance(action="start", weights={"3": 2.0}))
        await until_done(coord)
        cmap = c.nodes[0].server.state.map
        assert cmap.members[3].weight == 2.0
        assert sum(3 in o for o in cmap.owners) == after[3]
        for bad in ({"9": 1}, {"1": 0}, {"1": "heavy"}):
            with pytest.raises(InvalidArgument):
                await coord.handle(wire.Rebalance(action="plan", weights=bad))
        n.cancel_scope.cancel()

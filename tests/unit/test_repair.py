"""Anti-entropy, hint delivery and client-side repair on an in-process cluster (real node
servers and replica stores over dscluster.testing.memcluster, no sockets)."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from dscluster import wire
from dscluster.client.repair import disagreeing_slots, repair_slots, slot_health
from dscluster.cluster.liveness import RETRY_AFTER
from dscluster.cluster.repair import HINT_RETRY, SETTLE_MARGIN, AntiEntropy, TokenBucket
from dscluster.cluster.replica import LIVE, TOMBSTONE, VersionedOp
from dscluster.cluster.versions import Version
from dscluster.clustermap import ClusterMap
from dscluster.keys import SLOT_COUNT, slot_of
from dscluster.testing.memcluster import MemoryCluster
from dscluster.wire import Message
from tests.unit.test_dsclient_files import dsclient

ALL = list(range(SLOT_COUNT))
MiB = 1 << 20


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def write(j: int) -> tuple[bytes | None, Version]:
    """The j-th write of a key (j >= 1): every third one a delete."""
    return (None if j % 3 == 0 else f"value {j}".encode()), Version(j << 16, f"w{j}")


async def put(cluster: MemoryCluster, i: int, key: str, j: int) -> None:
    value, version = write(j)
    await cluster.nodes[i].server.replica.write([VersionedOp(key, value, version)])


async def diverge(cluster: MemoryCluster, keys: int = 300, seed: int = 1) -> dict[str, int]:
    """Each owner of each key gets one of its writes, or none; the newest write of each
    key, which every owner must end up with."""
    assert cluster.map is not None
    rnd = random.Random(seed)
    newest: dict[str, int] = {}
    for n in range(keys):
        key = f"/k/{n}"
        owners = cluster.map.owners[slot_of(key)]
        got = {i: rnd.randrange(0, 6) for i in owners}
        if n % 7 == 0:
            got[owners[0]] = 0  # some keys missing on the primary
        if not any(got.values()):
            got[owners[-1]] = 1
        for i, j in got.items():
            if j:
                await put(cluster, i, key, j)
        newest[key] = max(got.values())
    return newest


async def assert_converged(cluster: MemoryCluster, newest: dict[str, int]) -> None:
    assert cluster.map is not None
    for s in range(SLOT_COUNT):
        owners = cluster.map.owners[s]
        held = {cluster.nodes[i].server.replica.digests([s]) for i in owners}
        assert len(held) == 1, f"owners of slot {s} disagree"
    for key, j in newest.items():
        value, version = write(j)
        for i in cluster.map.owners[slot_of(key)]:
            got = await cluster.nodes[i].server.replica.read(key, value=True)
            assert got.version == version, (key, i)
            assert got.state == (TOMBSTONE if value is None else LIVE), (key, i)
            assert got.value == value, (key, i)


@pytest.mark.parametrize(("nodes", "replication"), [(3, 3), (4, 2), (5, 3)])
async def test_one_pass_on_each_node_makes_every_owner_hold_the_newest(nodes, replication):
    cluster = await MemoryCluster.start(nodes, replication)
    newest = await diverge(cluster)
    reports = [await n.anti_entropy.repair(ALL) for n in cluster.nodes]
    await assert_converged(cluster, newest)
    assert sum(r["pulled"] for r in reports) > 0
    assert all(r["peers_unreachable"] == [] for r in reports)
    # nothing left to do: a second round finds every slot equal
    again = [await n.anti_entropy.repair(ALL) for n in cluster.nodes]
    assert all(r["differing"] == 0 and r["pulled"] == 0 for r in again)


async def test_a_tombstone_wins_over_an_older_value_and_is_not_fetched():
    cluster = await MemoryCluster.start(3, 3)
    await put(cluster, 0, "/x", 2)  # a value
    await put(cluster, 1, "/x", 3)  # its delete
    asked: list[Message] = []
    server = cluster.nodes[1].server
    answer = server._answer

    async def spy(msg: Message, caller: Any) -> Message:
        asked.append(msg)
        return await answer(msg, caller)

    server._answer = spy  # type: ignore[method-assign]
    report = await cluster.nodes[0].anti_entropy.repair([slot_of("/x")])
    assert report == {"slots": 1, "differing": 1,
                      "differing_slots": [[slot_of("/x"), slot_of("/x") + 1]],
                      "pulled": 1, "bytes": 0, "peers_unreachable": [],
                      "why_unreachable": {}}
    got = await cluster.nodes[0].server.replica.read("/x", value=True)
    assert got.state == TOMBSTONE and got.version == write(3)[1]
    assert not any(isinstance(m, wire.ReadRecord) for m in asked)
    assert not await cluster.nodes[0].server.store.has("/x")


async def test_an_empty_replica_is_refilled_tombstones_included():
    cluster = await MemoryCluster.start(3, 3)
    newest = await diverge(cluster)
    for n in cluster.nodes:
        await n.anti_entropy.repair(ALL)
    await cluster.wipe(2)
    assert cluster.digests(2) == bytes(16 * SLOT_COUNT)
    report = await cluster.nodes[2].anti_entropy.repair(ALL)
    assert report["pulled"] == len(newest)
    await assert_converged(cluster, newest)


async def test_a_peer_failing_mid_pass_does_not_stop_the_pass_with_the_others():
    cluster = await MemoryCluster.start(3, 3)
    keys = [f"/f/{n}" for n in range(200)]
    for k in keys:
        await put(cluster, 1, k, 1)
        await put(cluster, 2, k, 2)
    server = cluster.nodes[1].server
    answer = server._answer
    pages = 0

    async def dies_after_two_pages(msg: Message, caller: Any) -> Message:
        nonlocal pages
        if isinstance(msg, wire.SlotVersions):
            pages += 1
            if pages == 3:
                cluster.kill(1)
        return await answer(msg, caller)

    server._answer = dies_after_two_pages  # type: ignore[method-assign]
    report = await cluster.nodes[0].anti_entropy.repair(ALL)
    assert report["peers_unreachable"] == [1]
    replica = cluster.nodes[0].server.replica
    for k in keys:
        assert (await replica.read(k, value=False)).version == write(2)[1]
    # a repair asked for dials node 1 although it is marked down, and says why it failed
    again = await cluster.nodes[0].anti_entropy.repair(ALL)
    assert again["peers_unreachable"] == [1]
    assert "unavailable" in again["why_unreachable"]["1"]


async def test_value_fetches_are_limited_in_number():
    cluster = await MemoryCluster.start(2, 2)
    for n in range(60):
        await put(cluster, 1, f"/c/{n}", 1)
    server = cluster.nodes[1].server
    answer = server._answer
    now = most = 0

    async def slow_reads(msg: Message, caller: Any) -> Message:
        nonlocal now, most
        if not (isinstance(msg, wire.ReadRecord) and msg.value):
            return await answer(msg, caller)
        now += 1
        most = max(most, now)
        try:
            await trio.sleep(0.001)
            return await answer(msg, caller)
        finally:
            now -= 1

    server._answer = slow_reads  # type: ignore[method-assign]
    node = cluster.nodes[0]
    ae = AntiEntropy(node.server.replica, node.caller, 0, max_fetches=3)
    assert (await ae.repair(ALL))["pulled"] == 60
    assert most == 3


async def test_value_bytes_are_paced(autojump_clock):
    cluster = await MemoryCluster.start(2, 2)
    for n in range(8):
        await cluster.nodes[1].server.replica.write(
            [VersionedOp(f"/big/{n}", bytes(MiB // 2), Version(1 << 16, "w"))])
    node = cluster.nodes[0]
    ae = AntiEntropy(node.server.replica, node.caller, 0, bytes_per_second=MiB)
    t0 = trio.current_time()
    report = await ae.repair(ALL)
    assert report["pulled"] == 8 and report["bytes"] == 4 * MiB
    # 4 MiB at 1 MiB/s, the first MiB from a full bucket
    assert trio.current_time() - t0 == pytest.approx(3, abs=0.05)


async def test_token_bucket_charges_after_the_fact(autojump_clock):
    bucket = TokenBucket(100, burst=100)
    t0 = trio.current_time()
    await bucket.take(100)  # the burst
    assert trio.current_time() == t0
    await bucket.take(250)  # more than a burst: paid off by sleeping
    assert trio.current_time() - t0 == pytest.approx(2.5)
    await bucket.take(50)
    assert trio.current_time() - t0 == pytest.approx(3.0)


async def hinted_write(cluster: MemoryCluster) -> tuple[str, int, int]:
    """A write whose second owner is down: (key, that owner, the node holding the hint)."""
    assert cluster.map is not None
    key = "/h/1"
    owners = cluster.map.owners[slot_of(key)]
    holder = (set(range(len(cluster.nodes))) - set(owners)).pop()
    cluster.kill(owners[1])
    await cluster.client().put(key, b"hinted")
    assert cluster.nodes[holder].server.replica.hint_count() == 1
    return key, owners[1], holder


async def test_hints_wait_for_their_target_then_are_delivered_once_and_dropped(
        autojump_clock):
    cluster = await MemoryCluster.start(3, 2)
    key, target, holder = await hinted_write(cluster)
    ae = cluster.nodes[holder].anti_entropy
    assert await ae.deliver_hints() == 0
    assert ae.progress()["hints_pending"] == 1
    cluster.revive(target)
    # a failed attempt leaves the target alone for a while
    assert await ae.deliver_hints() == 0
    await trio.sleep(HINT_RETRY)
    assert await ae.deliver_hints() == 1
    assert await ae.deliver_hints() == 0
    assert ae.progress()["hints_pending"] == 0
    held = await cluster.nodes[target].server.replica.read(key, value=True)
    assert held.value == b"hinted"


async def test_the_loop_delivers_hints_once_the_target_is_back(autojump_clock):
    cluster = await MemoryCluster.start(3, 2)
    key, target, holder = await hinted_write(cluster)
    node = cluster.nodes[holder]
    async with trio.open_nursery() as n:
        n.start_soon(node.caller.watch)
        n.start_soon(node.anti_entropy.run)
        await trio.sleep(5)
        assert node.server.replica.hint_count() == 1
        cluster.revive(target)
        await trio.sleep(20)
        assert node.server.replica.hint_count() == 0
        n.cancel_scope.cancel()
    held = await cluster.nodes[target].server.replica.read(key, value=True)
    assert held.value == b"hinted"


async def test_a_node_that_comes_back_catches_up_without_waiting_for_the_interval(
        autojump_clock):
    cluster = await MemoryCluster.start(3, 3)
    cluster.kill(2)
    ds = cluster.client()
    for n in range(20):
        await ds.put(f"/missed/{n}", b"while node 2 was down")
    cluster.revive(2)
    node = cluster.nodes[2]
    async with trio.open_nursery() as n:
        n.start_soon(node.caller.watch)
        n.start_soon(node.anti_entropy.run, 3600.0)
        await trio.sleep(5)
        progress = node.anti_entropy.progress()
        n.cancel_scope.cancel()
    for k in range(20):
        held = await node.server.replica.read(f"/missed/{k}", value=True)
        assert held.value == b"while node 2 was down"
    assert progress["pulled"] == 20 and not progress["running"]
    assert progress["last_pass_finished"] is None  # no full pass yet


async def test_catching_up_ends_only_with_a_pass_after_clients_stop_skipping_the_node(
        autojump_clock):
    cluster = await MemoryCluster.start(3, 3)
    node = cluster.nodes[2]
    node.anti_entropy.restarted = True
    async with trio.open_nursery() as n:
        n.start_soon(node.caller.watch)
        n.start_soon(node.anti_entropy.run, 3600.0)
        await trio.sleep(2)  # the pass with the members seen back has run
        # a write from a client that still believes node 2 down: only 0 and 1 get it
        for i in (0, 1):
            await put(cluster, i, "/skipped", 1)
        await trio.sleep(1)
        assert node.anti_entropy.catching_up(ALL) is not None
        await trio.sleep(RETRY_AFTER + SETTLE_MARGIN)
        behind = node.anti_entropy.catching_up(ALL)
        n.cancel_scope.cancel()
    assert behind is None
    held = await node.server.replica.read("/skipped", value=True)
    assert held.value == write(1)[0]


async def test_a_first_start_is_caught_up_after_its_first_pass(autojump_clock):
    # every node of a new cluster starts at once: none may wait out the restart margin,
    # or all would refuse listings together
    cluster = await MemoryCluster.start(3, 3)
    node = cluster.nodes[2]
    assert node.anti_entropy.catching_up(ALL) is not None
    async with trio.open_nursery() as n:
        n.start_soon(node.caller.watch)
        n.start_soon(node.anti_entropy.run, 3600.0)
        await trio.sleep(2)
        behind = node.anti_entropy.catching_up(ALL)
        n.cancel_scope.cancel()
    assert behind is None


async def test_the_loop_runs_full_passes_and_reports_them(autojump_clock):
    cluster = await MemoryCluster.start(3, 3)
    newest = await diverge(cluster, keys=50)
    async with trio.open_nursery() as n:
        for node in cluster.nodes:
            n.start_soon(node.caller.watch)
            n.start_soon(node.anti_entropy.run, 30.0)
        await trio.sleep(70)
        progress = [node.anti_entropy.progress() for node in cluster.nodes]
        n.cancel_scope.cancel()
    await assert_converged(cluster, newest)
    for p in progress:
        assert p["last_pass_finished"] is not None
        assert p["slots_done"] == p["slots_total"] == SLOT_COUNT


# -- the client side ----------------------------------------------------------------------


async def test_the_client_finds_disagreeing_slots_and_repairs_them():
    cluster = await MemoryCluster.start(4, 2)
    newest = await diverge(cluster, keys=100)
    caller = cluster.client().caller
    disagree = await disagreeing_slots(caller)
    assert disagree and disagree <= {slot_of(k) for k in newest}
    done: list[int] = []
    report = await repair_slots(caller, ALL, done.append)
    assert sum(done) == SLOT_COUNT and len(done) == SLOT_COUNT // 1024
    assert report["slots"] == SLOT_COUNT and report["differing"] == len(disagree)
    assert report["pulled"] > 0 and report["unreachable"] == {}
    await assert_converged(cluster, newest)
    assert await disagreeing_slots(caller) == set()


async def test_client_repair_reports_members_that_are_down_and_goes_on(autojump_clock):
    cluster = await MemoryCluster.start(3, 3)
    newest = await diverge(cluster, keys=50)
    cluster.kill(2)
    caller = cluster.client().caller
    report = await repair_slots(caller, ALL, lambda n: None)
    assert set(report["unreachable"]) == {2}
    assert report["pulled"] > 0
    assert cluster.digests(0) == cluster.digests(1)
    assert await disagreeing_slots(caller) == set()  # among the owners that answer
    cluster.revive(2)
    # at once, by a new dsclient: nodes 0 and 1 still believe node 2 down, and dial it
    # anyway for a repair asked for
    fresh = cluster.client().caller
    assert (await repair_slots(fresh, ALL, lambda n: None))["unreachable"] == {}
    await assert_converged(cluster, newest)


def test_slot_health_counts_disagreeing_slots_as_under_replicated():
    health = slot_health(ClusterMap.initial(3, 2), {0, 1, 2}, {5, 6})
    assert health == {"ok": SLOT_COUNT - 2, "under_replicated": 2, "unavailable": 0,
                      "disagreeing": 2}


# -- dsclient -----------------------------------------------------------------------------


class ClusterApp:
    """dsclient's ``ctx.obj``: each run builds a diverged in-memory cluster and awaits
    fn(datastore) on it (``down``: members killed first)."""

    def __init__(self, down: tuple[int, ...] = ()) -> None:
        self.down = down

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        async def main() -> Any:
            cluster = await MemoryCluster.start(3, 3)
            await diverge(cluster, keys=40)
            for i in self.down:
                cluster.kill(i)
            return await fn(cluster.client(), *args)

        return trio.run(main)


def test_dsclient_repair_prints_one_summary_line():
    res = dsclient(ClusterApp(), "repair", "--no-progress")
    assert res.code == 0, res.err
    assert res.text.startswith(f"repaired {SLOT_COUNT} slots: ")
    assert " differed, " in res.text and " copied" in res.text and len(res.text.splitlines()) == 1


def test_dsclient_repair_of_one_slot_with_a_member_down_exits_1():
    slot = slot_of("/k/0")
    res = dsclient(ClusterApp(down=(1,)), "repair", "--slot", str(slot), "--progress")
    assert res.code == 1
    assert res.text.startswith("repaired 1 slots: ") and "unreachable: node 1" in res.text
    assert "slot" in res.err  # the bar


def test_dsclient_status_counts_disagreeing_slots_and_shows_repair_progress():
    res = dsclient(ClusterApp(), "status")
    assert res.code == 0, res.err
    lines = res.text.splitlines()
    assert sum(line.startswith("  repair: idle; ") for line in lines) == 3
    summary = lines[-1]
    assert summary.startswith("slots: ") and " with owners that disagree)" in summary


def test_dsclient_status_json_has_the_disagreeing_slots_and_each_nodes_repair():
    res = dsclient(ClusterApp(), "status", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.text)
    assert doc["slots"]["disagreeing"] == sum(b - a for a, b in doc["disagreeing_slots"]) > 0
    assert doc["slots"]["under_replicated"] == doc["slots"]["disagreeing"]
    assert all(set(node["repair"]) >= {"running", "slots_done", "slots_total", "pulled",
                                       "bytes", "last_pass_finished", "hints_pending"}
               for node in doc["nodes"])

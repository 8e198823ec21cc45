"""Resharding: a 3-node cluster holding DATA_MB of 256 KiB values takes in a 4th node.

Reports the migration rate (bytes the targets copied over the move's wall time) and a
client's throughput while the slots move, as a fraction of the same load without a move;
then the same load while a 5th node is filled at a quarter of that rate (``--rate``), to
show what throttling buys the clients.
The client load is 8 requesters, each getting a value of the data set three times for
every new value it puts (a read-mostly store that keeps taking writes).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import trio

from dscluster.client.connect import open_cluster
from dscluster.client.datastore import ClusterDatastore
from dscluster.client.rebalance import ask_coordinator
from dscluster.localcluster import Cluster

VALUE = 256 * 1024
DATA_MB = 256
CONCURRENCY = 8
# targets of the elastic-cluster issue: redis-cli --cluster reshard moved 266 MB here at
# about 50 MB/s; clients may lose at most 30 % of their throughput while slots move
MIGRATION_TARGET_MB_S = 50.0
DURING_TARGET = 0.7


async def _fill(ds: ClusterDatastore, count: int) -> list[str]:
    keys = [f"/reshard/data/{i:06d}" for i in range(count)]
    value = os.urandom(VALUE)

    async def worker(w: int) -> None:
        for k in keys[w::CONCURRENCY]:
            await ds.put(k, value)

    async with trio.open_nursery() as n:
        for w in range(CONCURRENCY):
            n.start_soon(worker, w)
    return keys


async def _load(ds: ClusterDatastore, keys: list[str], stop: trio.Event,
                tag: str) -> tuple[int, float]:
    """Operations done until ``stop`` is set, and the seconds that took."""
    done = 0
    value = os.urandom(VALUE)

    async def worker(w: int) -> None:
        nonlocal done
        rnd = random.Random(w)
        i = 0
        while not stop.is_set():
            if i % 4 == 3:
                await ds.put(f"/reshard/{tag}/{w}/{i}", value)
            else:
                assert len(await ds.get(rnd.choice(keys))) == VALUE
            done += 1
            i += 1

    t0 = time.perf_counter()
    async with trio.open_nursery() as n:
        for w in range(CONCURRENCY):
            n.start_soon(worker, w)
    return done, time.perf_counter() - t0


async def _baseline(ds: ClusterDatastore, keys: list[str], seconds: float) -> float:
    stop = trio.Event()
    async with trio.open_nursery() as n:
        n.cancel_scope.deadline = trio.current_time() + seconds + 60
        result: list[tuple[int, float]] = []

        async def run() -> None:
            result.append(await _load(ds, keys, stop, "before"))

        n.start_soon(run)
        await trio.sleep(seconds)
        stop.set()
    ops, took = result[0]
    return ops / took


async def _during_move(ds: ClusterDatastore, admin: ClusterDatastore,
                       keys: list[str], rate: int = 0) -> tuple[float, dict]:
    stop = trio.Event()
    result: list[tuple[int, float]] = []

    async def run() -> None:
        result.append(await _load(ds, keys, stop, f"during{rate}"))

    async with trio.open_nursery() as n:
        n.start_soon(run)
        job = await ask_coordinator(admin.caller, "start", rate=rate)
        while job["state"] == "moving":
            await trio.sleep(0.2)
            job = await ask_coordinator(admin.caller, "status")
        stop.set()
    ops, took = result[0]
    return ops / took, job


def bench_reshard(tmp: Path, replication: int, seconds: float) -> list[str]:
    c = Cluster(tmp / "reshard", nodes=3, replication=replication).start()
    try:
        async def before() -> tuple[list[str], float]:
            async with open_cluster(c.client()) as ds:
                keys = await _fill(ds, DATA_MB * 1024 * 1024 // VALUE)
                return keys, await _baseline(ds, keys, seconds)

        keys, base = trio.run(before)
        c.add_node()

        async def during() -> tuple[float, dict]:
            async with open_cluster(c.client()) as ds, open_cluster(c.admin()) as admin:
                return await _during_move(ds, admin, keys)

        moving, job = trio.run(during)
        rate = job["bytes"] / job["elapsed"] / 1e6
        # the same load while a 5th node is filled at a quarter of that rate (--rate)
        c.add_node()
        slow = max(1, int(rate * 1e6 / 4))

        async def during_throttled() -> tuple[float, dict]:
            async with open_cluster(c.client()) as ds, open_cluster(c.admin()) as admin:
                return await _during_move(ds, admin, keys, slow)

        throttled, job2 = trio.run(during_throttled)
    finally:
        c.stop()
    ratio = moving / base
    ratio2 = throttled / base
    return [
        f"reshard R={replication}: {DATA_MB} MB of 256 KiB values onto a 4th node: "
        f"{job['slots_done']} slots, {job['bytes'] / 1e6:.0f} MB copied in "
        f"{job['elapsed']:.1f} s",
        f"reshard migration rate: {rate:.1f} MB/s (target >= {MIGRATION_TARGET_MB_S:g}: "
        f"{'met' if rate >= MIGRATION_TARGET_MB_S else 'NOT met'})",
        f"reshard client load (256 KiB, 3 gets : 1 put, x{CONCURRENCY}): {base:.0f} ops/s "
        f"without a move, {moving:.0f} ops/s during it = {ratio:.2f} (target >= "
        f"{DURING_TARGET:g}: {'met' if ratio >= DURING_TARGET else 'NOT met'})",
        f"reshard onto a 5th node at --rate {slow / 1e6:.1f} MB/s: "
        f"{job2['bytes'] / job2['elapsed'] / 1e6:.1f} MB/s copied, client load "
        f"{throttled:.0f} ops/s = {ratio2:.2f} of no move",
    ]

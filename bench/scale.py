"""Scale: a 3-node cluster (default replication factor) loaded with many 1 KiB keys.

    python -m bench --scale [--keys N]     # default 1,000,000

Reports the load rate (batches through ClusterDatastore.apply, a few in flight), each
node's RSS empty and loaded, the listing rate of the whole keyspace (a keys-only query,
as `dsclient ls` does), and a node's start-up time, from exec to "ready", after a clean
stop (SIGTERM) and after kill -9. Issue 12's targets: RSS at most 50 MB per million keys
and flat in the key count; start-up with a million keys at most 5 s after a clean stop.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import trio

from dscluster.client.connect import open_cluster
from dscluster.cluster.placement import default_replication
from dscluster.datastore import BatchOp
from dscluster.localcluster import Cluster
from dscluster.query import Query

from .kv import verdict

NODES = 3
VALUE = 1024
PREFIX = "/scale"
BATCH = 1000  # keys per apply: each owner gets them in one request (max_batch_ops 1024)
IN_FLIGHT = 4
RSS_TARGET_MB_PER_MILLION = 50.0
START_TARGET_S = 5.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _show(mbs: list[float]) -> str:
    return " / ".join(f"{x:.0f}" for x in mbs)


def node_rss(c: Cluster) -> list[float]:
    return [rss_mb(n.proc.pid) for n in c.nodes if n.proc is not None]


async def _load(c: Cluster, first: int, end: int) -> float:
    """Seconds to write keys ``first`` to ``end`` - 1, of VALUE random bytes each."""
    value = os.urandom(VALUE)
    batches = trio.Semaphore(IN_FLIGHT)

    async with open_cluster(c.client()) as ds:
        async def one(start: int) -> None:
            try:
                await ds.apply([BatchOp(f"{PREFIX}/{i:08d}", value)
                                for i in range(start, min(start + BATCH, end))])
            finally:
                batches.release()

        t0 = time.perf_counter()
        async with trio.open_nursery() as n:
            for start in range(first, end, BATCH):
                await batches.acquire()
                n.start_soon(one, start)
        return time.perf_counter() - t0


async def _list(c: Cluster) -> tuple[int, float]:
    async with open_cluster(c.client()) as ds:
        t0 = time.perf_counter()
        count = 0
        async for _ in ds.query(Query(prefix=PREFIX, keys_only=True)):
            count += 1
        return count, time.perf_counter() - t0


def step(what: str) -> None:
    """Progress of a long run, on the terminal only."""
    print(f"  [scale {time.strftime('%H:%M:%S')}] {what}", flush=True)


def _restart_seconds(c: Cluster, index: int, sig: int) -> float:
    """Stop node ``index`` with ``sig``, start it again: seconds from exec to ready."""
    c.nodes[index].kill(sig)
    t0 = time.perf_counter()
    c.restart(index)
    return time.perf_counter() - t0


def bench_scale(tmp: Path, keys: int) -> list[str]:
    replication = default_replication(NODES)
    c = Cluster(tmp / "scale", nodes=NODES, replication=replication).start()
    half = keys // 2
    try:
        step("cluster started; restarting node 1 empty")
        empty_start = _restart_seconds(c, 1, signal.SIGTERM)
        empty = node_rss(c)
        took = trio.run(_load, c, 0, half)
        step(f"{half} keys loaded in {took:.1f} s")
        halfway = node_rss(c)
        took += trio.run(_load, c, half, keys)
        step(f"{keys} keys loaded in {took:.1f} s")
        loaded = node_rss(c)
        listed, list_s = trio.run(_list, c)
        if listed != keys:
            raise RuntimeError(f"listed {listed} keys, loaded {keys}")
        step(f"listed in {list_s:.1f} s")
        clean = _restart_seconds(c, 1, signal.SIGTERM)
        after_clean = rss_mb(c.nodes[1].proc.pid)  # type: ignore[union-attr]
        crashed = _restart_seconds(c, 1, signal.SIGKILL)
    finally:
        c.stop()
    # the second half's growth: what each key costs once buffers and pools are warm
    slope = max(b - a for a, b in zip(halfway, loaded, strict=True)) * 1e6 / (keys - half)
    return [
        f"scale R={replication}: {keys} keys of 1 KiB into {NODES} nodes in batches of "
        f"{BATCH} ({IN_FLIGHT} in flight): {took:.1f} s = {keys / took:.0f} keys/s "
        f"({keys * VALUE / took / 1e6:.1f} MB/s of values)",
        f"scale node RSS empty {_show(empty)} MB, half loaded {_show(halfway)} MB, "
        f"loaded {_show(loaded)} MB: the second half grew a node by at most "
        f"{slope:.1f} MB per million keys"
        f"{verdict(slope, RSS_TARGET_MB_PER_MILLION, at_most=True)}",
        f"scale listing of all {keys} keys (keys only): {list_s:.1f} s = "
        f"{keys / list_s:.0f} keys/s",
        f"scale node start-up: {empty_start:.2f} s empty; holding "
        f"{keys * replication // NODES} keys {clean:.2f} s "
        f"after a clean stop{verdict(clean, START_TARGET_S, at_most=True)} "
        f"(RSS then {after_clean:.0f} MB), {crashed:.2f} s after kill -9",
    ]

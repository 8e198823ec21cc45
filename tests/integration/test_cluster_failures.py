"""Killed and restarted nodes."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import trio

from dscluster.client.connect import open_cluster
from dscluster.errors import Unavailable
from dscluster.keys import Key, slot_of
from dscluster.localcluster import Cluster, tool
from dscluster.query import Query

pytestmark = pytest.mark.timeout(180)


async def test_killed_node_fails_fast_naming_node_and_slots(fresh_cluster: Cluster):
    async with open_cluster(fresh_cluster.client()) as ds:
        key = next(f"/k/{i}" for i in range(100) if ds.state.map.primary(f"/k/{i}").index == 2)
        other = next(f"/k/{i}" for i in range(100) if ds.state.map.primary(f"/k/{i}").index == 1)
        await ds.put(key, b"v")
        fresh_cluster.nodes[2].kill(signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(Unavailable) as ei:
            await ds.get(key)
        took = time.monotonic() - t0
        msg = str(ei.value)
        assert "node 2" in msg and f"slot {slot_of(key)}" in msg, msg
        assert took < 15, took
        # the rest of the cluster keeps serving its slots
        await ds.put(other, b"fine")
        assert await ds.get(other) == b"fine"
        # a cluster-wide query cannot be complete, and says so instead of lying
        with pytest.raises(Unavailable, match="node 2"):
            _ = [e async for e in ds.query(Query(prefix="/k"))]


async def test_acknowledged_writes_survive_kill_9_and_restart(fresh_cluster: Cluster):
    acked: dict[str, bytes] = {}
    async with open_cluster(fresh_cluster.client()) as ds:
        async def writer(w: int) -> None:
            i = 0
            while True:
                k, v = f"/dur/{w}/{i}", f"value {w} {i}".encode() * 50
                try:
                    await ds.put(k, v)
                except Unavailable:
                    return  # the nodes were killed under us: this one was not acked
                acked[k] = v
                i += 1

        async with trio.open_nursery() as n:
            for w in range(4):
                n.start_soon(writer, w)
            await trio.sleep(1.0)
            for node in fresh_cluster.nodes:
                node.kill(signal.SIGKILL)
    assert len(acked) > 20
    for i in range(3):
        fresh_cluster.restart(i)
    async with open_cluster(fresh_cluster.client()) as ds:
        for k, v in acked.items():
            assert await ds.get(k) == v, k
        keys = {e.key async for e in ds.query(Query(prefix="/dur", keys_only=True))}
        assert set(acked) <= keys


async def test_restarted_node_rejoins_and_clients_follow(fresh_cluster: Cluster):
    async with open_cluster(fresh_cluster.client()) as ds:
        epoch = ds.state.epoch
        keys = [f"/re/{i}" for i in range(30)]
        for k in keys:
            await ds.put(k, k.encode())
        # SIGTERM is a clean shutdown: exit code 0, the store closed
        assert fresh_cluster.nodes[1].kill(signal.SIGTERM) == 0
        assert "node 1 stopped" in fresh_cluster.nodes[1].log.read_text()
        fresh_cluster.restart(1)
        for k in keys:
            assert await ds.get(k) == k.encode()
        # same identity and address: a restart is not a membership change
        assert ds.state.epoch == epoch
    # the bootstrapper itself restarts from its saved map
    fresh_cluster.nodes[0].kill(signal.SIGKILL)
    fresh_cluster.restart(0)
    async with open_cluster(fresh_cluster.client()) as ds:
        assert [await ds.get(k) for k in keys] == [k.encode() for k in keys]


def test_status_shows_a_dead_node_as_the_cluster_sees_it(fresh_cluster: Cluster):
    fresh_cluster.nodes[2].kill(signal.SIGKILL)
    # the live nodes ping each other member every second
    deadline = time.monotonic() + 20
    while True:
        r = fresh_cluster.dsclient("status", "--json")
        status = json.loads(r.stdout)
        dead = status["nodes"][2]
        if sorted(dead["seen_down_by"]) == [0, 1] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.returncode == 1 and not dead["reachable"]
    assert sorted(dead["seen_down_by"]) == [0, 1], dead
    assert status["slots"] == {"ok": 10922, "under_replicated": 0, "unavailable": 5462,
                               "disagreeing": 0}
    assert all(n["members"]["down"] == [2] for n in status["nodes"][:2])
    text = fresh_cluster.dsclient("status").stdout.decode()
    assert "DOWN (seen down by node 0, 1)" in text, text
    assert "slots: 10922 ok, 0 under-replicated, 5462 unavailable" in text, text


def test_a_client_joins_through_any_member_while_the_bootstrapper_is_dead(
        fresh_cluster: Cluster):
    c = fresh_cluster
    key = next(f"/any/{i}" for i in range(100) if slot_of(Key(f"/any/{i}")) > 5460)
    assert c.dsclient("put", key, input=b"alive").returncode == 0
    c.nodes[0].kill(signal.SIGKILL)
    node1 = json.loads((c.root / "srv02" / "clustermap.json").read_text())["nodes"][1]
    p2p = next(a for a in node1["swarm"] if not a.endswith("/tls"))
    init = subprocess.run(
        [tool("dsclient"), f"--conf={c.root / 'late'}", "init",
         f"--bootstrapper={p2p}/p2p/{node1['id']}", f"--token-file={c.client_token}"],
        capture_output=True, timeout=60)
    assert init.returncode == 0, init.stderr
    late = c.root / "late"
    got = c.dsclient("get-key", key, conf=late)
    assert (got.returncode, got.stdout) == (0, b"alive"), got.stderr
    status = json.loads(c.dsclient("status", "--json", conf=late).stdout)
    assert [n["reachable"] for n in status["nodes"]] == [False, True, True]
    assert status["slots"]["unavailable"] == 5461  # node 0's, without replicas

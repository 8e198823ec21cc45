"""go-datastore semantics across three real node processes."""

from __future__ import annotations

import json
import random

import pytest

from dscluster import wire
from dscluster.client.connect import open_cluster
from dscluster.client.datastore import ClusterDatastore
from dscluster.errors import NotFound, Redirect
from dscluster.keys import slot_of
from dscluster.localcluster import Cluster
from dscluster.query import (
    Entry,
    FilterKeyCompare,
    FilterValueCompare,
    Query,
    naive_query_apply,
)

pytestmark = pytest.mark.timeout(120)


async def test_keys_spread_over_all_nodes_and_read_back(client_ds: ClusterDatastore):
    keys = [f"/spread/{i}" for i in range(60)]
    for k in keys:
        await client_ds.put(k, k.encode())
    owners = {client_ds.state.map.primary(k).index for k in keys}
    assert owners == {0, 1, 2}
    for k in keys:
        assert await client_ds.get(k) == k.encode()
        assert await client_ds.get_size(k) == len(k)
        assert await client_ds.has(k)
    with pytest.raises(NotFound):
        await client_ds.get("/spread/missing")
    with pytest.raises(NotFound):
        await client_ds.get_size("/spread/missing")
    await client_ds.delete("/spread/missing")  # not an error
    assert not await client_ds.has("/spread/missing")


async def test_query_merges_nodes_in_order_with_global_offset_and_limit(
        client_ds: ClusterDatastore):
    rng = random.Random(7)
    data = {f"/q/{rng.randrange(10**6):07d}": rng.randbytes(rng.randrange(0, 50))
            for _ in range(300)}
    data["/q"] = b"the prefix itself is not a child"
    data["/qq/x"] = b"a sibling, not a child"
    b = client_ds.batch()
    for k, v in data.items():
        b.put(k, v)
    await b.commit()
    # the cluster returns key order even when no order is asked for
    everything = [Entry(k, v, len(v)) for k, v in sorted(data.items())]
    cases = [
        Query(prefix="/q"),
        Query(prefix="/q", keys_only=True, returns_sizes=True),
        Query(prefix="/q", offset=17, limit=40),
        Query(prefix="/q", orders=("-key",), offset=5, limit=25),
        Query(prefix="/q", orders=("value", "key"), limit=30),
        Query(prefix="/q", filters=(FilterKeyCompare(">", "/q/0500000"),), limit=10),
        Query(prefix="/q", filters=(FilterValueCompare(">=", b"\x80"),), keys_only=True),
        Query(prefix="/q", offset=1000),
    ]
    for q in cases:
        got = [e async for e in client_ds.query(q)]
        assert got == list(naive_query_apply(q, everything)), q
    # limit+offset are applied to the whole cluster: 40 entries, not 40 per node
    assert len([e async for e in client_ds.query(Query(prefix="/q", limit=40))]) == 40


async def test_prefix_matches_whole_segments(client_ds: ClusterDatastore):
    for k in ("/0", "/0/a", "/0key0", "/0/b/c"):
        await client_ds.put(k, b"v")
    keys = [e.key async for e in client_ds.query(Query(prefix="/0", keys_only=True))]
    assert keys == ["/0/a", "/0/b/c"]


async def test_batch_last_operation_wins(client_ds: ClusterDatastore):
    await client_ds.put("/batch/gone", b"old")
    b = client_ds.batch()
    b.put("/batch/a", b"1")
    b.put("/batch/a", b"2")
    b.put("/batch/gone", b"x")
    b.delete("/batch/gone")
    b.delete("/batch/back")
    b.put("/batch/back", b"here")
    for i in range(2000):  # more than one request's worth per node
        b.put(f"/batch/many/{i}", b"m")
    await b.commit()
    assert await client_ds.get("/batch/a") == b"2"
    assert not await client_ds.has("/batch/gone")
    assert await client_ds.get("/batch/back") == b"here"
    n = len([e async for e in client_ds.query(Query(prefix="/batch/many", keys_only=True))])
    assert n == 2000


async def test_sync_and_disk_usage(client_ds: ClusterDatastore):
    before = await client_ds.disk_usage()
    await client_ds.put("/du/x", b"y" * 100_000)
    await client_ds.sync("/du")
    assert await client_ds.disk_usage() >= before + 100_000


async def test_a_node_redirects_a_slot_it_does_not_own(fresh_cluster: Cluster):
    # replication factor 1: member 0 owns only its own slots
    async with open_cluster(fresh_cluster.client()) as client_ds:
        await _redirects(client_ds)


async def _redirects(client_ds: ClusterDatastore) -> None:
    key = next(f"/redir/{i}" for i in range(100)
               if client_ds.state.map.primary(f"/redir/{i}").index == 1)
    wrong = client_ds.state.map.members[0]
    async with client_ds.pool.channel(wrong.peer_id, wrong.addrs) as chan:
        with pytest.raises(Redirect) as ei:
            await chan.request(wire.WriteRecords(ops=[[key, b"v", 1, "w"]]))
        # the stream survives a refused request
        assert isinstance(await chan.request(wire.DiskUsage()), wire.Size)
    r = ei.value
    assert r.slot == slot_of(key) and r.epoch == client_ds.state.epoch
    assert r.detail["owner"] == client_ds.state.map.members[1].peer_id
    assert not await client_ds.has(key)


async def test_libp2p_only_client_sees_the_same_data(cluster, client_ds: ClusterDatastore):
    d = cluster.client("p2p-only")
    cfg = json.loads((d / "config.json").read_text())
    cfg["data_lane"] = False
    (d / "config.json").write_text(json.dumps(cfg))
    await client_ds.put("/transport/via-lane", b"lane")
    async with open_cluster(d) as p2p:
        assert not p2p.pool.transport.use_lane
        assert await p2p.get("/transport/via-lane") == b"lane"
        await p2p.put("/transport/via-libp2p", b"p2p")
        keys = [e.key async for e in p2p.query(Query(prefix="/transport", keys_only=True))]
        assert keys == ["/transport/via-lane", "/transport/via-libp2p"]
    assert await client_ds.get("/transport/via-libp2p") == b"p2p"


async def test_a_leveldb_cluster_serves_and_survives_restart(tmp_path):
    c = Cluster(tmp_path, store="leveldb").start()
    try:
        async with open_cluster(c.client()) as ds:
            for i in range(30):
                await ds.put(f"/ldb/{i:02d}", b"v%d" % i)
            rows = await ds.status()
            assert {r["store"] for r in rows} == {"leveldb"}
        for i in range(3):
            c.nodes[i].kill(15)
            c.restart(i)
        async with open_cluster(c.client()) as ds:
            got = [(e.key, e.value) async for e in ds.query(Query(prefix="/ldb", limit=3))]
            assert got == [("/ldb/00", b"v0"), ("/ldb/01", b"v1"), ("/ldb/02", b"v2")]
    finally:
        c.stop()


async def test_errors_leave_open_cluster_as_themselves(cluster):
    """Library users catch NotFound, not an exception group from our nurseries."""
    with pytest.raises(NotFound):
        async with open_cluster(cluster.client()) as ds:
            await ds.get("/surely/not/there")
    with pytest.raises(KeyError):
        async with open_cluster(cluster.client()) as ds:
            raise KeyError("user code")

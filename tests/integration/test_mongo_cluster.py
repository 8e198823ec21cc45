"""A 3-node cluster of real processes whose stores are mongo, on a MongoDB-protocol server
(fixture ``mongodb_uri``: FerretDB, or DSCLUSTER_TEST_MONGODB_URI's server), each node in
a database of its own named by its URI."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest

from dscluster.client.connect import open_cluster
from dscluster.localcluster import Cluster
from dscluster.query import Query
from tests.mongodb_server import with_database

pytestmark = [pytest.mark.mongo, pytest.mark.timeout(180)]

NODES = 3


def ok(p: subprocess.CompletedProcess[bytes]) -> bytes:
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


@pytest.fixture
def mongo_cluster(tmp_path: Path, mongodb_uri: str) -> Iterator[tuple[Cluster, list[str]]]:
    """The cluster (replication 1: every key on one node, so a restarted node has
    nothing to read from but its own database) and each node's database."""
    tag = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]
    databases = [f"dscluster_it_{tag}_{i}" for i in range(NODES)]
    uris = [with_database(mongodb_uri, d) for d in databases]
    c = Cluster(tmp_path, nodes=NODES, store="mongo", extra_cfg=[f"--mongodb={uris[0]}"],
                node_args=[[f"--mongodb={u}"] for u in uris[1:]])
    try:
        c.start()
        yield c, databases
    finally:
        c.stop()
        with pymongo.MongoClient(mongodb_uri, serverSelectionTimeoutMS=3000) as client:
            for d in databases:
                client.drop_database(d)


def stored_keys(mongodb_uri: str, databases: list[str]) -> list[set[str]]:
    """The keys in each node's collection, read from the server directly."""
    with pymongo.MongoClient(mongodb_uri, serverSelectionTimeoutMS=3000) as client:
        return [{d["_id"] for d in client[db]["kv"].find({}, {"_id": 1})} for db in databases]


async def test_mongo_backed_cluster_stores_lists_and_keeps_data_over_a_restart(
        mongo_cluster: tuple[Cluster, list[str]], mongodb_uri: str, tmp_path: Path) -> None:
    c, databases = mongo_cluster
    values = {f"/m/{i:03d}": os.urandom(97 * i) for i in range(60)}  # /m/000 is empty
    async with open_cluster(c.client()) as ds:
        batch = ds.batch()
        for k, v in values.items():
            batch.put(k, v)
        await batch.commit()
    data = os.urandom(600_000)  # three 256 KiB chunks and a root
    f = tmp_path / "file.bin"
    f.write_bytes(data)
    cid = ok(c.dsclient("add", "--no-progress", str(f))).decode().split()[1]

    listed = ok(c.dsclient("ls", "-l", "/m")).decode().splitlines()
    assert [ln.split() for ln in listed] == [[str(len(v)), k] for k, v in values.items()]
    async with open_cluster(c.client()) as ds:
        every_key = {e.key async for e in ds.query(Query(keys_only=True))}
    assert set(values) < every_key
    assert sum(k.startswith("/blocks/") for k in every_key) == 4  # the file's blocks
    # each node's keys are in its own database, and nowhere else
    per_node = stored_keys(mongodb_uri, databases)
    assert all(per_node), per_node
    assert sum(map(len, per_node)) == len(set().union(*per_node))
    assert set().union(*per_node) == every_key

    # a crash, then a restart: the node reads what it holds from its database again
    victim = 1
    assert per_node[victim] & set(values)
    c.kill9(victim)
    c.restart(victim)
    async with open_cluster(c.client()) as ds:
        for k, v in values.items():
            assert await ds.get(k) == v, k
    out = tmp_path / "copy.bin"
    ok(c.dsclient("get", cid, "-o", str(out)))
    assert out.read_bytes() == data
    assert stored_keys(mongodb_uri, databases) == per_node

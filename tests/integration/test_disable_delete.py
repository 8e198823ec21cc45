"""disable_delete on real processes: write-once data, and batches checked on every node
before any node applies them."""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Iterator

import pytest

from dscluster import wire
from dscluster.client.connect import open_cluster
from dscluster.client.datastore import ClusterDatastore
from dscluster.errors import Forbidden
from dscluster.keys import slot_of
from dscluster.localcluster import Cluster

pytestmark = pytest.mark.timeout(120)
GUARDED = 1  # the member with disable_delete; member 0 deletes and overwrites freely


@pytest.fixture(scope="module")
def guarded_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("disable-delete"), nodes=2).start()
    try:
        c.nodes[GUARDED].kill(signal.SIGTERM)
        path = c.nodes[GUARDED].conf / "config.json"
        cfg = json.loads(path.read_text())
        cfg["disable_delete"] = True
        path.write_text(json.dumps(cfg))  # the file keeps its 0600
        c.restart(GUARDED)
        yield c
    finally:
        c.stop()


def key_on(ds: ClusterDatastore, member: int, name: str) -> str:
    """A key of ``name`` whose slot ``member`` serves."""
    for i in itertools.count():
        k = f"/dd/{name}/{i}"
        if ds.state.map.owners[slot_of(k)][0] == member:
            return k
    raise AssertionError("unreachable")


async def test_an_empty_overwrite_is_refused_and_the_old_value_stays(guarded_cluster):
    async with open_cluster(guarded_cluster.client()) as ds:
        k = key_on(ds, GUARDED, "empty")
        await ds.put(k, b"precious")
        with pytest.raises(Forbidden, match=r"overwrites are disabled on this node"):
            await ds.put(k, b"")
        b = ds.batch()
        b.put(k, b"")
        with pytest.raises(Forbidden, match="overwrites are disabled"):
            await b.commit()
        assert await ds.get(k) == b"precious"


async def test_the_same_bytes_again_are_accepted(guarded_cluster):
    async with open_cluster(guarded_cluster.client()) as ds:
        k = key_on(ds, GUARDED, "same")
        await ds.put(k, b"block")
        await ds.put(k, b"block")  # a retry, or the same IPFS block added again
        b = ds.batch()
        b.put(k, b"block")
        await b.commit()
        assert await ds.get(k) == b"block"


@pytest.mark.parametrize("guarded_op", ["delete", "overwrite"])
async def test_a_batch_refused_by_one_node_changes_nothing_on_either(guarded_cluster,
                                                                     guarded_op):
    async with open_cluster(guarded_cluster.client()) as ds:
        free_old = key_on(ds, 0, f"free-old-{guarded_op}")
        free_new = key_on(ds, 0, f"free-new-{guarded_op}")
        guarded = key_on(ds, GUARDED, f"guarded-{guarded_op}")
        for k in (free_old, guarded):
            await ds.put(k, b"before")
        b = ds.batch()
        b.delete(free_old)  # allowed on node 0, and applied first today
        b.put(free_new, b"new")
        if guarded_op == "delete":
            b.delete(guarded)
        else:
            b.put(guarded, b"")
        with pytest.raises(Forbidden):
            await b.commit()
        assert await ds.get(free_old) == b"before"
        assert not await ds.has(free_new)
        assert await ds.get(guarded) == b"before"


async def test_a_batch_accepted_by_every_node_is_applied_on_every_node(guarded_cluster):
    async with open_cluster(guarded_cluster.client()) as ds:
        free, guarded = key_on(ds, 0, "both-free"), key_on(ds, GUARDED, "both-guarded")
        await ds.put(free, b"old")
        b = ds.batch()
        b.delete(free)
        b.put(guarded, b"new")
        await b.commit()
        assert not await ds.has(free) and await ds.get(guarded) == b"new"


async def test_check_batch_applies_nothing_and_read_only_callers_are_refused_it(
        guarded_cluster):
    async with open_cluster(guarded_cluster.client()) as ds:
        k = key_on(ds, GUARDED, "checked")
        ans = await ds.caller.ask(GUARDED, wire.CheckBatch(ops=[[k, b"v"]]))
        assert isinstance(ans, wire.Ok) and not await ds.has(k)
    ro_dir = guarded_cluster.client("ro", guarded_cluster.readonly_token)
    async with open_cluster(ro_dir) as ro:
        with pytest.raises(Forbidden, match="read-only"):
            await ro.caller.ask(0, wire.CheckBatch(ops=[[k, b"v"]]))

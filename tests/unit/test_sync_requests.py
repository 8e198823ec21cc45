"""Sync on a node: refused to read-only callers, and never a machine-wide sync(2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dscluster import wire
from dscluster.cluster.replica import ReplicaStore
from dscluster.cluster.state import ClusterState
from dscluster.clustermap import ClusterMap
from dscluster.limits import Limits
from dscluster.node.server import Caller, NodeServer
from dscluster.store import open_store
from dscluster.store.memory import MemoryStore


async def node() -> NodeServer:
    replica = await ReplicaStore.open(MemoryStore(), None, sync=False)
    return NodeServer(replica=replica, state=ClusterState(ClusterMap.initial(1)),
                      member_index=0, peer_id="self", secret=b"s" * 32, limits=Limits())


async def test_a_read_only_caller_may_not_sync():
    n = await node()
    ans = await n._answer(wire.Sync(prefix="/"), Caller("reader", "readonly"))
    assert isinstance(ans, wire.Error) and ans.code == "forbidden", ans
    for role in ("client", "node"):
        assert isinstance(await n._answer(wire.Sync(prefix="/"), Caller("w", role)), wire.Ok)


@pytest.mark.parametrize("kind", ["flatfs", "leveldb", "memory"])
@pytest.mark.parametrize("sync", [True, False])
async def test_store_sync_never_syncs_the_whole_machine(kind, sync, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    def machine_wide() -> None:
        raise AssertionError("sync(2) flushes every filesystem of the machine")

    monkeypatch.setattr(os, "sync", machine_wide)
    store = await open_store(kind, tmp_path / "s", sync=sync)
    try:
        await store.put("/k", b"v")
        await store.sync("/")
        assert await store.get("/k") == b"v"
    finally:
        await store.close()

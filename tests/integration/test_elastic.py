"""Growing, shrinking and rebalancing a cluster of real node processes under load.

The coordinator's logic is tested in-process in tests/unit/test_rebalance.py; these
check the same promises across processes, the CLI, durable job files and kill -9.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import trio

from dscluster.client.connect import open_cluster
from dscluster.client.rebalance import ask_coordinator
from dscluster.keys import SLOT_COUNT, Key
from dscluster.localcluster import Cluster
from tests.integration.test_replication import Load, status_json, wait_converged

pytestmark = pytest.mark.timeout(240)
# a rebalance of the few MB these tests hold takes seconds; the bound leaves room for
# a loaded 2-core machine and for restarts in the middle
MOVE_BOUND = 120.0


def rebalance(c: Cluster, *args: str, timeout: float = MOVE_BOUND) -> str:
    r = c.dsclient("rebalance", *args, conf=c.admin(), timeout=timeout)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0 and "Traceback" not in out, out + c.logs()
    return out


async def wait_moves_done(c: Cluster, bound: float = MOVE_BOUND) -> dict:
    t0 = time.monotonic()
    async with open_cluster(c.admin()) as ds:
        while True:
            try:
                job = await ask_coordinator(ds.caller, "status")
                if job["state"] != "moving":
                    return job
            except Exception as e:  # the coordinator may be restarting
                job = {"error": repr(e)}
            assert time.monotonic() - t0 < bound, f"moves not done: {job}\n{c.logs()}"
            await trio.sleep(0.25)


def slots_held(status: dict) -> dict[int, int]:
    """Slot replicas each member holds, from a client's map in `status --json`."""
    return {n["index"]: n["slots_held"] for n in status["nodes"] if n["state"] != "retired"}


def assert_balanced(c: Cluster, members: int, replication: int) -> None:
    code, st = status_json(c, c.admin())
    assert code == 0, st
    assert st["slots_moving"] == 0 and st["moves"]["state"] == "finished", st["moves"]
    held = slots_held(st)
    assert len(held) == members and sum(held.values()) == replication * SLOT_COUNT, held
    fair = replication * SLOT_COUNT / members
    # within one slot of the fair share (the issue asks for 1 %)
    assert all(abs(h - fair) <= 1 for h in held.values()), held
    assert st["slots"]["unavailable"] == 0 and st["slots"]["under_replicated"] == 0, st


async def test_growing_from_three_to_five_nodes_under_load(tmp_path: Path):
    c = Cluster(tmp_path, nodes=3, replication=3).start()
    try:
        async with open_cluster(c.client()) as ds:
            load = Load(ds, "/grow")
            stop = trio.Event()
            async with trio.open_nursery() as n:
                n.start_soon(load.run, 600.0, stop)
                await trio.sleep(1.0)
                # the 4th joins through a member that is not the bootstrapper
                await trio.to_thread.run_sync(c.add_node, 1)
                plan = await trio.to_thread.run_sync(rebalance, c, "--dry-run")
                assert "plan: " in plan and "node 3 (weight 1): 0 ->" in plan, plan
                out = await trio.to_thread.run_sync(rebalance, c, "--wait")
                assert "rebalance finished" in out, out
                await trio.to_thread.run_sync(c.add_node, 0)
                out = await trio.to_thread.run_sync(rebalance, c, "--wait")
                assert "rebalance finished" in out, out
                await trio.sleep(1.0)
                stop.set()
            load.assert_clean()
            await load.verify()
            await wait_converged(ds, c)
        assert_balanced(c, 5, 3)
    finally:
        c.stop()


async def test_removing_a_node_under_load(tmp_path: Path):
    c = Cluster(tmp_path, nodes=4, replication=3).start()
    try:
        async with open_cluster(c.client()) as ds:
            load = Load(ds, "/shrink")
            stop = trio.Event()
            async with trio.open_nursery() as n:
                n.start_soon(load.run, 600.0, stop)
                await trio.sleep(1.0)
                r = await trio.to_thread.run_sync(
                    lambda: c.dsclient("remove-node", "2", "--wait", conf=c.admin(),
                                       timeout=MOVE_BOUND))
                assert r.returncode == 0, r.stderr.decode() + c.logs()
                assert b"remove of node 2 finished" in r.stdout, r.stdout
                await trio.sleep(1.0)
                stop.set()
            load.assert_clean()
            await load.verify()
        code, st = status_json(c, c.admin())
        assert code == 0, st  # a retired node is not a node that is down
        assert st["nodes"][2]["state"] == "retired"
        assert_balanced(c, 3, 3)
        # three members hold three replicas: none can go
        r = c.dsclient("remove-node", "1", conf=c.admin())
        assert r.returncode == 1 and b"3 replicas" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        # nor can a client without the admin token move anything
        r = c.dsclient("rebalance", "--dry-run")
        assert r.returncode == 1 and b"admin token" in r.stderr, r.stderr
    finally:
        c.stop()


@pytest.mark.soak  # a chaos run, like tests/integration/test_chaos.py: make soak
async def test_a_move_survives_kill9_of_target_coordinator_and_source(tmp_path: Path):
    c = Cluster(tmp_path, nodes=3, replication=2).start()
    try:
        async with open_cluster(c.client()) as ds:
            values = {f"/kill/{k:04d}": bytes([k % 251]) * 8192 for k in range(600)}
            async with trio.open_nursery() as n:
                for start in range(8):
                    async def put_some(start: int = start) -> None:
                        for k in list(values)[start::8]:
                            await ds.put(Key(k), values[k])
                    n.start_soon(put_some)
        c.add_node()
        # slow enough (about 2.5 MB to copy at 0.5 MB/s) to kill things in the middle
        out = rebalance(c, "--rate", "0.5")
        assert "rebalance moving" in out, out
        await trio.sleep(1.5)
        c.kill9(3)  # the target
        await trio.sleep(1.0)
        c.restart(3)
        await trio.sleep(1.0)
        c.kill9(0)  # the coordinator
        job = json.loads((c.nodes[0].conf / "rebalance.json").read_text())
        assert job["state"] == "moving" and job["rate"] == 500_000
        c.restart(0)
        await trio.sleep(1.0)
        c.kill9(1)  # a source
        await trio.sleep(1.0)
        c.restart(1)
        job = await wait_moves_done(c)
        assert job["state"] == "finished" and job["slots_done"] == job["slots_total"], job

        async with open_cluster(c.client("after")) as ds:
            for k, v in values.items():
                assert await ds.get(Key(k)) == v, k
            await wait_converged(ds, c)
        assert_balanced(c, 4, 2)
    finally:
        c.stop()


async def test_abort_returns_to_the_old_layout(tmp_path: Path):
    c = Cluster(tmp_path, nodes=3, replication=2).start()
    try:
        async with open_cluster(c.client()) as ds:
            for k in range(300):
                await ds.put(Key(f"/ab/{k}"), b"x" * 4096)
        before = status_json(c, c.admin())[1]
        c.add_node()
        out = rebalance(c, "--rate", "0.1")
        assert "rebalance moving" in out
        await trio.sleep(1.0)
        r = c.dsclient("rebalance", "--abort", conf=c.admin())
        assert r.returncode == 0 and b"rebalance aborted" in r.stdout, r.stdout + r.stderr
        _, st = status_json(c, c.admin())
        assert st["slots_moving"] == 0 and st["moves"]["state"] == "aborted", st["moves"]
        # the slots that had not moved stayed with their old owners; all of it reads
        held = slots_held(st)
        assert sum(held.values()) == 2 * SLOT_COUNT
        assert held[3] < slots_held(before).get(0, 0)
        async with open_cluster(c.client()) as ds:
            for k in range(300):
                assert await ds.get(Key(f"/ab/{k}")) == b"x" * 4096
    finally:
        c.stop()

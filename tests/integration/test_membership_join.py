"""Membership changes through real node processes: a node joining as a new member through
a member that is not the bootstrapper, and a dead node replaced by a new one that is
refilled from the other owners while the dead one's directory is refused.

The bootstrapper's rules themselves (every refusal, retries, races) are checked without
sockets in tests/unit/test_membership.py; these check that the pieces meet: the CLI, the
config a node keeps across restarts, the lines a user sees, and the data.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
from pathlib import Path

import pytest

from dscluster import wire
from dscluster.client.connect import open_cluster
from dscluster.cluster.replica import LIVE
from dscluster.localcluster import Cluster, NodeProc, tool

pytestmark = pytest.mark.timeout(120)


def ok(p: subprocess.CompletedProcess[bytes]) -> bytes:
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def identity(conf: Path) -> dict:
    return json.loads((conf / "config.json").read_text())["identity"]


def status_json(c: Cluster, conf: Path) -> tuple[int, dict]:
    r = c.dsclient("status", "--json", conf=conf)
    assert "Traceback" not in r.stderr.decode(), r.stderr.decode()
    return r.returncode, json.loads(r.stdout)


def refused(p: subprocess.CompletedProcess[str]) -> str:
    """The line a refused node ends with; it must end with exactly one, and exit 1."""
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    return p.stderr.strip().splitlines()[-1]


def test_a_new_member_joins_through_any_member_and_keeps_its_index(tmp_path: Path):
    c = Cluster(tmp_path, nodes=3, replication=3)
    new = NodeProc(3, tmp_path / "srv04", tmp_path / "node3.log")
    try:
        c.start()
        c.nodes.append(new)  # stopped with the others
        # node 1's multiaddr: a member that takes no joins itself
        new.start([f"--bootstrapper={c.multiaddr(1)}", f"--token-file={c.node_token}",
                   f"--store={c.store}"])
        new.wait_ready()
        me = identity(new.conf)
        assert me["index"] == 3, me  # recorded: a restart must not join again
        assert "node 3 ready: /ip4/127.0.0.1/tcp/" in new.log.read_text()

        # an operator's client: the admin token reads and writes like a client token
        admin = tmp_path / "admin"
        init = subprocess.run(
            [tool("dsclient"), f"--conf={admin}", "init", f"--bootstrapper={c.multiaddr(2)}",
             f"--token-file={tmp_path / 'srv01' / 'admin.token'}"],
            capture_output=True, timeout=60, text=True)
        assert init.returncode == 0, init.stderr
        assert init.stdout.startswith("admin client ")
        ok(c.dsclient("put", "/admin/k", input=b"by the operator", conf=admin))
        assert ok(c.dsclient("get-key", "/admin/k", conf=admin)) == b"by the operator"

        rc, status = status_json(c, admin)
        assert rc == 0, status
        nodes = status["nodes"]
        assert [n["index"] for n in nodes] == [0, 1, 2, 3]
        row = nodes[3]
        assert (row["peer_id"], row["state"], row["slots"], row["reachable"], row["keys"]) \
            == (me["peer_id"], "joined", "no slots", True, 0), row
        epoch = status["epoch"]

        assert new.kill(signal.SIGTERM) == 0
        before = new.ready_count()
        new.start([])
        new.wait_ready(before)
        assert identity(new.conf)["index"] == 3
        assert new.log.read_text().count("node 3 ready: ") == 2
        rc, status = status_json(c, admin)
        assert rc == 0, status
        # the same member at the same addresses: no new member, no new epoch
        assert len(status["nodes"]) == 4 and status["epoch"] == epoch, status
        assert status["nodes"][3]["peer_id"] == me["peer_id"]
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


async def test_a_dead_node_is_replaced_refilled_and_its_old_directory_refused(
        tmp_path: Path):
    c = Cluster(tmp_path, nodes=3, replication=3)
    repl = NodeProc(2, tmp_path / "srv05", tmp_path / "replacement.log")
    try:
        c.start()
        c.nodes.append(repl)
        rnd = random.Random(5)
        expect = {f"/replace/{i}": rnd.randbytes(rnd.choice((10, 3000, 70_000)))
                  for i in range(50)}
        async with open_cluster(c.client()) as ds:
            for k, v in expect.items():
                await ds.put(k, v)
        expect["/replace/cli"] = b"through dsclient"
        ok(c.dsclient("put", "/replace/cli", input=expect["/replace/cli"]))

        # refused while node 2 lives, and for places that cannot be replaced; one line
        # each. The first directory is the one that replaces node 2 below.
        attempts = {
            repl.conf: (2, "node 2 is still answering; stop it first, or drain it with "
                           "`dsclient remove-node 2`"),
            tmp_path / "boot": (0, "node 0 is the bootstrapper itself; it cannot be replaced"),
            tmp_path / "far": (7, "node 7 does not exist: this cluster has nodes 0..2"),
        }
        running = {
            conf: subprocess.Popen(
                [tool("dscluster"), f"--conf={conf}", f"--bootstrapper={c.multiaddr(1)}",
                 f"--token-file={c.node_token}", f"--replace={index}"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for conf, (index, _) in attempts.items()}
        for conf, p in running.items():
            out, err = p.communicate(timeout=60)
            line = refused(subprocess.CompletedProcess(p.args, p.returncode, out, err))
            assert line == f"dscluster: error: {attempts[conf][1]}"
        # not joined: recognisable, and its next start tries again
        assert identity(repl.conf)["index"] == 2 and identity(repl.conf)["replace"] is True

        c.kill9(2)
        repl.start([])  # no flags: the directory remembers what it is for
        repl.wait_ready()
        me = identity(repl.conf)
        assert me["index"] == 2 and "replace" not in me, me
        assert "joined as node 2 in the place of a dead node" in repl.log.read_text()
        assert "node 2 replaced: " + me["peer_id"] in (tmp_path / "node0.log").read_text()

        line = ok(c.dsclient("repair", "--no-progress", timeout=120)).decode().strip()
        assert re.fullmatch(r"repaired 16384 slots: \d+ differed, \d+ keys \([\d.]+[KMG]?i?B\) "
                            r"copied", line), line  # and no member unreachable
        rc, status = status_json(c, c.client())
        assert rc == 0, status
        rows = status["nodes"]
        assert rows[2]["peer_id"] == me["peer_id"], rows[2]
        assert [r["keys"] for r in rows] == [len(expect)] * 3, rows
        async with open_cluster(c.client()) as ds:
            # asked directly: a quorum read would hide a replica that lacks a key
            for k, v in expect.items():
                rec = await ds.caller.ask(2, wire.ReadRecord(key=k, value=True))
                assert isinstance(rec, wire.Record)
                assert (rec.state, rec.value) == (LIVE, v), k

        # the dead node's directory comes back: refused before it serves anything
        old = c.nodes[2]
        ready_before, log_before = old.ready_count(), len(old.log.read_text())
        old.start([])
        assert old.proc is not None and old.proc.wait(timeout=30) == 1
        tail = old.log.read_text()[log_before:]
        assert "Traceback" not in tail, tail
        assert tail.strip().splitlines()[-1].startswith(
            "dscluster: error: the bootstrapper refused this node: identity 2 is already "
            f"held by node {me['peer_id']}"), tail
        assert old.ready_count() == ready_before
        rc, status = status_json(c, c.client())
        assert rc == 0 and status["nodes"][2]["peer_id"] == me["peer_id"], status
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()

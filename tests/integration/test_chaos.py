"""Soak: nodes killed -9 in turn under a mixed load, and a network partition.

Run with ``make soak`` (``pytest -m soak``); ``DSCLUSTER_SOAK_ROUNDS`` (default 2) sets how
many times each node is killed. The partition test needs root and ``ip netns``: it puts
each node in a network namespace of its own, joined by a bridge in another, all created
(and deleted) by the test, with addresses of a private subnet that exists only inside
them; the host's own network is never touched.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from dscluster.client.connect import open_cluster
from dscluster.client.datastore import ClusterDatastore
from dscluster.localcluster import READY_TIMEOUT, Cluster, NodeProc, tool
from tests.integration.test_replication import (
    CONVERGE_BOUND,
    Load,
    error_line,
    hints_pending,
    ok,
    wait_converged,
)

ROUNDS = int(os.environ.get("DSCLUSTER_SOAK_ROUNDS", "2"))
# Per kill the load runs this long with every node up, then with the node dead, then
# after its restart: the client leaves a node it found down alone for 5 s, so 6 s covers
# its return to the client and the node catching up meanwhile.
UP, DOWN, BACK = 2.0, 5.0, 6.0
# Writes the client still skips the restarted node for (it believes it down for up to
# 5 s) reach it as hints, also with R = N (an owner keeps them), within a tick of the
# holder seeing it back; the rest by its catch-up passes.
CONVERGE_UNDER_LOAD = CONVERGE_BOUND
# one cycle at its longest: every wait at its bound
CYCLE = UP + DOWN + READY_TIMEOUT + BACK + CONVERGE_UNDER_LOAD + CONVERGE_BOUND + 30


# -- kill -9 in turn --------------------------------------------------------------------------


@pytest.mark.soak
@pytest.mark.timeout(60 + ROUNDS * 3 * CYCLE)
@pytest.mark.parametrize("replication", [2, 3])
async def test_kill_9_each_node_in_turn_under_load(tmp_path: Path, replication: int):
    c = Cluster(tmp_path, nodes=3, replication=replication).start()
    bad_listings: dict[str, list[str]] = {}
    try:
        async with open_cluster(c.client()) as ds:
            load = Load(ds, f"/chaos{replication}")
            for round_ in range(ROUNDS):
                for victim in range(c.n):
                    what = f"round {round_} node {victim}"
                    await one_cycle(c, ds, load, victim, what)
                    if load.bad_listings:
                        bad_listings[what] = load.bad_listings[:]
                        load.bad_listings.clear()
            print(f"R={replication}: {sum(load.counts.values())} operations "
                  f"{dict(load.counts)}, {len(load.files)} files; slowest "
                  f"{({k: round(v, 2) for k, v in load.slowest.items()})}")
    finally:
        c.stop()
    # last, so that every cycle's other checks ran
    assert not bad_listings, "wrong listings after restarts: " + "; ".join(
        f"{what}: {len(bad)}, first {bad[0]}" for what, bad in bad_listings.items())


async def one_cycle(c: Cluster, ds: ClusterDatastore, load: Load, victim: int,
                    what: str) -> None:
    stop = trio.Event()
    t0 = time.monotonic()
    async with trio.open_nursery() as n:
        n.start_soon(load.run, 1e9, stop)
        await trio.sleep(UP)
        await trio.to_thread.run_sync(c.kill9, victim)
        await trio.sleep(DOWN)
        # in a thread: the load goes on while the node starts
        await trio.to_thread.run_sync(c.restart, victim)
        await trio.sleep(BACK)
        stop.set()
    assert not load.failed, f"{what}: {len(load.failed)} failed: {load.failed[:10]}"
    assert not load.wrong, f"{what}: {len(load.wrong)} wrong: {load.wrong[:10]}"
    took = await wait_converged(ds, c, CONVERGE_UNDER_LOAD)
    t_hints = trio.current_time()
    kept = await hints_pending(ds)
    # hints go when their target answers: every tick, or 10 s after a failed attempt
    while any((left := await hints_pending(ds)).values()):
        assert trio.current_time() - t_hints < CONVERGE_BOUND, f"{what}: hints {left}"
        await trio.sleep(0.25)
    hints_took = trio.current_time() - t_hints
    await load.verify()
    print(f"{what}: cycle {time.monotonic() - t0:.1f}s, converged {took:.2f}s after the "
          f"load stopped, hints {kept} gone {hints_took:.2f}s later; "
          f"{len(load.bad_listings)} wrong listings")


# -- a partition, in network namespaces ------------------------------------------------------

# A subnet that exists only inside the test's namespaces (they have no route out).
SUBNET = "10.213.0"
NODE_PORT = 4001


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _netns_unavailable() -> str | None:
    """Why this machine cannot run the partition test, or None."""
    if os.geteuid() != 0:
        return f"network namespaces need root (the test runs as uid {os.geteuid()})"
    probe = f"dsc-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except (OSError, subprocess.SubprocessError) as e:
        err = getattr(e, "stderr", b"") or b""
        return f"`ip netns add` fails here: {e} {err.decode().strip()}"
    _ip("netns", "delete", probe)
    return None


class Net:
    """Namespaces ``<p>-n0 .. <p>-n{N-1}`` (one per node) and ``<p>-c`` (the client side),
    each with one veth to a bridge in ``<p>-br``. A node is cut off by disabling its
    bridge port: frames to and from it are dropped, silently, as in a real partition
    (no link goes down, no connection is reset)."""

    def __init__(self, nodes: int) -> None:
        self.prefix = f"dsc{secrets.token_hex(2)}"
        self.nodes = nodes
        self.made: list[str] = []

    def ns(self, who: str) -> str:
        return f"{self.prefix}-{who}"

    def addr(self, who: str) -> str:
        return f"{SUBNET}.{100 if who == 'c' else int(who[1:]) + 1}"

    def create(self) -> None:
        br = self.ns("br")
        _ip("netns", "add", br)
        self.made.append(br)
        _ip("-n", br, "link", "add", "br0", "type", "bridge")
        _ip("-n", br, "link", "set", "br0", "up")
        for who in [*(f"n{i}" for i in range(self.nodes)), "c"]:
            ns = self.ns(who)
            _ip("netns", "add", ns)
            self.made.append(ns)
            # created inside the bridge's namespace, the peer straight in the node's:
            # no interface ever appears in the host's namespace
            _ip("-n", br, "link", "add", f"v{who}", "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            _ip("-n", br, "link", "set", f"v{who}", "master", "br0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{self.addr(who)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def cut(self, who: str) -> None:
        subprocess.run(["bridge", "-n", self.ns("br"), "link", "set", "dev", f"v{who}",
                        "state", "0"], check=True, capture_output=True, timeout=30)

    def heal(self, who: str) -> None:
        subprocess.run(["bridge", "-n", self.ns("br"), "link", "set", "dev", f"v{who}",
                        "state", "3"], check=True, capture_output=True, timeout=30)

    def run_in(self, who: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(who)]

    def delete(self) -> None:
        # deleting a namespace deletes its end of each veth, and with it the other end
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)


class NetnsNode(NodeProc):
    def __init__(self, index: int, conf: Path, log: Path, run_in: Sequence[str]) -> None:
        super().__init__(index, conf, log)
        self.run_in = list(run_in)

    def start(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        with open(self.log, "ab") as out:
            # `ip netns exec` execs the node: the pid, and its process group, are the node's
            self.proc = subprocess.Popen(
                [*self.run_in, tool("dscluster"), f"--conf={self.conf}", *args],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                start_new_session=True,
            )


class NetnsCluster(Cluster):
    """``Cluster`` with each node in its namespace and the CLI run on the client side."""

    def __init__(self, root: Path, net: Net, replication: int) -> None:
        super().__init__(root, nodes=net.nodes, replication=replication)
        self.net = net

    def dscfg_command(self, boot: Path) -> list[str]:
        return [*self.net.run_in("n0"), tool("dscfg"), "cluster",
                f"--cluster-node-number={self.n}", f"--replication-factor={self.replication}",
                f"--host={self.net.addr('n0')}", f"--port={NODE_PORT}", str(boot)]

    def node_proc(self, i: int) -> NetnsNode:
        return NetnsNode(i, self.root / f"srv{i + 1:02d}", self.root / f"node{i}.log",
                         self.net.run_in(f"n{i}"))

    def join_args(self, index: int) -> list[str]:
        return [*super().join_args(index),
                f"--listen=/ip4/{self.net.addr(f'n{index}')}/tcp/{NODE_PORT}"]

    def client(self, name: str = "cli", token: Path | None = None, side: str = "c") -> Path:
        d = self.root / name
        if not (d / "config.json").exists():
            subprocess.run(
                [*self.net.run_in(side), tool("dsclient"), f"--conf={d}", "init",
                 f"--bootstrapper={self.bootstrapper}",
                 f"--token-file={token or self.client_token}"],
                check=True, capture_output=True, timeout=60)
        return d

    def dsclient(self, *args: str, conf: Path | None = None, input: bytes | None = None,
                 timeout: float = 60, side: str = "c") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*self.net.run_in(side), tool("dsclient"), f"--conf={conf or self.client()}",
             *args], capture_output=True, input=input, timeout=timeout)

    def in_client_side(self, mode: str, *args: str, timeout: float) -> dict[str, Any]:
        """Run ``_child`` (below) on the client side; its JSON answer."""
        root = Path(__file__).resolve().parents[2]
        p = subprocess.run(
            [*self.net.run_in("c"), sys.executable, "-c",
             "import sys; from tests.integration.test_chaos import _child; _child(sys.argv[1:])",
             mode, str(self.client()), *args],
            capture_output=True, timeout=timeout, cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)})
        assert p.returncode == 0, p.stderr.decode()[-4000:] + "\n" + self.logs()
        return json.loads(p.stdout.decode().splitlines()[-1])


def _load_to_json(load: Load) -> dict[str, Any]:
    return {"acked": {k: None if v is None else v.hex() for k, v in load.acked.items()},
            "files": {cid: data.hex() for cid, data in load.files.items()},
            "uncertain": sorted(load.uncertain), "failed": load.failed, "wrong": load.wrong,
            "bad_listings": load.bad_listings, "counts": dict(load.counts),
            "slowest": load.slowest}


def _load_from_json(ds: ClusterDatastore, prefix: str, d: dict[str, Any]) -> Load:
    return Load(ds, prefix, acked={k: None if v is None else bytes.fromhex(v)
                                   for k, v in d["acked"].items()},
                files={cid: bytes.fromhex(h) for cid, h in d["files"].items()},
                uncertain=set(d["uncertain"]), counts=Counter(d["counts"]))


def _child(argv: list[str]) -> None:
    """The client side of the partition test, in its namespace:
    ``load CLIENT_DIR PREFIX SECONDS OUT`` runs the mixed load and writes its model to OUT;
    ``verify CLIENT_DIR PREFIX MODEL BOUND`` waits for convergence and checks the model.
    Prints one JSON line."""
    mode, conf, prefix, arg, *rest = argv

    async def main() -> dict[str, Any]:
        async with open_cluster(Path(conf)) as ds:
            if mode == "load":
                load = Load(ds, prefix)
                await load.run(float(arg))
                Path(rest[0]).write_text(json.dumps(_load_to_json(load)))
                return {"counts": dict(load.counts), "failed": len(load.failed)}
            load = _load_from_json(ds, prefix, json.loads(Path(arg).read_text()))
            took = await wait_converged(ds, _NoLogs(), float(rest[0]))
            await load.verify()
            return {"converged": took}

    print(json.dumps(trio.run(main)))


class _NoLogs:
    """What ``wait_converged`` needs of a cluster, in the child: the parent has the logs."""

    def logs(self) -> str:
        return "(node logs: in the test's output)"


@pytest.fixture
def net() -> Iterator[Net]:
    why = _netns_unavailable()
    if why:
        pytest.skip(why)
    n = Net(3)
    try:
        n.create()
        yield n
    finally:
        n.delete()


# the load's length, and when and how long node 2 is cut off in the middle of it
PARTITION_LOAD, CUT_AT, CUT_FOR = 20.0, 3.0, 12.0
# The load's client gives a member 3 s to answer a request (not the default 30 s): an
# operation that meets the cut-off node on a pooled connection waits for that, then one
# dial (3 s until the neighbour lookup fails, at most the 5 s connect timeout), and the
# load gets on with the other owners for most of the cut. (With the default, each
# operation in flight at the cut waits 25-30 s: the writes wait for every owner.)
CLIENT_REQUEST_TIMEOUT = 3.0
STRAGGLERS = CLIENT_REQUEST_TIMEOUT + 5 + 10


def _set_request_timeout(client_dir: Path, seconds: float) -> None:
    cfg = client_dir / "config.json"
    d = json.loads(cfg.read_text())
    d["timeouts"]["request"] = seconds
    cfg.write_text(json.dumps(d, indent=2))  # in place: the file keeps its mode


def _pulled_since(node: NodeProc, offset: int) -> int:
    """Keys node's anti-entropy logged pulling after ``offset`` bytes of its log."""
    text = node.log.read_bytes()[offset:].decode(errors="replace")
    return sum(int(m) for m in re.findall(r"anti-entropy pulled (\d+) keys", text))


@pytest.mark.soak
@pytest.mark.timeout(120 + PARTITION_LOAD + STRAGGLERS + 2 * CONVERGE_UNDER_LOAD)
def test_a_partitioned_node_takes_no_writes_and_catches_up_after_the_heal(
        net: Net, tmp_path: Path):
    c = NetnsCluster(tmp_path, net, replication=3).start()
    try:
        f = tmp_path / "file.bin"
        f.write_bytes(os.urandom(700_000))
        cid = ok(c.dsclient("add", "-Q", "--no-progress", "--chunker=size-65536",
                            str(f))).decode().strip()
        ok(c.dsclient("put", "/before", input=b"written before the cut"))
        # a client on node 2's side of the cut (in its namespace), set up while whole
        minority = c.client("minority", side="n2")
        loading = c.client("loading")
        _set_request_timeout(loading, CLIENT_REQUEST_TIMEOUT)
        model = tmp_path / "model.json"
        root = Path(__file__).resolve().parents[2]
        loader = subprocess.Popen(
            [*net.run_in("c"), sys.executable, "-c",
             "import sys; from tests.integration.test_chaos import _child; _child(sys.argv[1:])",
             "load", str(loading), "/part", str(PARTITION_LOAD), str(model)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)})
        try:
            time.sleep(CUT_AT)
            net.cut("n2")
            t_cut = time.monotonic()
            log_at_cut = c.nodes[2].log.stat().st_size
            # node 2 alone holds one owner of every slot: it must refuse to make a
            # write or a read of a mutable key look done, and still serve blocks
            line = error_line(c.dsclient("put", "/minority/x", conf=minority, side="n2",
                                         input=b"x"))
            assert "dsclient: error: write of slot" in line and "needs 2 of its 3" in line, line
            line = error_line(c.dsclient("get-key", "/before", conf=minority, side="n2"))
            assert "dsclient: error: read of slot" in line, line
            cat = c.dsclient("cat", cid, conf=minority, side="n2", timeout=120)
            assert ok(cat) == f.read_bytes()
            time.sleep(max(0.0, CUT_FOR - (time.monotonic() - t_cut)))
            net.heal("n2")
            _, err = loader.communicate(timeout=PARTITION_LOAD + STRAGGLERS)
        finally:
            if loader.poll() is None:
                loader.kill()
                loader.wait()
        assert loader.returncode == 0, err.decode()[-4000:] + "\n" + c.logs()
        result = json.loads(model.read_text())
        print(f"load across the cut: {result['counts']}; slowest "
              f"{({k: round(v, 2) for k, v in result['slowest'].items()})}")
        assert not result["failed"], result["failed"][:10]
        assert not result["wrong"], result["wrong"][:10]
        checked = c.in_client_side("verify", "/part", str(model), str(CONVERGE_UNDER_LOAD),
                                   timeout=60 + CONVERGE_UNDER_LOAD)
        # the cut node missed writes (the load went on without it) and pulled them
        pulled = _pulled_since(c.nodes[2], log_at_cut)
        print(f"converged {checked['converged']:.2f}s after the load ended; node 2 pulled "
              f"{pulled} keys after the heal")
        assert pulled > 0
        # and the minority's client reads again, through any owner
        assert ok(c.dsclient("get-key", "/before", conf=minority, side="n2")) == (
            b"written before the cut")
        assert not result["bad_listings"], result["bad_listings"][:10]
    finally:
        c.stop()

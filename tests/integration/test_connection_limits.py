"""Idle connection floods against a real node (net/admission.py): clients still get in,
silent connections are closed after the pre-auth timeout, the node's descriptors stay
bounded, and a client the lane turns away is served over libp2p."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from dscluster import wire
from dscluster.auth import Token
from dscluster.config import write_config
from dscluster.identity import Identity
from dscluster.limits import Limits
from dscluster.localcluster import Cluster, tool
from dscluster.net.pool import ChannelPool
from dscluster.net.transport import open_transport

pytestmark = pytest.mark.timeout(300)
FLOOD = Path(__file__).with_name("idle_flood.py")

SMALL = {"preauth_timeout": 1, "unauthenticated": 16, "unauthenticated_per_source": 8,
         "authenticated": 32, "member_reserve": 4}


def one_node(root: Path, connections: dict[str, Any] | None = None) -> Cluster:
    """A one-node cluster; ``connections``: its config's connection limits."""
    return Cluster(root, nodes=1, node0_config=(
        None if connections is None else {"connections": connections})).start()


@pytest.fixture
def small_caps(tmp_path: Path) -> Iterator[Cluster]:
    c = one_node(tmp_path, SMALL)
    try:
        yield c
    finally:
        c.stop()


def ports(c: Cluster) -> dict[str, int]:
    addrs = json.loads((c.nodes[0].conf / "config.json").read_text())["addresses"]
    return {"lane": int(addrs["lane"].split("/")[4]),
            "libp2p": int(addrs["swarm"][0].split("/")[4])}


def node_contact(c: Cluster) -> tuple[str, list[str]]:
    """The node's peer id and addresses (libp2p and lane) from its cluster map."""
    m = json.loads((c.nodes[0].conf / "clustermap.json").read_text())
    return m["nodes"][0]["id"], list(m["nodes"][0]["swarm"])


def node_fds(c: Cluster) -> int:
    assert c.nodes[0].proc is not None
    return len(os.listdir(f"/proc/{c.nodes[0].proc.pid}/fd"))


def libp2p_client(c: Cluster) -> Path:
    d = c.client("p2p-client")
    cfg = json.loads((d / "config.json").read_text())
    write_config(d / "config.json", {**cfg, "data_lane": False})
    return d


@contextlib.contextmanager
def idle_flood(port: int, count: int, sources: int = 1) -> Iterator[None]:
    """An attacker process holding ``count`` silent connections to ``port``."""
    p = subprocess.Popen([sys.executable, str(FLOOD), str(port), str(count), str(sources)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        yield
    finally:
        p.kill()
        p.wait()


async def dsclient(conf: Path, *args: str) -> tuple[int, float, str]:
    t0 = trio.current_time()
    p = await trio.run_process([tool("dsclient"), f"--conf={conf}", *args],
                               capture_stdout=True, capture_stderr=True, check=False)
    return p.returncode, trio.current_time() - t0, p.stderr.decode()


async def requests_all_succeed(c: Cluster, clients: list[Path], count: int) -> int:
    """``count`` gets from each of ``clients``, each from a fresh client process; the
    most descriptors the node held meanwhile."""
    most = 0
    for conf in clients:
        for _ in range(count):
            code, took, err = await dsclient(conf, "get-key", "/warm")
            assert code == 0, f"after {took:.1f}s: {err}"
            most = max(most, node_fds(c))
    return most


async def closed_within(port: int, source: str) -> float:
    """Seconds until the node closes a silent connection from ``source``."""
    s = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    t0 = trio.current_time()
    with trio.fail_after(10), contextlib.suppress(trio.BrokenResourceError):
        while await s.receive_some(4096):
            pass
    await s.aclose()
    return trio.current_time() - t0


async def test_idle_floods_do_not_shut_out_clients(small_caps: Cluster):
    c = small_caps
    clients = [c.client(), libp2p_client(c)]
    assert (await dsclient(clients[0], "put", "/warm", "/dev/null"))[0] == 0
    baseline = node_fds(c)
    p = ports(c)
    # from the clients' own address and 20 others: all caps overflow many times
    with idle_flood(p["lane"], 300, 21), idle_flood(p["libp2p"], 300, 21):
        most = await requests_all_succeed(c, clients, 5)
        # and it is the lane that serves them, not only libp2p after it
        async with open_transport(Identity.generate()) as transport:
            pool = ChannelPool(transport, Token.load(c.client_token), Limits())
            peer, addrs = node_contact(c)
            async with pool.channel(peer, addrs) as chan:
                assert chan.stream.transport == "lane"
                assert isinstance(await chan.request(wire.GetMap(known_epoch=0)), wire.MapData)
            await pool.aclose()
    # both listeners' caps, a few connections closing, and what the node had before
    assert most <= baseline + 2 * (SMALL["unauthenticated"] + 8)
    # without a flood to evict it, a silent connection lives out its pre-auth time
    for port in ports(c).values():
        assert 0.9 < await closed_within(port, "127.1.0.1") < 3
    assert "Traceback" not in c.logs()


async def test_realistic_flood_with_default_caps(tmp_path: Path):
    # the attacker raises its own soft limit to this hard one
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"needs 4096 file descriptors, the hard limit is {hard}")
    c = one_node(tmp_path)
    try:
        clients = [c.client(), libp2p_client(c)]
        assert (await dsclient(clients[0], "put", "/warm", "/dev/null"))[0] == 0
        baseline = node_fds(c)
        p = ports(c)
        with idle_flood(p["lane"], 1100), idle_flood(p["libp2p"], 1500):
            most = await requests_all_succeed(c, clients, 5)
        # one address holds 32 unauthenticated connections per listener, not 2,600
        assert most <= baseline + 2 * (32 + 8)
    finally:
        c.stop()


async def test_a_client_the_lane_has_no_room_for_is_served_over_libp2p(tmp_path: Path):
    c = one_node(tmp_path, {"authenticated": 2, "member_reserve": 1})
    try:
        peer, addrs = node_contact(c)
        async with open_transport(Identity.generate()) as transport:
            clients = ChannelPool(transport, Token.load(c.client_token), Limits())
            nodes = ChannelPool(transport, Token.load(c.node_token), Limits())
            async with clients.channel(peer, addrs) as first, \
                    clients.channel(peer, addrs) as second, \
                    nodes.channel(peer, addrs) as node:
                # one lane connection for clients, the other is the members' reserve
                assert [ch.stream.transport for ch in (first, second, node)] == \
                    ["lane", "libp2p", "lane"]
                for ch in (first, second, node):
                    assert isinstance(await ch.request(wire.GetMap(known_epoch=0)), wire.MapData)
            await clients.aclose()
            await nodes.aclose()
    finally:
        c.stop()

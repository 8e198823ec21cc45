"""A whole cluster in one process, without sockets: real node servers, replica stores,
member callers and anti-entropy, joined by an in-memory pool that can kill a node,
wipe its disk or cut two members apart. Replication, hint and repair tests run on it
in milliseconds and under trio's MockClock; the end-to-end claims are made again by
the real-process tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from .. import wire
from ..client.datastore import ClusterDatastore
from ..cluster.caller import MemberCaller
from ..cluster.liveness import Liveness
from ..cluster.repair import AntiEntropy
from ..cluster.replica import ReplicaStore
from ..cluster.state import ClusterState
from ..clustermap import JOINED, ClusterMap, Member
from ..errors import Unavailable, error_from_wire
from ..keys import SLOT_COUNT
from ..limits import Limits
from ..node.server import Caller, NodeServer
from ..store.memory import MemoryStore

CLIENT = -1  # the "member index" of a client in cut()


@dataclass
class MemNode:
    index: int
    server: NodeServer
    caller: MemberCaller
    anti_entropy: AntiEntropy
    up: bool = True


@dataclass
class MemoryCluster:
    nodes: list[MemNode] = field(default_factory=list)
    cuts: set[frozenset[int]] = field(default_factory=set)
    limits: Limits = field(default_factory=Limits)
    map: ClusterMap | None = None

    @classmethod
    async def start(cls, n: int, replication: int, *, limits: Limits | None = None,
                    disable_delete: bool = False) -> MemoryCluster:
        cluster = cls(limits=limits or Limits())
        cmap = ClusterMap.initial(n, replication)
        for i in range(n):
            cmap = cmap.with_member(Member(i, peer_of(i), (f"/memory/{i}",), JOINED))
        cluster.map = cmap
        for i in range(n):
            cluster.nodes.append(await cluster._node(i, disable_delete))
        return cluster

    async def _node(self, i: int, disable_delete: bool) -> MemNode:
        assert self.map is not None
        state = ClusterState(self.map)
        liveness = Liveness()
        replica = await ReplicaStore.open(MemoryStore(), None, sync=False)
        server = NodeServer(replica=replica, state=state, member_index=i, peer_id=peer_of(i),
                            secret=b"s" * 32, limits=self.limits,
                            disable_delete=disable_delete, liveness=liveness)
        caller = MemberCaller(MemoryPool(self, i, "node"), state, bootstrapper=None,
                              local=(i, server.answer_local), liveness=liveness)
        server.anti_entropy = AntiEntropy(replica, caller, i, limits=self.limits)
        return MemNode(i, server, caller, server.anti_entropy)

    async def add_node(self) -> MemNode:
        """A new member joins (through node 0, the bootstrapper), owning no slots."""
        cmap = self.nodes[0].server.state.map
        i = len(cmap.members)
        cmap = cmap.add_member(peer_of(i), (f"/memory/{i}",))
        self.nodes[0].server.state.offer(cmap)
        self.map = cmap
        node = await self._node(i, False)
        self.nodes.append(node)
        return node

    def client(self, *, role: str = "client", writer: str | None = None) -> ClusterDatastore:
        assert self.map is not None
        caller = MemberCaller(MemoryPool(self, CLIENT, role), ClusterState(self.map),
                              bootstrapper=None)
        return ClusterDatastore(caller, limits=self.limits, writer=writer)

    # -- faults ----------------------------------------------------------------------------
    def kill(self, i: int) -> None:
        self.nodes[i].up = False

    def revive(self, i: int) -> None:
        self.nodes[i].up = True

    async def wipe(self, i: int) -> None:
        """Node ``i`` comes back with an empty disk."""
        node = self.nodes[i]
        node.server.replica = await ReplicaStore.open(MemoryStore(), None, sync=False)
        node.server.store = node.server.replica.store
        node.anti_entropy = node.server.anti_entropy = AntiEntropy(
            node.server.replica, node.caller, i, limits=self.limits)

    def cut(self, a: int, b: int) -> None:
        self.cuts.add(frozenset((a, b)))

    def heal(self) -> None:
        self.cuts.clear()

    def reachable(self, src: int, dst: int) -> bool:
        return ((src == CLIENT or self.nodes[src].up) and self.nodes[dst].up
                and frozenset((src, dst)) not in self.cuts)

    async def repair_all(self) -> None:
        """One anti-entropy pass on every live node over every slot."""
        for node in self.nodes:
            if node.up:
                await node.anti_entropy.repair(list(range(SLOT_COUNT)))

    def digests(self, i: int) -> bytes:
        return self.nodes[i].server.replica.digests(range(SLOT_COUNT))


def peer_of(i: int) -> str:
    return f"memory-peer-{i}"


class MemoryPool:
    """The ChannelPool interface over direct calls into node servers."""

    def __init__(self, cluster: MemoryCluster, src: int, role: str) -> None:
        self.cluster = cluster
        self.src = src
        self.role = role

    @asynccontextmanager
    async def channel(self, peer_id: str, addrs: Sequence[str]) -> AsyncIterator[_Channel]:
        dst = int(peer_id.rsplit("-", 1)[1])
        await trio.lowlevel.checkpoint()
        if not self.cluster.reachable(self.src, dst):
            raise Unavailable(f"cannot connect to {peer_id}: unreachable")
        yield _Channel(self, dst)

    async def forget(self, peer_id: str) -> None:
        pass

    async def aclose(self) -> None:
        pass


class _Channel:
    def __init__(self, pool: MemoryPool, dst: int) -> None:
        self.pool = pool
        self.dst = dst

    async def request(self, msg: wire.Message) -> wire.Message:
        cluster = self.pool.cluster
        node = cluster.nodes[self.dst]
        caller = Caller(peer_of(self.pool.src), self.pool.role)
        ans = await node.server._answer(msg, caller)
        await trio.lowlevel.checkpoint()
        if not cluster.reachable(self.pool.src, self.dst):  # died while answering
            raise Unavailable(f"connection to {peer_of(self.dst)} lost")
        if isinstance(ans, wire.Error):
            raise error_from_wire(ans.code, ans.message, ans.detail)
        return ans

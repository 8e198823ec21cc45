"""disable_delete makes a node's data write-once: the request handlers, in process."""

from __future__ import annotations

import pytest
import trio

from dscluster import wire
from dscluster.cluster.replica import ReplicaStore
from dscluster.cluster.state import ClusterState
from dscluster.cluster.versions import HybridClock
from dscluster.clustermap import ClusterMap
from dscluster.limits import Limits
from dscluster.node.server import NodeServer
from dscluster.store.memory import MemoryStore


class YieldingStore(MemoryStore):
    """A store that lets other tasks run after every read, as a real one does."""

    async def get_size(self, key: str) -> int:
        try:
            return await super().get_size(key)
        finally:
            await trio.sleep(0.01)


async def server(disable_delete: bool = True) -> NodeServer:
    replica = await ReplicaStore.open(YieldingStore(), None, sync=False)
    return NodeServer(replica=replica, state=ClusterState(ClusterMap.initial(1)),
                      member_index=0, peer_id="self", secret=b"s" * 32, limits=Limits(),
                      disable_delete=disable_delete)


async def ask(node: NodeServer, msg: wire.Message) -> wire.Message:
    return await node.answer_local(msg)


_clock = HybridClock("writer")


def write(*ops: tuple[str, bytes | None]) -> wire.WriteRecords:
    """A new write of ``ops``, each stamped newer than every write before."""
    return wire.WriteRecords(ops=[[k, v, *_clock.now().to_wire()] for k, v in ops])


def ok(ans: wire.Message) -> bool:
    return isinstance(ans, wire.Written) and all(r[0] for r in ans.results)


def refused(ans: wire.Message, words: str) -> bool:
    return isinstance(ans, wire.Error) and ans.code == "forbidden" and words in ans.message


async def test_an_overwrite_is_refused_and_the_old_value_stays():
    node = await server()
    assert ok(await ask(node, write(("/k", b"old"))))
    for value in (b"", b"new", b"ol"):
        ans = await ask(node, write(("/k", value)))
        assert refused(ans, "overwrites are disabled on this node (disable_delete)"), ans
        assert refused(await ask(node, write(("/k", value))), "overwrites")
    assert await node.store.get("/k") == b"old"


async def test_the_same_bytes_again_are_accepted():
    node = await server()
    for msg in (write(("/k", b"v")), write(("/k", b"v")),
                write(("/k", b"v"), ("/new", b"n"))):
        assert ok(await ask(node, msg))
    assert await node.store.get("/k") == b"v" and await node.store.get("/new") == b"n"


async def test_a_refused_batch_writes_nothing():
    node = await server()
    await ask(node, write(("/k", b"old")))
    for ops in ([("/a", b"1"), ("/k", b""), ("/z", b"2")], [("/a", b"1"), ("/k", None)]):
        assert isinstance(await ask(node, write(*ops)), wire.Error)
    assert not await node.store.has("/a") and not await node.store.has("/z")
    assert await node.store.get("/k") == b"old"


async def test_check_batch_answers_as_batch_would_without_applying():
    node = await server()
    await ask(node, write(("/k", b"old")))
    assert isinstance(await ask(node, wire.CheckBatch(ops=[["/a", b"1"]])), wire.Ok)
    assert not await node.store.has("/a")
    assert refused(await ask(node, wire.CheckBatch(ops=[["/k", b"x"]])), "overwrites")
    assert refused(await ask(node, wire.CheckBatch(ops=[["/k", None]])), "deletes")
    too_many = [[f"/{i}", b""] for i in range(Limits().max_batch_ops + 1)]
    ans = await ask(node, wire.CheckBatch(ops=too_many))
    assert isinstance(ans, wire.Error) and ans.code == "too_large"


async def test_concurrent_first_writes_of_a_key_leave_one_value():
    node = await server()
    answers: dict[bytes, wire.Message] = {}

    async def put(value: bytes) -> None:
        answers[value] = await ask(node, write(("/k", value)))

    async with trio.open_nursery() as n:
        for value in (b"a", b"b", b"c"):
            n.start_soon(put, value)
    accepted = [v for v, ans in answers.items() if ok(ans)]
    assert accepted == [await node.store.get("/k")]


@pytest.mark.parametrize("msg", [lambda: write(("/k", b"")),
                                 lambda: write(("/k", b""), ("/other", b"o"))])
async def test_without_disable_delete_overwrites_work(msg):
    node = await server(disable_delete=False)
    await ask(node, write(("/k", b"old")))
    assert ok(await ask(node, msg()))
    assert await node.store.get("/k") == b""

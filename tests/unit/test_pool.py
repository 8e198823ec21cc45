"""The channel pool over in-memory streams: reuse, and what a cancelled request leaves."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from dscluster import wire
from dscluster.auth import Token, new_secret
from dscluster.limits import Limits
from dscluster.net.channel import MessageChannel
from dscluster.net.handshake import server_handshake
from dscluster.net.pool import ChannelPool
from tests.unit.net_support import End

SECRET = new_secret()
PEER = "node-peer"


class _Node:
    """A transport whose every stream is served in ``nursery`` by a node that answers
    DiskUsage with its stream's number, after ``hold`` is set if there is one."""

    peer_id = "client-peer"

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.opened = 0
        self.closed = 0
        self.hold: trio.Event | None = None

    async def open_stream(self, peer_id: str, addrs: Sequence[str]) -> End:
        self.opened += 1
        a, b = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self._serve, self.opened,
                                MessageChannel(End(b, PEER, "client-peer"),  # type: ignore[arg-type]
                                               wire.Connection(wire.Role.SERVER)))
        return End(a, "client-peer", peer_id)

    async def _serve(self, number: int, chan: MessageChannel) -> None:
        await server_handshake(chan, SECRET, lambda role: wire.Welcome(
            epoch=1, node_index=0, role=role))
        try:
            while (msg := await chan.receive()) is not None:
                assert isinstance(msg, wire.DiskUsage)
                if self.hold is not None:
                    await self.hold.wait()
                await chan.send(wire.Size(value=number))
        except trio.BrokenResourceError:
            pass  # the client closed the stream before the answer
        self.closed += 1


async def ask(pool: ChannelPool) -> int:
    async with pool.channel(PEER, []) as chan:
        ans = await chan.request(wire.DiskUsage())
    assert isinstance(ans, wire.Size)
    return ans.value


def pool_of(node: _Node, streams: int = 32) -> ChannelPool:
    return ChannelPool(node, Token.for_role(SECRET, "client"), Limits(),  # type: ignore[arg-type]
                       streams_per_peer=streams)


async def test_a_channel_is_reused_after_a_request():
    async with trio.open_nursery() as n:
        node = _Node(n)
        pool = pool_of(node)
        assert [await ask(pool) for _ in range(3)] == [1, 1, 1]
        assert node.opened == 1
        n.cancel_scope.cancel()


async def test_a_request_cancelled_midway_closes_its_channel_and_the_next_opens_another():
    async with trio.open_nursery() as n:
        node = _Node(n)
        pool = pool_of(node, streams=1)
        node.hold = trio.Event()
        with trio.move_on_after(0.5) as cut:
            await ask(pool)
        assert cut.cancelled_caught
        node.hold.set()
        await trio.testing.wait_all_tasks_blocked()
        assert node.closed == 1  # not back in the idle list: its answer is still due
        assert await ask(pool) == 2  # and its stream slot was given back
        n.cancel_scope.cancel()


async def test_a_request_cancelled_before_it_starts_takes_no_channel_or_slot():
    async with trio.open_nursery() as n:
        node = _Node(n)
        pool = pool_of(node, streams=1)
        assert await ask(pool) == 1
        with trio.CancelScope() as scope:
            scope.cancel()
            await ask(pool)
        assert scope.cancelled_caught
        assert await ask(pool) == 1  # the idle channel was neither taken nor closed
        assert node.opened == 1
        n.cancel_scope.cancel()


async def test_requests_beyond_the_streams_per_peer_wait_for_a_slot():
    async with trio.open_nursery() as n:
        node = _Node(n)
        pool = pool_of(node, streams=2)
        node.hold = trio.Event()
        got: list[int] = []

        async def one() -> None:
            got.append(await ask(pool))

        async with trio.open_nursery() as m:
            for _ in range(5):
                m.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            assert node.opened == 2  # three wait for a slot
            node.hold.set()
        assert sorted(got) == [1, 1, 1, 2, 2] or sorted(got) == [1, 1, 2, 2, 2]
        assert node.opened == 2
        n.cancel_scope.cancel()

"""The member caller against a black-holed member (no socket: a pool that never
connects), on trio's MockClock: one connect timeout, then fast failures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from dscluster import wire
from dscluster.cluster.caller import MemberCaller
from dscluster.cluster.state import ClusterState
from dscluster.clustermap import JOINED, ClusterMap, Member
from dscluster.errors import Unavailable


class BlackHole:
    """A pool whose dials never answer."""

    def __init__(self) -> None:
        self.dials = 0

    @asynccontextmanager
    async def channel(self, peer_id: str, addrs: Sequence[str]) -> AsyncIterator[None]:
        self.dials += 1
        await trio.sleep_forever()
        yield

    async def forget(self, peer_id: str) -> None:
        pass


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_a_black_holed_member_costs_one_timeout_then_fails_fast(autojump_clock):
    cmap = ClusterMap.initial(2)
    for i in range(2):
        cmap = cmap.with_member(Member(i, f"peer{i}", (f"/ip4/127.0.0.1/tcp/{i + 1}",),
                                       JOINED))
    pool = BlackHole()
    caller = MemberCaller(pool, ClusterState(cmap), bootstrapper=None,  # type: ignore[arg-type]
                          request_timeout=3)
    t0 = trio.current_time()
    with pytest.raises(Unavailable, match=r"node 1 .* is unavailable"):
        await caller.ask(1, wire.Stats())
    first = trio.current_time() - t0
    # the dial, then the map refresh from node 0 (also silent): two timeouts, and node 1
    # is not dialed again in the same request
    assert first == pytest.approx(6, abs=0.1) and pool.dials == 2
    dials = pool.dials
    t0 = trio.current_time()
    with pytest.raises(Unavailable, match=r"down for 3\.0s: no answer within 3s"):
        await caller.ask(1, wire.Stats())
    assert trio.current_time() - t0 == pytest.approx(0, abs=0.01)
    assert pool.dials == dials  # nobody was dialed
    assert caller.liveness.view() == {"up": [], "down": [0, 1]}
    await trio.sleep(caller.liveness.retry_after)  # then it is worth a try again
    with pytest.raises(Unavailable):
        await caller.ask(1, wire.Stats())
    assert pool.dials > dials

"""Calling cluster members: the one place that talks to nodes on behalf of a client.

Theory of operation (Garage's ``rpc_helper``): the caller owns the channel pool, the
request timeout, redirects, refreshing the map and the in-process shortcut to the node
it lives in. Callers above it say *what* to ask and *which* member or slot — the map's
``write_set`` / ``read_set`` questions pick the members — and never open channels
themselves. Replication, liveness and writes to several owner sets are changes inside
this class and the map's set functions, not in the datastore client.

- A member that redirects (it does not serve the slot at our epoch) makes the caller
  refresh its map and retry, a bounded number of times.
- A member that cannot be reached makes the caller refresh the map once (the node may
  have restarted, killing a pooled stream, or moved) and then fail with Unavailable
  naming the node and its slots. Every request is idempotent, so the retry is safe.
- A member whose dial failed is marked down in the liveness view (liveness.py) and is
  not dialed again for a moment: requests to it fail at once instead of each waiting
  out a connect timeout. Nodes ping every member (``watch``) to keep the view current.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import trio

from .. import wire
from ..clustermap import JOINED, ClusterMap, Member
from ..concurrency import open_nursery
from ..errors import (
    CatchingUp,
    ClusterError,
    DSClusterError,
    Redirect,
    Unavailable,
    error_from_wire,
)
from ..net.pool import ChannelPool
from .liveness import Liveness
from .state import ClusterState

log = logging.getLogger(__name__)
MAX_REDIRECTS = 3
# how often a node pings each other member, and how long it waits for the answer
PING_INTERVAL = 1.0
PING_TIMEOUT = 2.0
LocalHandler = Callable[[wire.Message], Awaitable[wire.Message]]
T = TypeVar("T")


class MemberCaller:
    def __init__(
        self,
        pool: ChannelPool,
        state: ClusterState,
        *,
        bootstrapper: tuple[str, Sequence[str]] | None,
        request_timeout: float = 30.0,
        local: tuple[int, LocalHandler] | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        self.pool = pool
        self.state = state
        self.bootstrapper = bootstrapper
        self.request_timeout = request_timeout
        self.liveness = liveness or Liveness()
        # inside a node: its member index and its server, to answer its own slots
        self._local_index, self._local = local if local is not None else (-1, None)
        self._refresh_lock = trio.Lock()

    # -- the map ------------------------------------------------------------------------
    async def refresh_map(self) -> bool:
        """Fetch the current map (bootstrapper first, then any joined node).

        Returns whether a newer map was adopted. Concurrent callers share one fetch."""
        epoch = self.state.epoch
        async with self._refresh_lock:
            if self.state.epoch != epoch:
                return True  # someone else refreshed while we waited
            errors = []
            for peer, addrs in self._map_sources():
                member = self.state.map.member_by_peer(peer)
                down = self.liveness.refusal(member.index) if member else None
                if down:  # not worth a connect timeout now
                    errors.append(f"{peer}: {down}")
                    continue
                try:
                    with trio.fail_after(self.request_timeout):
                        async with self.pool.channel(peer, addrs) as chan:
                            ans = await chan.request(wire.GetMap(known_epoch=self.state.epoch))
                except (DSClusterError, trio.TooSlowError) as e:
                    why = str(e) or "timed out"
                    if member is not None and isinstance(e, Unavailable | trio.TooSlowError):
                        self.liveness.unreachable(member.index, why)
                    errors.append(f"{peer}: {why}")
                    continue
                assert isinstance(ans, wire.MapData)
                return ans.map is not None and self.adopt(ClusterMap.from_dict(ans.map))
            raise Unavailable("cannot fetch the cluster map: " + "; ".join(errors))

    def adopt(self, cmap: ClusterMap) -> bool:
        """Offer ``cmap`` to the state; whether it was newer. Liveness is kept per member
        index, so a member now held by another peer (a dead node's replacement) starts
        afresh: its predecessor's failures say nothing about it."""
        old = self.state.map
        if not self.state.offer(cmap):
            return False
        for m in cmap.members[:len(old.members)]:
            if old.members[m.index].peer_id != m.peer_id:
                self.liveness.forget(m.index)
        return True

    def _map_sources(self) -> list[tuple[str, Sequence[str]]]:
        sources: list[tuple[str, Sequence[str]]] = []
        if self.bootstrapper:
            # the map may know more addresses of the bootstrapper (its data lane)
            peer, addrs = self.bootstrapper
            known = self.state.map.member_by_peer(peer)
            sources.append((peer, [*known.addrs, *addrs] if known else addrs))
        asked = {peer for peer, _ in sources}
        sources += [(m.peer_id, m.addrs) for m in self.state.map.members
                    if m.state == JOINED and m.peer_id and m.peer_id not in asked]
        return sources

    def describe(self, m: Member) -> str:
        return f"{m.describe()} serving slots {self.state.map.describe_ranges(m.index)}"

    # -- one member -----------------------------------------------------------------------
    async def on_member(self, pick: Callable[[ClusterMap], Member],
                        call: Callable[[Any], Awaitable[T]], *,
                        follow_redirects: bool = True, timeout: float | None = None) -> T:
        """Run ``call(channel)`` on the member ``pick`` chooses, following redirects and
        refreshing the map once when the member is unknown or unreachable."""
        refreshed = False
        for _ in range(MAX_REDIRECTS + 1):
            epoch = self.state.epoch  # the map the member is picked from
            member = pick(self.state.map)
            if member.state != JOINED or not member.peer_id:
                if not refreshed:
                    refreshed = True
                    await self.refresh_map()
                    continue
                raise Unavailable(f"{self.describe(member)} has not joined the cluster yet")
            local = member.index == self._local_index and self._local is not None
            down = None if local else self.liveness.refusal(member.index)
            if down is not None:
                if not refreshed:
                    refreshed = True
                    if await self._newer_map():  # it may have moved
                        continue
                raise Unavailable(f"{self.describe(member)} is unavailable: {down}")
            connected = False
            try:
                with trio.fail_after(timeout or self.request_timeout):
                    if local:
                        return await call(_LocalChannel(self._local))
                    async with self.pool.channel(member.peer_id, member.addrs) as chan:
                        connected = True
                        self.liveness.reachable(member.index)
                        return await call(chan)
            except Redirect as r:
                log.debug("redirected: %s", r)
                if not follow_redirects:
                    raise
                # another request may have fetched a newer map while this one was out
                if (not await self.refresh_map() and self.state.epoch <= epoch
                        and r.epoch <= epoch):
                    raise ClusterError(
                        f"{member.describe()} refuses slot {r.slot} although map epoch "
                        f"{epoch} assigns it there: {r}"
                    ) from None
            except (Unavailable, trio.TooSlowError) as e:
                await self.pool.forget(member.peer_id)
                if not connected:
                    # only a failed dial says the member is down: a pooled stream that
                    # broke mid-request may just have died with a restart
                    self.liveness.unreachable(member.index, str(e) or "no answer within "
                                              f"{self.request_timeout:g}s")
                if not refreshed:
                    # once: the node may have restarted (a pooled stream died with it) or
                    # moved (a newer map knows where); all our requests are idempotent.
                    # A dial that failed is worth repeating only towards a newer map.
                    refreshed = True
                    if await self._newer_map() or connected:
                        continue
                why = str(e) or f"no answer within {self.request_timeout:g}s"
                raise Unavailable(f"{self.describe(member)} is unavailable: {why}") from None
        raise ClusterError(f"too many redirects (map epoch {self.state.epoch})")

    async def _newer_map(self) -> bool:
        try:
            return await self.refresh_map()
        except Unavailable:
            return False

    async def ask(self, index: int, msg: wire.Message, *, follow_redirects: bool = True,
                  timeout: float | None = None) -> wire.Message:
        """``msg`` to member ``index``; ``timeout`` instead of the request timeout for a
        request that takes long by design (a repair pass; math.inf: no limit)."""
        return await self.on_member(lambda m: m.members[index],
                                    lambda chan: chan.request(msg),
                                    follow_redirects=follow_redirects, timeout=timeout)

    async def try_member(self, index: int, msg: wire.Message, *,
                         dial_down: bool = False) -> wire.Message:
        """``msg`` to member ``index``, once: no redirects followed and no map refresh, for
        the quorum calls (quorum.py), where an owner that is down is an answer, not a
        reason to stall. A member marked down fails at once unless ``dial_down`` (a
        quorum that needs it); a pooled stream that broke mid-request (the member
        restarted) is retried once on a fresh one."""
        for attempt in (1, 2):
            member = self.state.map.members[index]
            if member.state != JOINED or not member.peer_id:
                raise Unavailable(f"{self.describe(member)} has not joined the cluster yet")
            if index == self._local_index and self._local is not None:
                return await _LocalChannel(self._local).request(msg)
            down = None if dial_down else self.liveness.refusal(index)
            if down is not None:
                raise Unavailable(f"{member.describe()} is unavailable: {down}")
            connected = False
            try:
                # trio.fail_after's work without its generator-based context manager:
                # this runs for every request of a read or write
                with trio.CancelScope(deadline=trio.current_time() + self.request_timeout):
                    async with self.pool.channel(member.peer_id, member.addrs) as chan:
                        connected = True
                        self.liveness.reachable(index)
                        return await chan.request(msg)
                raise trio.TooSlowError  # the body returns or raises unless cancelled
            except CatchingUp:
                raise  # an answer: the member is up and the stream is fine
            except (Unavailable, trio.TooSlowError) as e:
                await self.pool.forget(member.peer_id)
                why = str(e) or f"no answer within {self.request_timeout:g}s"
                if not connected:
                    self.liveness.unreachable(index, why)
                if connected and attempt == 1:
                    continue
                raise Unavailable(f"{member.describe()} is unavailable: {why}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def each_serving_member(self, msg: wire.Message, *,
                                  skip_down: bool = False) -> list[wire.Message]:
        """Send ``msg`` to every node that serves slots; the answers in member order.
        With ``skip_down`` members that cannot be reached are left out (their replicas
        answer for them) as long as every slot keeps a member that answered."""
        members = self.state.map.serving_members()
        answers: dict[int, wire.Message] = {}
        failed: dict[int, str] = {}

        async def one(i: int) -> None:
            try:
                answers[i] = await self.ask(i, msg)
            except Unavailable as e:
                if not skip_down:
                    raise
                failed[i] = str(e)

        async with open_nursery() as n:
            for i in members:
                n.start_soon(one, i)
        if failed:
            lost = self.state.map.slots_without(set(answers))
            if lost:
                raise Unavailable(f"{len(lost)} slots have no owner that answered "
                                  f"(first: slot {lost[0]}): " + "; ".join(failed.values()))
        return [answers[i] for i in members if i in answers]

    # -- liveness ---------------------------------------------------------------------------
    async def watch(self, interval: float = PING_INTERVAL) -> None:
        """Ping every other joined member each ``interval`` seconds: keeps the liveness
        view current (a member comes back as soon as it answers) and adopts any newer
        map a member holds, so maps spread without the bootstrapper."""
        while True:
            async with trio.open_nursery() as n:
                for m in self.state.map.members:
                    if m.index != self._local_index and m.state == JOINED and m.peer_id:
                        n.start_soon(self._ping, m)
            await trio.sleep(interval)

    async def _ping(self, m: Member) -> None:
        assert m.peer_id is not None
        try:
            with trio.fail_after(PING_TIMEOUT):
                async with self.pool.channel(m.peer_id, m.addrs) as chan:
                    ans = await chan.request(wire.GetMap(known_epoch=self.state.epoch))
        except (DSClusterError, trio.TooSlowError) as e:
            self.liveness.unreachable(m.index, str(e) or f"no answer to a ping within "
                                      f"{PING_TIMEOUT:g}s")
            await self.pool.forget(m.peer_id)
            return
        self.liveness.reachable(m.index)
        if isinstance(ans, wire.MapData) and ans.map is not None:
            self.adopt(ClusterMap.from_dict(ans.map))

    async def aclose(self) -> None:
        await self.pool.aclose()


class _LocalChannel:
    """A channel to the node this caller lives in: the request goes straight to its
    server's handler; errors come back as the same exceptions as over the wire."""

    __slots__ = ("_answer",)

    def __init__(self, answer: LocalHandler) -> None:
        self._answer = answer

    async def request(self, msg: wire.Message) -> wire.Message:
        ans = await self._answer(msg)
        if isinstance(ans, wire.Error):
            raise error_from_wire(ans.code, ans.message, ans.detail)
        return ans

"""ClusterDatastore: go-datastore semantics across the whole cluster.

Theory of operation:

- A key goes to the primary owner of its slot in the cached map. A node that does not
  serve the slot answers Redirect (with its epoch); the client refreshes its map and
  retries, a bounded number of times. Nothing is written anywhere the map does not say.
- A query is pushed to every serving node (prefix, key order, keys-only, filters, a
  seek position, and a page size that is enough for offset+limit); each node streams
  its own keys in order, page by page; the client heap-merges the sorted streams and
  applies offset and limit once, to the whole cluster.
- A node that cannot be reached gives, within the configured timeouts, an Unavailable
  error naming the node and the slots it serves. Before giving up the client refreshes
  its map once, in case the node moved.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import trio

from .. import wire
from ..cluster.state import ClusterState
from ..clustermap import JOINED, ClusterMap, Member
from ..concurrency import open_nursery
from ..datastore import Batch, BatchOp
from ..errors import ClusterError, DSClusterError, Redirect, Unavailable, error_from_wire
from ..keys import Key, slot_of
from ..limits import Limits
from ..net.pool import ChannelPool
from ..query import Entry, Query, anaive_query_apply, filter_to_wire, seek_after

log = logging.getLogger(__name__)
MAX_REDIRECTS = 3
LocalHandler = Callable[[wire.Message], Awaitable[wire.Message]]
T = TypeVar("T")


class ClusterDatastore:
    def __init__(
        self,
        pool: ChannelPool,
        state: ClusterState,
        *,
        bootstrapper: tuple[str, Sequence[str]] | None,
        limits: Limits,
        request_timeout: float = 30.0,
        local: tuple[int, LocalHandler] | None = None,
    ) -> None:
        self.pool = pool
        # inside a node: its member index and its server, to answer its own slots
        self._local_index, self._local = local if local is not None else (-1, None)
        self.state = state
        self.bootstrapper = bootstrapper
        self.limits = limits
        self.request_timeout = request_timeout
        self._refresh_lock = trio.Lock()

    @property
    def max_value_size(self) -> int:
        return self.limits.max_value_bytes

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
                try:
                    with trio.fail_after(self.request_timeout):
                        async with self.pool.channel(peer, addrs) as chan:
                            ans = await chan.request(wire.GetMap(known_epoch=self.state.epoch))
                except (DSClusterError, trio.TooSlowError) as e:
                    errors.append(f"{peer}: {e or 'timed out'}")
                    continue
                assert isinstance(ans, wire.MapData)
                return ans.map is not None and self.state.offer(ClusterMap.from_dict(ans.map))
            raise Unavailable("cannot fetch the cluster map: " + "; ".join(errors))

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

    def _describe(self, m: Member) -> str:
        return f"{m.describe()} serving slots {self.state.map.describe_ranges(m.index)}"

    # -- one request to one node ----------------------------------------------------------
    async def _on_member(self, pick: Callable[[ClusterMap], Member],
                         call: Callable[[Any], Awaitable[T]], *,
                         follow_redirects: bool = True) -> T:
        """Run ``call(channel)`` on the member ``pick`` chooses, following redirects and
        refreshing the map once when the member is unknown or unreachable."""
        refreshed = False
        for _ in range(MAX_REDIRECTS + 1):
            member = pick(self.state.map)
            if member.state != JOINED or not member.peer_id:
                if not refreshed:
                    refreshed = True
                    await self.refresh_map()
                    continue
                raise Unavailable(f"{self._describe(member)} has not joined the cluster yet")
            try:
                with trio.fail_after(self.request_timeout):
                    if member.index == self._local_index and self._local is not None:
                        return await call(_LocalChannel(self._local))
                    async with self.pool.channel(member.peer_id, member.addrs) as chan:
                        return await call(chan)
            except Redirect as r:
                log.debug("redirected: %s", r)
                if not follow_redirects:
                    raise
                if not await self.refresh_map() and r.epoch <= self.state.epoch:
                    raise ClusterError(
                        f"{member.describe()} refuses slot {r.slot} although map epoch "
                        f"{self.state.epoch} assigns it there: {r}"
                    ) from None
            except (Unavailable, trio.TooSlowError) as e:
                await self.pool.forget(member.peer_id)
                if not refreshed:
                    # once: the node may have restarted (a pooled stream died with it) or
                    # moved (a newer map knows where); all our requests are idempotent
                    refreshed = True
                    with contextlib.suppress(Unavailable):
                        await self.refresh_map()
                    continue
                why = str(e) or f"no answer within {self.request_timeout:g}s"
                raise Unavailable(f"{self._describe(member)} is unavailable: {why}") from None
        raise ClusterError(f"too many redirects (map epoch {self.state.epoch})")

    async def _request(self, key: str, msg: wire.Message) -> wire.Message:
        """``msg`` to the primary of ``key``'s slot."""
        slot = slot_of(key)
        return await self._on_member(lambda m: m.members[m.owners[slot][0]],
                                     lambda chan: chan.request(msg))

    async def _ask(self, index: int, msg: wire.Message, *,
                   follow_redirects: bool = True) -> wire.Message:
        """``msg`` to member ``index``."""
        return await self._on_member(lambda m: m.members[index],
                                     lambda chan: chan.request(msg),
                                     follow_redirects=follow_redirects)

    # -- go-datastore operations ----------------------------------------------------------
    async def get(self, key: str) -> bytes:
        k = Key(key)
        ans = await self._request(k, wire.Get(key=k))
        return ans.value  # type: ignore[attr-defined,no-any-return]

    async def has(self, key: str) -> bool:
        k = Key(key)
        ans = await self._request(k, wire.Has(key=k))
        return ans.value  # type: ignore[attr-defined,no-any-return]

    async def get_size(self, key: str) -> int:
        k = Key(key)
        ans = await self._request(k, wire.GetSize(key=k))
        return ans.value  # type: ignore[attr-defined,no-any-return]

    async def put(self, key: str, value: bytes) -> None:
        k = Key(key)
        await self._request(k, wire.Put(key=k, value=bytes(value)))

    async def delete(self, key: str) -> None:
        k = Key(key)
        await self._request(k, wire.Delete(key=k))

    def batch(self) -> Batch:
        return Batch(self.apply)

    async def apply(self, ops: Sequence[BatchOp], *, _depth: int = 0) -> None:
        """Send each node its share of the batch, in bounded requests, concurrently.

        Each request is applied atomically by its node; a batch spanning several nodes
        is not atomic across them (as in go-ds-cluster). If the map moved under a
        request, that request's operations are routed again with the new map; puts and
        deletes are idempotent, so re-sending them is safe."""
        cmap = self.state.map
        per_member: dict[int, list[list[Any]]] = {}
        for op in ops:
            per_member.setdefault(cmap.owners[slot_of(op.key)][0], []).append(
                [str(op.key), op.value])

        async def send(i: int, chunk: list[list[Any]]) -> None:
            try:
                await self._ask(i, wire.Batch(ops=chunk), follow_redirects=False)
            except Redirect:
                if _depth >= MAX_REDIRECTS:
                    raise
                await self.refresh_map()
                await self.apply([BatchOp(k, v) for k, v in chunk], _depth=_depth + 1)

        async with open_nursery() as n:
            for i, member_ops in per_member.items():
                for chunk in self._chunks(member_ops):
                    n.start_soon(send, i, chunk)

    def _chunks(self, ops: list[list[Any]]) -> list[list[list[Any]]]:
        chunks: list[list[list[Any]]] = [[]]
        size = 0
        for op in ops:
            n = len(op[0]) + (len(op[1]) if op[1] is not None else 0)
            if chunks[-1] and (len(chunks[-1]) >= self.limits.max_batch_ops
                               or size + n > self.limits.page_bytes):
                chunks.append([])
                size = 0
            chunks[-1].append(op)
            size += n
        return [c for c in chunks if c]

    async def _each_serving_member(self, msg: wire.Message) -> list[wire.Message]:
        """Send ``msg`` to every node that serves slots; all answers, in member order."""
        members = self._serving_indexes()
        answers: dict[int, wire.Message] = {}

        async def one(i: int) -> None:
            answers[i] = await self._ask(i, msg)

        async with open_nursery() as n:
            for i in members:
                n.start_soon(one, i)
        return [answers[i] for i in members]

    def _serving_indexes(self) -> list[int]:
        cmap = self.state.map
        return sorted({owners[0] for owners in cmap.owners})

    async def sync(self, prefix: str = "/") -> None:
        await self._each_serving_member(wire.Sync(prefix=Key(prefix)))

    async def disk_usage(self) -> int:
        answers = await self._each_serving_member(wire.DiskUsage())
        return sum(a.value for a in answers)  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.pool.aclose()

    # -- queries --------------------------------------------------------------------------
    async def query(self, q: Query) -> AsyncIterator[Entry]:
        order = q.key_ordered()
        reverse = order == "-key"
        page = self.limits.max_page_entries
        if order is not None and q.limit:
            page = min(page, q.offset + q.limit)  # no node can contribute more than this
        req = dict(
            prefix=q.clean_prefix,
            reverse=reverse,
            limit=page,
            keys_only=not q.needs_values(),
            filters=[filter_to_wire(f) for f in q.filters],
        )
        start = seek_after(q, reverse) if order is not None else None
        cursors = [_NodeCursor(self, i, req, start) for i in self._serving_indexes()]
        async with contextlib.aclosing(_merge(cursors, reverse)) as merged:
            async for e in anaive_query_apply(q, merged, presorted=order is not None):
                yield e

    # -- status ---------------------------------------------------------------------------
    async def status(self) -> list[dict[str, Any]]:
        """One row per member: address, slots, reachable or not, and its stats."""
        cmap = self.state.map
        rows: list[dict[str, Any]] = [
            {"index": m.index, "peer_id": m.peer_id, "addrs": list(m.addrs), "state": m.state,
             "slots": cmap.describe_ranges(m.index)} for m in cmap.members
        ]

        async def probe(row: dict[str, Any]) -> None:
            if row["state"] != JOINED:
                row["reachable"] = False
                row["error"] = "not joined yet"
                return

            try:
                ans = await self._ask(row["index"], wire.Stats())
                row["reachable"] = True
                row.update(ans.stats)  # type: ignore[attr-defined]
            except DSClusterError as e:
                row["reachable"] = False
                row["error"] = str(e)

        async with open_nursery() as n:
            for row in rows:
                n.start_soon(probe, row)
        return rows


class _LocalChannel:
    """A channel to the node this client lives in: the request goes straight to its
    server's handler; errors come back as the same exceptions as over the wire."""

    __slots__ = ("_answer",)

    def __init__(self, answer: LocalHandler) -> None:
        self._answer = answer

    async def request(self, msg: wire.Message) -> wire.Message:
        ans = await self._answer(msg)
        if isinstance(ans, wire.Error):
            raise error_from_wire(ans.code, ans.message, ans.detail)
        return ans


class _NodeCursor:
    """One node's ordered result stream, fetched a page at a time."""

    def __init__(self, ds: ClusterDatastore, index: int, req: dict[str, Any],
                 start_after: str | None) -> None:
        self.ds = ds
        self.index = index
        self.req = req
        self.after = start_after
        self.buf: deque[Entry] = deque()
        self.done = False

    async def fill(self) -> None:
        while not self.buf and not self.done:
            ans = await self.ds._ask(self.index, wire.Query(start_after=self.after, **self.req))
            assert isinstance(ans, wire.QueryPage)
            self.buf.extend(Entry(Key.from_clean(k), v, s) for k, v, s in ans.entries)
            self.after = ans.cursor
            self.done = ans.cursor is None


async def _merge(cursors: list[_NodeCursor], reverse: bool) -> AsyncIterator[Entry]:
    """Heap-merge the nodes' sorted streams into one sorted stream."""
    async with open_nursery() as n:
        for c in cursors:
            n.start_soon(c.fill)  # first pages in parallel
    heap: list[tuple[Any, int]] = []

    def push(i: int) -> None:
        c = cursors[i]
        if c.buf:
            k = c.buf[0].key
            heapq.heappush(heap, (_Desc(k) if reverse else k, i))

    for i in range(len(cursors)):
        push(i)
    while heap:
        _, i = heapq.heappop(heap)
        c = cursors[i]
        yield c.buf.popleft()
        if not c.buf:
            await c.fill()
        push(i)


class _Desc:
    """Inverts string order for the heap of a descending merge."""

    __slots__ = ("s",)

    def __init__(self, s: str) -> None:
        self.s = s

    def __lt__(self, other: _Desc) -> bool:
        return self.s > other.s

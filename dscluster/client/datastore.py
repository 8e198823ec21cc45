"""ClusterDatastore: go-datastore semantics across the whole cluster.

Theory of operation:

- Which members a request goes to, redirects, map refreshes and unreachable nodes are
  the member caller's business (cluster/caller.py); this class only says what to ask
  about which slot, and keeps go-datastore's semantics on top.
- A query is pushed to every serving node (prefix, key order, keys-only, filters, a
  seek position, and a page size that is enough for offset+limit); each node streams
  its own keys in order, page by page; the client heap-merges the sorted streams and
  applies offset and limit once, to the whole cluster.
"""

from __future__ import annotations

import contextlib
import heapq
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .. import wire
from ..cluster.caller import MAX_REDIRECTS, MemberCaller
from ..cluster.state import ClusterState
from ..clustermap import JOINED
from ..concurrency import open_nursery
from ..datastore import Batch, BatchOp
from ..errors import DSClusterError, Redirect, TooLarge
from ..keys import Key, slot_of
from ..limits import Limits
from ..net.pool import ChannelPool
from ..query import Entry, Query, anaive_query_apply, filter_to_wire, seek_after


class ClusterDatastore:
    def __init__(self, caller: MemberCaller, *, limits: Limits) -> None:
        self.caller = caller
        self.limits = limits

    @property
    def state(self) -> ClusterState:
        return self.caller.state

    @property
    def pool(self) -> ChannelPool:
        return self.caller.pool

    @property
    def max_value_size(self) -> int:
        return self.limits.max_value_bytes

    async def refresh_map(self) -> bool:
        return await self.caller.refresh_map()

    # -- go-datastore operations ----------------------------------------------------------
    async def get(self, key: str) -> bytes:
        k = Key(key)
        ans = await self.caller.read(slot_of(k), wire.Get(key=k))
        return ans.value  # type: ignore[attr-defined,no-any-return]

    async def has(self, key: str) -> bool:
        k = Key(key)
        ans = await self.caller.read(slot_of(k), wire.Has(key=k))
        return ans.value  # type: ignore[attr-defined,no-any-return]

    async def get_size(self, key: str) -> int:
        k = Key(key)
        ans = await self.caller.read(slot_of(k), wire.GetSize(key=k))
        return ans.value  # type: ignore[attr-defined,no-any-return]

    async def put(self, key: str, value: bytes) -> None:
        k = Key(key)
        await self.caller.write(slot_of(k), wire.Put(key=k, value=self._value(value)))

    async def delete(self, key: str) -> None:
        k = Key(key)
        await self.caller.write(slot_of(k), wire.Delete(key=k))

    def batch(self) -> Batch:
        return Batch(self.apply)

    def _value(self, value: bytes) -> bytes:
        # refused here, not by the node: a node closes a stream whose frame holds a value
        # over its decoding limit, which would cost the pooled stream and a retry
        if len(value) > self.limits.max_value_bytes:
            raise TooLarge(f"value of {len(value)} bytes exceeds the "
                           f"{self.limits.max_value_bytes}-byte limit")
        return bytes(value)

    async def apply(self, ops: Sequence[BatchOp], *, _depth: int = 0) -> None:
        """Send each node its share of the batch, in bounded requests, concurrently.

        Each request is checked and applied atomically by its node. A batch that takes
        more than one request is first checked by every node involved (CheckBatch) and
        applied only if all of them accept it, so a refused operation (a delete on a
        disable_delete node, a value too large) changes nothing anywhere. It is still
        not atomic across nodes: a node that fails, or a key written by someone else,
        between check and apply leaves the batch partly applied. If the map moved under
        a request, that request's operations are routed again with the new map; puts
        and deletes are idempotent, so re-sending them is safe."""
        per_member: dict[int, list[list[Any]]] = {}
        for op in ops:
            value = None if op.value is None else self._value(op.value)
            per_member.setdefault(self.caller.write_member(slot_of(op.key)), []).append(
                [str(op.key), value])
        requests = [(i, chunk) for i, member_ops in per_member.items()
                    for chunk in self._chunks(member_ops)]
        if len(requests) > 1:
            try:
                await self._check_batch(requests)
            except Redirect:
                if _depth >= MAX_REDIRECTS:
                    raise
                await self.refresh_map()
                await self.apply(ops, _depth=_depth + 1)
                return

        async def send(i: int, chunk: list[list[Any]]) -> None:
            try:
                await self.caller.ask(i, wire.Batch(ops=chunk), follow_redirects=False)
            except Redirect:
                if _depth >= MAX_REDIRECTS:
                    raise
                await self.refresh_map()
                await self.apply([BatchOp(k, v) for k, v in chunk], _depth=_depth + 1)

        async with open_nursery() as n:
            for i, chunk in requests:
                n.start_soon(send, i, chunk)

    async def _check_batch(self, requests: list[tuple[int, list[list[Any]]]]) -> None:
        """Every request checked by its member, concurrently; the first refusal raises."""
        async def check(i: int, chunk: list[list[Any]]) -> None:
            await self.caller.ask(i, wire.CheckBatch(ops=chunk), follow_redirects=False)

        async with open_nursery() as n:
            for i, chunk in requests:
                n.start_soon(check, i, chunk)

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

    async def sync(self, prefix: str = "/") -> None:
        await self.caller.each_serving_member(wire.Sync(prefix=Key(prefix)))

    async def disk_usage(self) -> int:
        answers = await self.caller.each_serving_member(wire.DiskUsage())
        return sum(a.value for a in answers)  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.caller.aclose()

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
        cursors = [_NodeCursor(self.caller, i, req, start)
                   for i in self.state.map.serving_members()]
        async with contextlib.aclosing(_merge(cursors, reverse)) as merged:
            async for e in anaive_query_apply(q, merged, presorted=order is not None):
                yield e

    # -- status ---------------------------------------------------------------------------
    async def status(self) -> list[dict[str, Any]]:
        """One row per member: address, slots, reachable or not, its stats, and which
        reachable members see it down (``seen_down_by``)."""
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
                ans = await self.caller.ask(row["index"], wire.Stats())
                row["reachable"] = True
                row.update(ans.stats)  # type: ignore[attr-defined]
            except DSClusterError as e:
                row["reachable"] = False
                row["error"] = str(e)

        async with open_nursery() as n:
            for row in rows:
                n.start_soon(probe, row)
        for row in rows:
            row["seen_down_by"] = [r["index"] for r in rows if r.get("reachable")
                                   and row["index"] in r.get("members", {}).get("down", ())]
        return rows


class _NodeCursor:
    """One node's ordered result stream, fetched a page at a time."""

    def __init__(self, caller: MemberCaller, index: int, req: dict[str, Any],
                 start_after: str | None) -> None:
        self.caller = caller
        self.index = index
        self.req = req
        self.after = start_after
        self.buf: deque[Entry] = deque()
        self.done = False

    async def fill(self) -> None:
        while not self.buf and not self.done:
            ans = await self.caller.ask(self.index,
                                       wire.Query(start_after=self.after, **self.req))
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

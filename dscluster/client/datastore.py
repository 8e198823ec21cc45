"""ClusterDatastore: go-datastore semantics across the whole cluster.

Theory of operation:

- Which members a request goes to, quorums, versions, redirects, map refreshes and
  unreachable nodes are the cluster layer's business (cluster/quorum.py and
  cluster/caller.py); this class says what to read or write and keeps go-datastore's
  semantics on top.
- A query is as strong as a read: each slot is listed by ``read_quorum(R)`` of its
  live owners (fewer while fewer answer, at least one), and each member is pushed its
  slots (prefix, key order, keys-only, filters, a seek position, and a page size that
  is enough for offset+limit); each streams those keys in order, page by page; the
  client heap-merges the sorted streams. Where the owners listing a key agree (all
  report it, with the same value and size) that is the answer; where they do not (one
  missed a write or a delete while it was down, and its hint or repair has not reached
  it yet), the key is read with a quorum read, which resolves by version and repairs
  the stale owner. Disagreements are rare, so a listing costs about one round trip per
  page per owner asked. Offset and limit are applied once, to the whole cluster. A
  member that fails mid-listing is replaced by another owner of its slots, from the key
  where it stopped.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .. import wire
from ..blocks import block_multihash
from ..cluster.caller import MemberCaller
from ..cluster.placement import read_quorum
from ..cluster.quorum import LIVE, Found, ReplicaSet
from ..cluster.state import ClusterState
from ..clustermap import JOINED, RETIRED
from ..concurrency import open_nursery
from ..datastore import Batch, BatchOp
from ..errors import (
    CatchingUp,
    ClusterError,
    DSClusterError,
    NotFound,
    Redirect,
    TooLarge,
    Unavailable,
)
from ..keys import SLOT_COUNT, Key, slot_of, slot_ranges
from ..limits import Limits
from ..net.pool import ChannelPool
from ..query import Entry, Query, anaive_query_apply, filter_to_wire, seek_after

# a listing follows slots that move while it runs; a rebalance finishes a batch of slots
# per map epoch, so a long listing may meet a few dozen
MAX_LISTING_REDIRECTS = 64

class ClusterDatastore:
    def __init__(self, caller: MemberCaller, *, limits: Limits,
                 writer: str | None = None) -> None:
        self.caller = caller
        self.limits = limits
        self.replicas = ReplicaSet(caller, limits, writer=writer)

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
    async def _live(self, key: str, *, value: bool) -> Found:
        found = await self.replicas.read(Key(key), value=value)
        if found.state != LIVE:
            raise NotFound(f"key not found: {key}")
        return found

    async def get(self, key: str) -> bytes:
        found = await self._live(key, value=True)
        assert found.value is not None
        return found.value

    async def has(self, key: str) -> bool:
        try:
            await self._live(key, value=False)
        except NotFound:
            return False
        return True

    async def get_size(self, key: str) -> int:
        return (await self._live(key, value=False)).size

    async def put(self, key: str, value: bytes) -> None:
        await self.replicas.write([(Key(key), self._value(value))])

    async def delete(self, key: str) -> None:
        await self.replicas.write([(Key(key), None)])

    def batch(self) -> Batch:
        return Batch(self.apply)

    def _value(self, value: bytes) -> bytes:
        # refused here, not by the node: a node closes a stream whose frame holds a value
        # over its decoding limit, which would cost the pooled stream and a retry
        if len(value) > self.limits.max_value_bytes:
            raise TooLarge(f"value of {len(value)} bytes exceeds the "
                           f"{self.limits.max_value_bytes}-byte limit")
        return bytes(value)

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        """Write a batch: each owner gets its share in bounded requests, concurrently,
        and applies each request atomically (quorum.py says when the batch is done).

        A batch that takes more than one request is first checked by every node involved
        (CheckBatch) and written only if all of them accept it, so a refused operation
        (a delete on a disable_delete node, a value too large) changes nothing anywhere.
        It is still not atomic across nodes: a node that fails, or a key written by
        someone else, between check and write leaves the batch partly applied.

        A batch that only puts IPFS blocks (what an add writes) skips the check: a block
        stands alone, so part of such a batch applied is no harm, and no node refuses a
        block's own bytes (a write-once node takes the same bytes again)."""
        latest: dict[str, bytes | None] = {}
        for op in ops:
            k = Key(op.key)
            latest.pop(k, None)  # the last operation on a key wins
            latest[k] = None if op.value is None else self._value(op.value)
        per_member: dict[int, list[str]] = {}
        cmap = self.state.map
        for k in latest:
            for i in cmap.write_set(slot_of(k)):
                per_member.setdefault(i, []).append(k)
        requests = [(i, chunk) for i, keys in per_member.items()
                    for chunk in self.replicas.chunks(keys, latest)]
        if len(requests) > 1 and not all(v is not None and block_multihash(k) is not None
                                         for k, v in latest.items()):
            await self._check_batch(requests, latest)
        await self.replicas.write(list(latest.items()))

    async def _check_batch(self, requests: list[tuple[int, list[str]]],
                           values: dict[str, bytes | None]) -> None:
        """Every request checked by its member, concurrently; the first refusal raises.
        A member that is down checks nothing: the write decides whether enough owners
        are left."""
        async def check(i: int, chunk: list[str]) -> None:
            with contextlib.suppress(Unavailable):
                await self.caller.ask(i, wire.CheckBatch(ops=[[k, values[k]] for k in chunk]))

        async with open_nursery() as n:
            for i, chunk in requests:
                n.start_soon(check, i, chunk)

    async def sync(self, prefix: str = "/") -> None:
        # acknowledged writes are durable on their quorum already; a member that is down
        # has nothing of ours to flush
        await self.caller.each_serving_member(wire.Sync(prefix=Key(prefix)), skip_down=True)

    async def disk_usage(self) -> int:
        """Bytes stored on the members that answer (every replica counted)."""
        answers = await self.caller.each_serving_member(wire.DiskUsage(), skip_down=True)
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
        plan = _SlotCursors(self.caller, req)
        agreed = self._agreed(plan, _merge(plan, start, reverse), not req["keys_only"])
        async with contextlib.aclosing(agreed):
            async for e in anaive_query_apply(q, agreed, presorted=order is not None):
                yield e

    async def _agreed(self, plan: _SlotCursors, merged: AsyncIterator[tuple[Entry, int]],
                      values: bool) -> AsyncIterator[Entry]:
        """One entry per key: what the owners listing it agree on, else a quorum read's
        answer (nothing, for a key that is deleted)."""
        async with contextlib.aclosing(merged):
            group: list[tuple[Entry, int]] = []
            async for e, member in merged:
                if group and e.key != group[0][0].key:
                    if (out := await self._resolve(plan, group, values)) is not None:
                        yield out
                    group = []
                group.append((e, member))
            if group and (out := await self._resolve(plan, group, values)) is not None:
                yield out

    async def _resolve(self, plan: _SlotCursors, group: list[tuple[Entry, int]],
                       values: bool) -> Entry | None:
        first = group[0][0]
        reported = {member for _, member in group}
        if (len(reported) >= len(plan.covering(slot_of(first.key)))
                and all((e.value, e.size) == (first.value, first.size) for e, _ in group)):
            return first
        found = await self.replicas.read(first.key, value=values)
        if found.state != LIVE:
            return None
        return Entry(first.key, found.value if values else None,
                     found.size if first.size >= 0 else first.size)

    # -- status ---------------------------------------------------------------------------
    async def status(self) -> list[dict[str, Any]]:
        """One row per member: address, slots, reachable or not, its stats, and which
        reachable members see it down (``seen_down_by``)."""
        cmap = self.state.map
        rows: list[dict[str, Any]] = [
            {"index": m.index, "peer_id": m.peer_id, "addrs": list(m.addrs), "state": m.state,
             "weight": m.weight, "slots": cmap.describe_ranges(m.index),
             # replicas held, primary or not (a moving slot's target is not counted yet)
             "slots_held": cmap.held(m.index)} for m in cmap.members
        ]

        async def probe(row: dict[str, Any]) -> None:
            if row["state"] != JOINED:
                row["reachable"] = False
                row["error"] = ("removed from the cluster" if row["state"] == RETIRED
                                else "not joined yet")
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


class _SlotCursors:
    """Which members list which slots: ``read_quorum(R)`` live owners per slot (their
    answers are compared key by key: ClusterDatastore._agreed); a member that fails
    mid-listing hands its slots, from where it stopped, to another owner. A member still
    catching up after a restart (it may lack writes made while it was down) hands them
    on too, and lists them itself only if every owner of the slot is catching up."""

    def __init__(self, caller: MemberCaller, req: dict[str, Any]) -> None:
        self.caller = caller
        self.req = req
        self.failed: dict[int, str] = {}
        self.behind: set[int] = set()
        self.redirects = 0
        # slot -> the members listing it now, for the slots whose listers changed; the
        # others are listed by the first assignment's picks for their owner list
        self.coverage: dict[int, set[int]] = {}
        self._first: tuple[Any, dict[tuple[int, ...], tuple[int, ...]]] | None = None

    def covering(self, slot: int) -> set[int]:
        """The members listing ``slot`` now."""
        got = self.coverage.get(slot)
        if got is not None:
            return got
        if self._first is None:
            return set()
        cmap, picks = self._first
        return set(picks.get(cmap.read_set(slot), ()))

    def assign(self, slots: Sequence[int], leaving: int | None
               ) -> dict[tuple[int, bool], list[int]]:
        """(member, whether it may list slots it is catching up on) -> its slots, for
        ``slots`` that ``leaving`` (if any) stops listing."""
        cmap = self.caller.state.map
        need = read_quorum(cmap.replication)
        # asked once per member, not once per owner of each of 16384 slots
        down = {m.index for m in cmap.members if self.caller.liveness.refusal(m.index)}
        out: dict[tuple[int, bool], list[int]] = {}
        if self._first is None:
            # the first assignment is of every slot, and a map has a few owner lists:
            # pick once per list (a listing every few seconds, as the credentials'
            # reload makes, would otherwise cost a loop over 16384 slots each time)
            picks: dict[tuple[int, ...], tuple[int, ...]] = {}
            for owners, group in cmap.read_groups(slots).items():
                live = [o for o in owners if o not in self.failed]
                up = [o for o in live if o not in down]
                picked = tuple(up[:need] or live[:1])
                if not picked:
                    for s in group:
                        self._assign_one(cmap, s, set(), need, down, out)
                    continue
                picks[owners] = picked
                for o in picked:
                    out.setdefault((o, False), []).extend(group)
            self._first = (cmap, picks)
            return out
        for s in slots:
            covering = self.coverage.setdefault(s, self.covering(s))
            covering.discard(leaving)  # type: ignore[arg-type]
            self._assign_one(cmap, s, covering, need, down, out)
        return out

    def _assign_one(self, cmap: Any, s: int, covering: set[int], need: int, down: set[int],
                    out: dict[tuple[int, bool], list[int]]) -> None:
        self.coverage[s] = covering
        owners = [o for o in cmap.read_set(s) if o not in self.failed and o not in covering]
        up = [o for o in owners if o not in down]
        # a believed-down owner is dialed only when no other lists the slot
        picked = up[:need - len(covering)] or (owners[:1] if not covering else [])
        if not picked and not covering:
            behind = [o for o in cmap.read_set(s) if o in self.behind]
            if not behind:
                raise Unavailable(f"listing slot {s}: every owner failed: "
                                  + "; ".join(self.failed.values()))
            out.setdefault((behind[0], True), []).append(s)
            covering.add(behind[0])
            return
        for o in picked:
            out.setdefault((o, False), []).append(s)
            covering.add(o)

    def cursors(self, slots: Sequence[int], after: str | None,
                leaving: int | None = None) -> list[_NodeCursor]:
        return [_NodeCursor(self, i, member_slots, after, catching_up_ok)
                for (i, catching_up_ok), member_slots
                in sorted(self.assign(slots, leaving).items())]


class _NodeCursor:
    """One member's ordered result stream over its assigned slots, a page at a time."""

    def __init__(self, owner: _SlotCursors, index: int, slots: list[int],
                 start_after: str | None, catching_up_ok: bool) -> None:
        self.owner = owner
        self.index = index
        self.slots = slots
        self.ranges = slot_ranges(slots)
        self.catching_up_ok = catching_up_ok
        self.after = start_after
        self.buf: deque[Entry] = deque()
        self.done = False

    async def fill(self) -> list[_NodeCursor]:
        """Fetch pages until one has entries or the stream ends; if the member fails,
        the cursors that replace this one (started where it stopped), else []."""
        while not self.buf and not self.done:
            msg = wire.SlotQuery(start_after=self.after, slots=self.ranges,
                                 catching_up_ok=self.catching_up_ok, **self.owner.req)
            caller = self.owner.caller
            try:
                ans = await caller.try_member(self.index, msg)
            except Redirect as r:
                return await self._redirected(r)
            except Unavailable as e:
                self.owner.failed[self.index] = str(e)
                if isinstance(e, CatchingUp):
                    self.owner.behind.add(self.index)
                else:  # down, even for the slots every owner is catching up on
                    self.owner.behind.discard(self.index)
                return self.owner.cursors(self.slots, self.after, self.index)
            assert isinstance(ans, wire.QueryPage)
            self.buf.extend(Entry(Key.from_clean(k), v, s) for k, v, s in ans.entries)
            self.after = ans.cursor
            self.done = ans.cursor is None
        return []

    async def _redirected(self, r: Redirect) -> list[_NodeCursor]:
        """The member no longer serves some of our slots (they moved in a rebalance, and
        our assignment may predate that) or does not yet (its map is behind ours): the
        slots go, from where this cursor stopped, to whoever the newest map says."""
        caller = self.owner.caller
        self.owner.redirects += 1
        if self.owner.redirects > MAX_LISTING_REDIRECTS:
            raise ClusterError(f"listing redirected {self.owner.redirects} times; last: {r}")
        if r.epoch >= caller.state.epoch:
            await caller.refresh_map()
        cmap = caller.state.map
        if cmap.owns(self.index, r.slot):
            if r.epoch >= cmap.epoch:
                raise ClusterError(f"{r} although map epoch {cmap.epoch} assigns it there")
            # behind us: it learns the map within a ping; the others list meanwhile
            self.owner.failed[self.index] = (f"member {self.index} is at map epoch "
                                             f"{r.epoch}, behind ours ({cmap.epoch})")
        return self.owner.cursors(self.slots, self.after, self.index)


async def _merge(plan: _SlotCursors, start: str | None,
                 reverse: bool) -> AsyncIterator[tuple[Entry, int]]:
    """Heap-merge the members' sorted streams into one sorted stream, each entry with
    the member that listed it."""
    heap: list[tuple[Any, int, _NodeCursor]] = []
    pushed = itertools.count()  # ties between equal keys: cursors do not compare

    def push(c: _NodeCursor) -> None:
        k = c.buf[0].key
        heapq.heappush(heap, (_Desc(k) if reverse else k, next(pushed), c))

    async def one(c: _NodeCursor, replacements: list[_NodeCursor]) -> None:
        replacements.extend(await c.fill())

    async def fill(cursors: list[_NodeCursor]) -> None:
        while cursors:
            replacements: list[_NodeCursor] = []
            async with open_nursery() as n:
                for c in cursors:
                    n.start_soon(one, c, replacements)  # pages in parallel
            for c in cursors:
                if c.buf:
                    push(c)
            cursors = replacements

    await fill(plan.cursors(range(SLOT_COUNT), start))
    while heap:
        _, _, c = heapq.heappop(heap)
        yield c.buf.popleft(), c.index
        if c.buf:
            push(c)
        else:
            await fill([c])


class _Desc:
    """Inverts string order for the heap of a descending merge."""

    __slots__ = ("s",)

    def __init__(self, s: str) -> None:
        self.s = s

    def __lt__(self, other: _Desc) -> bool:
        return self.s > other.s

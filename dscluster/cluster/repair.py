"""Anti-entropy: each node pulls what its co-owners hold newer, and delivers its hints.

Theory of operation (Dynamo's anti-entropy, with per-slot digests instead of Merkle
trees: a slot is small enough that its digest is the leaf):

- Pull only. For each live member P that shares slots with this node, ask P for the
  digests of the shared slots (``SlotDigests``, 16 bytes a slot, in bounded chunks) and
  compare them with our own. For a slot that differs, page through P's versions of it
  (``SlotVersions``) and compare each with the record we hold; every key P holds newer
  is read from P (``ReadRecord``, only for values: a tombstone is all in the page) and
  written here with ``replica.write``, which keeps the newest version. What we hold
  newer, P pulls in its own pass: every node does the same, so all owners converge.
- When. A full pass over every slot this node owns every ``interval`` seconds (counted
  from the end of the previous one, so a long pass is not followed by another at once);
  a pass over the shared slots with a member as soon as it is seen up after being down
  or unknown (so a node that restarts, or whose peer restarts, catches up within about
  a second); once, over the slots still behind, ``retry_after + SETTLE_MARGIN`` seconds
  after the node started (the pass that ends its catching up); and on ``Repair``
  (``dsclient repair``), over the slots asked.
- Hints this node keeps for members that were down are sent to them as repairs
  (``WriteRecords(repair=True)``) once they answer, and dropped once applied.
- Throttled, so that repair never crowds out client traffic: at most ``max_fetches``
  value reads in flight (from all peers and passes together) and a token bucket of
  ``bytes_per_second`` over the values fetched and hints sent. A peer that fails is left
  out of the rest of the pass (and logged, rate-limited); the pass goes on with the others.
  A ``Repair`` that fills a slot being moved to this node (cluster/rebalance.py) comes
  with a rate of its own: it gets its own bucket and fetch limits for that pass, since a
  move is an operator's decision to spend the bandwidth (``--rate``), not background work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from .. import wire
from ..blocks import block_matches
from ..clustermap import JOINED, ClusterMap
from ..concurrency import open_nursery
from ..errors import DSClusterError, Forbidden, Redirect, RemoteProtocolError
from ..keys import SLOT_COUNT, slot_of, slot_ranges
from ..limits import Limits
from ..logs import RateLimitedLog
from .caller import MemberCaller
from .liveness import UP
from .replica import DIGEST_BYTES, LIVE, MISSING, TOMBSTONE, ReplicaStore, VersionedOp
from .versions import Version

log = logging.getLogger(__name__)
_limited = RateLimitedLog(log)
T = TypeVar("T")

MiB = 1 << 20
# A full pass of a node that holds a few TB would otherwise read at disk speed from its
# peers for hours and starve their clients: four reads in flight keep a peer's disk and
# our link busy without queueing client requests behind ours, and 32 MiB/s (about a
# quarter of a 1 Gbit/s link) refills a 1 TB replica in about 9 hours.
MAX_FETCHES = 4
BYTES_PER_SECOND = 32 * MiB
# A move's pass: more reads in flight, since the operator asked for the move now and
# sets its pace with --rate (a move without one asks for UNTHROTTLED, which no link
# reaches); and more slots at
# once, since a slot of a spread-out key space holds a key or two, and each costs a
# version listing's round trip before its values are read
MOVE_FETCHES = 16
MOVE_SLOTS_AT_ONCE = 64
UNTHROTTLED = 1 << 40
# slots per SlotDigests request: 64 KiB of answer
DIGEST_CHUNK = 4096
# how often the loop looks for members that came back and for hints to deliver
TICK = 1.0
# after a failed hint delivery the target is left alone this long
HINT_RETRY = 10.0
# A restarted node counts as caught up only after a pass that began this long after it
# started: until then clients that found it down still skip it (liveness.RETRY_AFTER) and
# their writes reach only its co-owners, so an earlier pass would miss them. The margin
# covers writes that decided to skip it just before and land a little later. A node's
# first start needs no such wait: all of a new cluster's nodes would otherwise refuse
# listings together (a replacement's empty disk is refilled by its first pass).
SETTLE_MARGIN = 5.0


class TokenBucket:
    """At most ``rate`` units a second on average, in bursts of at most ``burst``.

    ``take`` is charged after the fact (a value's size is known once it is read), so the
    level may go below zero; the taker then sleeps until it is back at zero, holding the
    lock so that everyone behind it waits too."""

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._level = burst
        self._at: float | None = None  # the clock exists only inside trio.run
        self._lock = trio.Lock()

    async def take(self, n: int) -> None:
        async with self._lock:
            now = self._clock()
            if self._at is not None:
                self._level = min(self.burst, self._level + (now - self._at) * self.rate)
            self._at = now
            self._level -= n
            if self._level < 0:
                await trio.sleep(-self._level / self.rate)


@dataclass(frozen=True)
class _Throttle:
    """What paces a pass: value reads in flight, slots pulled at once, bytes a second."""

    fetches: trio.CapacityLimiter
    slots_at_once: trio.CapacityLimiter
    bucket: TokenBucket

    @classmethod
    def of(cls, max_fetches: int, bytes_per_second: float,
           slots_at_once: int | None = None) -> _Throttle:
        return cls(trio.CapacityLimiter(max_fetches),
                   trio.CapacityLimiter(slots_at_once or max_fetches),
                   TokenBucket(bytes_per_second, burst=bytes_per_second))


@dataclass(eq=False)  # kept in a set of the passes running: by identity
class _Pass:
    slots_total: int
    throttle: _Throttle
    slots_done: int = 0
    differing: set[int] = field(default_factory=set)
    pulled: int = 0
    bytes: int = 0
    unreachable: dict[int, str] = field(default_factory=dict)  # peer -> why
    compared: set[int] = field(default_factory=set)  # peers the pass got through with
    # values fetched and not written yet, from all the slots pulled at once: one write
    # (one records sync) for many keys instead of one per slot of a key or two
    pending: dict[str, VersionedOp] = field(default_factory=dict)
    pending_bytes: int = 0

    def report(self) -> dict[str, Any]:
        return {"slots": self.slots_total, "differing": len(self.differing),
                "differing_slots": slot_ranges(sorted(self.differing)),
                "pulled": self.pulled, "bytes": self.bytes,
                "peers_unreachable": sorted(self.unreachable),
                "why_unreachable": {str(i): why for i, why in sorted(self.unreachable.items())}}


def _wire_op(op: VersionedOp) -> list[Any]:
    return [op.key, op.value, op.version.hlc, op.version.writer]


class AntiEntropy:
    def __init__(self, replica: ReplicaStore, caller: MemberCaller, index: int, *,
                 limits: Limits | None = None, max_fetches: int = MAX_FETCHES,
                 bytes_per_second: float = BYTES_PER_SECOND,
                 digest_chunk: int = DIGEST_CHUNK, restarted: bool = False) -> None:
        """``restarted``: the node ran before (its data predates this process), so
        clients that found it down may still skip it for a while (SETTLE_MARGIN)."""
        self.replica = replica
        self.caller = caller
        self.index = index
        self.limits = limits or Limits()
        self.digest_chunk = digest_chunk
        self.restarted = restarted
        # shared by the background passes, the repairs asked without a rate and hints
        self._throttle = _Throttle.of(max_fetches, bytes_per_second)
        self._passes: set[_Pass] = set()
        self._rotation = 0  # which peer a pass asks first (_pass)
        self._last: _Pass | None = None
        self._last_full: float | None = None
        self._pulled = 0
        self._bytes = 0
        self._hint_retry: dict[int, float] = {}
        self._co_owners_of: tuple[ClusterMap | None, set[int]] = (None, set())
        # the slots not compared with any co-owner since this node started; None until
        # first asked (the map may still change while the node starts)
        self._behind: set[int] | None = None
        # passes that begin before this (trio) time do not clear _behind; set by run()
        self._settled_at: float | None = None

    # -- the loop ---------------------------------------------------------------------------
    async def run(self, interval: float = 30.0) -> None:
        """Full passes every ``interval`` seconds, a pass with each member seen coming
        back, and hint delivery, until cancelled."""
        if self.restarted:
            self._settled_at = (trio.current_time() + self.caller.liveness.retry_after
                                + SETTLE_MARGIN)
        async with trio.open_nursery() as n:
            n.start_soon(self._hint_loop)
            await self._pass_loop(interval)

    async def _pass_loop(self, interval: float) -> None:
        up: set[int] = set()
        next_full = trio.current_time() + interval
        settle_pass = self._settled_at is not None
        while True:
            now_up = {p for p in self._co_owners() if self.caller.liveness.state(p) == UP}
            back, up = now_up - up, now_up
            if back:
                p = await _logged("pass", self._pass(self._shared_with(back), back,
                                                     background=True))
                up.difference_update(p.unreachable if p else back)
            if settle_pass and self._settled():
                # the pass that ends catching up, rather than waiting for the first full one
                settle_pass = False
                self.catching_up(())
                p = await _logged("pass", self._pass(sorted(self._behind or ()), None,
                                                     background=True))
                if p is not None:
                    up.difference_update(p.unreachable)
            if trio.current_time() >= next_full:
                p = await _logged("pass", self._pass(list(range(SLOT_COUNT)), None,
                                                     background=True))
                if p is not None:
                    self._last_full = time.time()
                    # to get a pass of their own once they answer
                    up.difference_update(p.unreachable)
                next_full = trio.current_time() + interval
            await trio.sleep(TICK)

    async def _hint_loop(self) -> None:
        while True:
            await _logged("hint delivery", self.deliver_hints())
            await trio.sleep(TICK)

    # -- passes -----------------------------------------------------------------------------
    async def repair(self, slots: list[int], bytes_per_second: int = 0) -> dict[str, Any]:
        """One pass now over ``slots`` (those this node owns) against every co-owner,
        dialed even if believed down: ``{"slots", "differing", "differing_slots"
        ([first, end) ranges), "pulled" (keys written here), "bytes" (of their values),
        "peers_unreachable" (member indexes), "why_unreachable" ({index as a string:
        why})}``. ``bytes_per_second`` > 0 paces this pass alone at that rate (a slot
        move); 0 shares the background throttle."""
        throttle = (self._throttle if bytes_per_second <= 0
                    else _Throttle.of(MOVE_FETCHES, bytes_per_second, MOVE_SLOTS_AT_ONCE))
        return (await self._pass(slots, None, dial_down=True, throttle=throttle)).report()

    def progress(self) -> dict[str, Any]:
        """For Stats: the passes running now (else the last one), keys and bytes pulled
        since the node started, when the last periodic full pass ended (unix time) and
        the hints waiting for their targets."""
        shown = list(self._passes) or ([self._last] if self._last else [])
        return {
            "running": bool(self._passes),
            "slots_done": sum(p.slots_done for p in shown),
            "slots_total": sum(p.slots_total for p in shown),
            "pulled": self._pulled,
            "bytes": self._bytes,
            "last_pass_finished": self._last_full,
            "hints_pending": self.replica.hint_count(),
        }

    def catching_up(self, slots: Sequence[int]) -> int | None:
        """A slot among ``slots`` this node has not compared with any co-owner since it
        started (in a pass that began once clients stopped skipping it, SETTLE_MARGIN),
        or None. Until then it may lack writes made while it was down, so a listing asks
        another owner (node/server.py)."""
        if self._behind is None:
            cmap = self.caller.state.map
            self._behind = {s for s in range(SLOT_COUNT)
                            if cmap.owns(self.index, s) and len(cmap.owners[s]) > 1}
        return next((s for s in slots if s in self._behind), None)

    def _settled(self) -> bool:
        return self._settled_at is None or trio.current_time() >= self._settled_at

    def _caught_up(self, cmap: ClusterMap, slots: Sequence[int], compared: set[int],
                   settled: bool) -> None:
        if self._behind is None:
            self.catching_up(())
        assert self._behind is not None
        if compared and settled:
            self._behind.difference_update(
                s for s in slots if not compared.isdisjoint(cmap.write_set(s)))

    def _co_owners(self) -> set[int]:
        # looked at every tick; a map changes only with membership, so once per map
        cmap = self.caller.state.map
        if self._co_owners_of[0] is not cmap:
            self._co_owners_of = (cmap, set(self._peers(range(SLOT_COUNT))))
        return self._co_owners_of[1]

    def _peers(self, slots: Sequence[int]) -> dict[int, list[int]]:
        """The other owners of the slots this node owns among ``slots``, each with the
        slots it shares with us. A moving slot's old owners and targets all count: that
        is how a target is filled (cluster/rebalance.py)."""
        cmap = self.caller.state.map
        shared: dict[int, list[int]] = {}
        for s in slots:
            owners = cmap.write_set(s)
            if self.index in owners:
                for p in owners:
                    if p != self.index:
                        shared.setdefault(p, []).append(s)
        return shared

    def _shared_with(self, peers: set[int]) -> list[int]:
        cmap = self.caller.state.map
        return [s for s in range(SLOT_COUNT) if cmap.owns(self.index, s)
                and any(cmap.owns(p, s) for p in peers)]

    async def _pass(self, slots: list[int], only: set[int] | None, *,
                    dial_down: bool = False, throttle: _Throttle | None = None,
                    background: bool = False) -> _Pass:
        """``dial_down``: peers this node believes down are tried too (a repair asked
        for now, maybe right after a peer restarted, must not skip it on a stale mark).
        ``background``: a pass of the node's own, which leaves the slots it is receiving
        to the move's passes (cluster/rebalance.py) rather than copy them twice at once."""
        cmap = self.caller.state.map
        mine = sorted({s for s in slots if cmap.owns(self.index, s)
                       and not (background and cmap.incoming(self.index, s))})
        settled = self._settled()
        p = _Pass(len(mine), throttle or self._throttle)
        self._passes.add(p)
        try:
            for i in range(0, len(mine), self.digest_chunk):
                chunk = mine[i:i + self.digest_chunk]
                # one peer after the other: what the first one supplied is in our digests
                # when we compare with the next, so no value is copied twice. Passes that
                # run at once (a move's batches) start at different peers, so that they
                # read from several old owners rather than all from one
                peers = list(self._peers(chunk).items())
                self._rotation += 1
                turn = self._rotation % len(peers) if peers else 0
                for peer, shared in peers[turn:] + peers[:turn]:
                    if (only is None or peer in only) and peer not in p.unreachable:
                        await self._with_peer(peer, shared, p, dial_down)
                        if peer not in p.unreachable:
                            p.compared.add(peer)
                p.slots_done += len(chunk)
        finally:
            self._passes.discard(p)
        self._last = p
        self._caught_up(cmap, mine, p.compared, settled)
        if p.pulled:
            log.info("anti-entropy pulled %d keys (%d bytes) in %d of %d slots",
                     p.pulled, p.bytes, len(p.differing), p.slots_total)
        return p

    async def _with_peer(self, peer: int, slots: list[int], p: _Pass,
                         dial_down: bool) -> None:
        # the map of the moment: a member may have joined or changed since the pass began
        member = self.caller.state.map.members[peer]
        down = ("has not joined yet" if member.state != JOINED
                else None if dial_down else self.caller.liveness.refusal(peer))
        if down is not None:
            p.unreachable[peer] = down
            log.debug("anti-entropy skips node %d: %s", peer, down)
            return
        try:
            # once: its answer marks the peer up for the rest of the pass
            ans = await self.caller.try_member(peer, wire.SlotDigests(slots=slot_ranges(slots)),
                                               dial_down=dial_down)
            if not (isinstance(ans, wire.Digests)
                    and len(ans.digests) == DIGEST_BYTES * len(slots)):
                raise RemoteProtocolError(f"node {peer} answered SlotDigests with "
                                          f"{type(ans).__name__} of the wrong size")
            ours = self.replica.digests(slots)
            differing = [slot for j, slot in enumerate(slots)
                         if ans.digests[j * DIGEST_BYTES:(j + 1) * DIGEST_BYTES]
                         != ours[j * DIGEST_BYTES:(j + 1) * DIGEST_BYTES]]
            p.differing.update(differing)
            try:
                async with open_nursery() as n:
                    for slot in differing:
                        n.start_soon(self._pull_slot, peer, slot, p)
            finally:
                # before the next peer: what this one supplied must be in our digests
                with trio.CancelScope(shield=True):
                    await self._flush(p)
        except DSClusterError as e:
            p.unreachable[peer] = str(e)
            _limited.warning("peer failed", "anti-entropy with node %d failed, going on "
                             "with the other members: %s", peer, e)

    async def _pull_slot(self, peer: int, slot: int, p: _Pass) -> None:
        # Several slots at once, so that fetches stay in flight when each differing slot
        # holds one or two newer keys (the usual case after a short outage).
        async with p.throttle.slots_at_once:
            await self._pull_pages(peer, slot, p)

    async def _pull_pages(self, peer: int, slot: int, p: _Pass) -> None:
        start_after: str | None = None
        while True:
            ans = await self.caller.ask(peer, wire.SlotVersions(
                slot=slot, start_after=start_after, limit=self.limits.max_page_entries))
            if not isinstance(ans, wire.VersionPage):
                raise RemoteProtocolError(f"node {peer} answered SlotVersions with "
                                          f"{type(ans).__name__}")
            tombstones: list[VersionedOp] = []
            values: list[tuple[str, Version]] = []
            for key, theirs, dead in _entries(ans, slot):
                # the effective record: a value the store lost reads as missing, so a
                # wiped or torn replica pulls it again
                held = await self.replica.read(key, value=False)
                if theirs > held.version:
                    if dead:
                        tombstones.append(VersionedOp(key, None, theirs))
                    else:
                        values.append((key, theirs))
            if tombstones:
                self._applied(p, tombstones, await self.replica.write(tombstones))
            if values:
                await self._fetch(peer, values, p)
            if ans.cursor is None:
                return
            start_after = ans.cursor

    async def _flush(self, p: _Pass) -> None:
        ops, p.pending, p.pending_bytes = list(p.pending.values()), {}, 0
        if ops:
            self._applied(p, ops, await self.replica.write(ops))

    async def _fetch(self, peer: int, keys: list[tuple[str, Version]], p: _Pass) -> None:
        """Read ``keys`` from ``peer`` (throttled) and write them here in batches of at
        most ``page_bytes`` of values or ``max_batch_ops`` keys, shared by the slots the
        pass pulls at once."""

        async def one(key: str) -> None:
            # paced inside the limiter: the next read starts only once this one is paid
            async with p.throttle.fetches:
                rec = await self.caller.ask(peer, wire.ReadRecord(key=key, value=True))
                if not isinstance(rec, wire.Record):
                    raise RemoteProtocolError(f"node {peer} answered ReadRecord with "
                                              f"{type(rec).__name__}")
                await p.throttle.bucket.take(len(rec.value or b""))
            op = self._op(peer, key, rec)
            if op is not None:
                held = p.pending.get(key)
                if held is None or op.version > held.version:
                    p.pending[key] = op
                    p.pending_bytes += len(op.value or b"")
                if (p.pending_bytes >= self.limits.page_bytes
                        or len(p.pending) >= self.limits.max_batch_ops):
                    await self._flush(p)

        async with open_nursery() as n:
            for key, _ in keys:
                n.start_soon(one, key)

    def _op(self, peer: int, key: str, rec: wire.Record) -> VersionedOp | None:
        """What to write for ``peer``'s record of ``key``, newer than the page said if it
        changed meanwhile; None for nothing (gone from the peer, or bad block bytes)."""
        version = Version(rec.hlc, rec.writer)
        if rec.state == MISSING:
            return None
        if rec.state == TOMBSTONE:
            return VersionedOp(key, None, version)
        if rec.state != LIVE:
            raise RemoteProtocolError(f"node {peer} sent a record of {key} in state "
                                      f"{rec.state}")
        if rec.value is None:
            raise RemoteProtocolError(f"node {peer} sent the record of {key} without "
                                      "its value")
        if block_matches(key, rec.value) is False:
            # its version is newer, but bytes that are not the block must not replace
            # ours: the peer pulls a good copy in its own pass
            _limited.warning("bad block", "node %d holds bytes at %s that do not match "
                             "its CID; not copied", peer, key)
            return None
        return VersionedOp(key, rec.value, version)

    def _applied(self, p: _Pass, ops: Sequence[VersionedOp],
                 results: Sequence[tuple[bool, Version]]) -> None:
        for op, (applied, _) in zip(ops, results, strict=True):
            if applied:
                n = len(op.value or b"")
                p.pulled += 1
                p.bytes += n
                self._pulled += 1
                self._bytes += n

    # -- hints ------------------------------------------------------------------------------
    async def deliver_hints(self) -> int:
        """Send the hints of every target that answers (not marked down, not failed in
        the last ``HINT_RETRY`` seconds); how many were delivered."""
        delivered = 0
        now = trio.current_time()
        for target in sorted(self.replica.hint_targets()):
            if (self.caller.liveness.refusal(target) is not None
                    or now < self._hint_retry.get(target, now)):
                continue
            try:
                delivered += await self._deliver(target)
            except DSClusterError as e:
                self._hint_retry[target] = trio.current_time() + HINT_RETRY
                _limited.warning("hints failed", "delivering hints to node %d failed, "
                                 "trying again in %gs: %s", target, HINT_RETRY, e)
            else:
                self._hint_retry.pop(target, None)
        return delivered

    async def _deliver(self, target: int) -> int:
        delivered = 0
        while ops := await self.replica.hints(target, self.limits.max_batch_ops):
            for chunk in self._chunks(ops):
                await self._throttle.bucket.take(sum(len(op.value or b"") for op in chunk))
                try:
                    ans = await self.caller.ask(target, wire.WriteRecords(
                        ops=[_wire_op(op) for op in chunk], repair=True),
                        follow_redirects=False)
                except (Redirect, Forbidden) as e:
                    # never deliverable: the slot moved off the target (its new owners
                    # get the data by anti-entropy) or the target refuses it by policy
                    # (disable_delete); kept, they would be retried forever
                    _limited.warning("hints dropped", "dropping %d hints for node %d: %s",
                                     len(chunk), target, e)
                    await self.replica.drop_hints(target, chunk)
                    continue
                if not (isinstance(ans, wire.Written) and len(ans.results) == len(chunk)):
                    raise RemoteProtocolError(f"node {target} answered WriteRecords with "
                                              f"{type(ans).__name__} of the wrong size")
                # applied or not, the target now holds this version or a newer one
                await self.replica.drop_hints(target, chunk)
                delivered += len(chunk)
        return delivered

    def _chunks(self, ops: list[VersionedOp]) -> list[list[VersionedOp]]:
        """``ops`` cut into requests of at most ``page_bytes`` of values (one at least)."""
        out: list[list[VersionedOp]] = [[]]
        size = 0
        for op in ops:
            n = len(op.value or b"")
            if out[-1] and size + n > self.limits.page_bytes:
                out.append([])
                size = 0
            out[-1].append(op)
            size += n
        return out


async def _logged(what: str, work: Awaitable[T]) -> T | None:
    """``work``, or None when it fails. Peers' failures are handled inside; what gets
    here is our own (a store error, a bug): logged with its traceback, and the loop goes
    on, because the node must keep serving clients and the next round tries again."""
    try:
        return await work
    except Exception:  # logged with its traceback at ERROR, not swallowed: see above
        log.exception("anti-entropy %s failed; trying again at the next round", what)
        return None


def _entries(page: wire.VersionPage, slot: int) -> list[tuple[str, Version, bool]]:
    """A peer's page, checked: its keys must be in the slot asked for, or we would
    write keys this node does not own."""
    out = []
    for e in page.entries:
        if not (isinstance(e, list) and len(e) == 4 and isinstance(e[0], str)
                and isinstance(e[1], int) and not isinstance(e[1], bool)
                and isinstance(e[2], str) and isinstance(e[3], bool)):
            raise RemoteProtocolError("SlotVersions entries must be [key, hlc, writer, "
                                      "tombstone]")
        if slot_of(e[0]) != slot:
            raise RemoteProtocolError(f"SlotVersions of slot {slot} listed {e[0]}, which "
                                      f"is in slot {slot_of(e[0])}")
        out.append((e[0], Version(e[1], e[2]), e[3]))
    return out

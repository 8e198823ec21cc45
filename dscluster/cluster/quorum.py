"""Replicated reads and writes: a slot's owners, asked with quorums.

Theory of operation (Dynamo, Garage's ``try_write_many_sets`` without the sets yet):

- A write is stamped once by this writer's hybrid clock and sent to every owner of its
  slot at once. An owner that holds a newer version refuses it and says which; the
  writer restamps above that and writes again, so a write that starts after another
  was acknowledged always ends up newer, whatever the clocks say (versions.py).
- For each owner that cannot be reached, the write is handed to a live non-owner as a
  durable hint (hinted handoff), delivered when the owner is back; with no live
  non-owner (R = N), to an owner that applied it (a hint that adds no copy).
- Once a majority of owners applied every key of a write, the others get STRAGGLER_GRACE
  to answer; one that does not is treated as down (it gets a hint).
- The write is acknowledged when ``owner_quorum(R)`` owners applied it and
  ``durable_quorum(R)`` nodes hold it (hints count for the second); otherwise it fails
  with Unavailable naming the slot and the owners that were down. It may then still be
  on some owners: a failed write is "not acknowledged", not "undone".
- While a slot moves (cluster/rebalance.py) a write goes to its owners and its targets
  and needs those quorums in both lists (``ClusterMap.quorum_sets``), and it carries
  the layout epoch of the writer's map, so that an owner whose layout is newer refuses
  a writer that may not know the targets. A member whose map is behind ours (it
  redirects at an older epoch) has not learnt of the move yet: it is treated as down
  and gets a hint.
- A read of a block (``/blocks/<multihash>``) takes the first owner whose bytes hash to
  the key: the content is its own version. Any other read asks ``read_quorum(R)``
  owners (one for the value, the others for the version only; while the slot moves,
  owners of the old list, which hold all of it), returns the newest, and
  writes it back to the owners that answered older (read repair). Either asks one
  more owner each STRAGGLER_GRACE without an answer (``_gather``).
- A member that redirects (it does not own the slot at our map epoch) makes the whole
  operation start again on a refreshed map; versioned writes are idempotent.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import trio

from .. import wire
from ..blocks import BLOCKS_PREFIX, block_matches
from ..clustermap import JOINED, ClusterMap
from ..concurrency import open_nursery
from ..errors import ClusterError, DSClusterError, Redirect, StoreError, Unavailable
from ..keys import slot_of
from ..limits import Limits
from .caller import MAX_REDIRECTS, MemberCaller
from .placement import durable_quorum, owner_quorum, read_quorum
from .versions import ZERO, HybridClock, Version

log = logging.getLogger(__name__)
MISSING, LIVE, TOMBSTONE = 0, 1, 2
# a write refused as stale is restamped and sent again at most this many times
MAX_RESTAMPS = 5
# members that failed to take a write's hints before it gives up on hinting it
MAX_HINT_MISSES = 2
# How long the owners left may take once a majority applied a write (an owner slower
# than that gets the write as a hint; it usually applies it anyway: the request is
# abandoned, not undone), and how long a read waits before it asks one more owner.
# Owners on one LAN answer within milliseconds of each other; a loaded 2-core test
# machine within a few hundred.
STRAGGLER_GRACE = 1.0
SKIPPED = "believed down"


@dataclass(frozen=True, slots=True)
class Found:
    """The newest record a read found for a key."""

    version: Version
    state: int
    size: int
    value: bytes | None = None


def _found(rec: wire.Record) -> Found:
    return Found(Version(rec.hlc, rec.writer), rec.state, rec.size, rec.value)


def _op(key: str, value: bytes | None, v: Version) -> list[object]:
    return [key, value, v.hlc, v.writer]


def _reached(cmap: ClusterMap, key: str, applied: set[int], need: int) -> bool:
    """Whether ``need`` members of each of the key's quorum sets applied it."""
    return all(len(applied.intersection(owners)) >= need
               for owners in cmap.quorum_sets(slot_of(key)))


class ReplicaSet:
    def __init__(self, caller: MemberCaller, limits: Limits, *,
                 writer: str | None = None) -> None:
        self.caller = caller
        self.limits = limits
        # a writer id only breaks ties between writers in one millisecond; random is
        # enough (and a client token holds no identity to use instead)
        self.clock = HybridClock(writer or secrets.token_hex(8))

    @property
    def map(self) -> ClusterMap:
        return self.caller.state.map

    def _ordered(self, owners: Iterable[int]) -> list[int]:
        """Owners in read-set order, those believed up first."""
        owners = list(owners)
        refused = self.caller.liveness.refusal
        return ([o for o in owners if refused(o) is None]
                + [o for o in owners if refused(o) is not None])

    async def _redo_on_redirect(self, attempt: int, r: Redirect, epoch: int) -> None:
        """Before trying again after ``r``, redirected while using the map of ``epoch``:
        a newer map, unless the member is the one that is behind."""
        if attempt >= MAX_REDIRECTS:
            raise ClusterError(f"too many redirects (map epoch {self.map.epoch}): {r}")
        # a concurrent operation may have fetched the newer map meanwhile
        if (not await self.caller.refresh_map() and self.map.epoch <= epoch
                and r.epoch <= epoch):
            raise ClusterError(f"{r} although map epoch {epoch} assigns it there")

    # -- reads -----------------------------------------------------------------------------
    async def read(self, key: str, *, value: bool) -> Found:
        for attempt in range(MAX_REDIRECTS + 1):
            epoch = self.map.epoch
            try:
                slot = slot_of(key)
                owners = self._ordered(self.map.read_set(slot))
                if value and key.startswith(BLOCKS_PREFIX) and block_matches(key, b"") is not None:
                    return await self._read_block(key, slot, owners)
                return await self._read_quorum(key, slot, owners, value)
            except Redirect as r:
                await self._redo_on_redirect(attempt, r, epoch)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _record(self, i: int, key: str, value: bool) -> Found:
        # owners believed down are asked last: reaching one means the read needs it
        epoch = self.map.epoch
        try:
            rec = await self.caller.try_member(i, wire.ReadRecord(key=key, value=value),
                                               dial_down=True)
        except Redirect as r:
            if r.epoch >= epoch:
                raise  # our map is the stale one: start again on a newer map
            # a target that has not learnt of its move yet: no answer, not our error
            raise Unavailable(f"member {i} is at map epoch {r.epoch}, behind ours "
                              f"({epoch})") from None
        assert isinstance(rec, wire.Record)
        return _found(rec)

    async def _gather(self, key: str, owners: list[int], value: bool, one_value: bool,
                      wanted: Callable[[dict[int, Found]], int]
                      ) -> tuple[dict[int, Found], dict[int, str]]:
        """Ask ``owners``, in order, for the record of ``key``: ``wanted(answers)``
        requests in flight (0: done), and one more whenever STRAGGLER_GRACE passes
        without an answer, so that an owner that is slow or silently cut off (its
        connection open, nothing coming back) costs a read that grace, not a request
        timeout. With ``one_value`` only one request at a time asks for the value (the
        others only say which version they hold). The answers (in the order they came)
        and the errors; requests still out at the end are cancelled."""
        answers: dict[int, Found] = {}
        errors: dict[int, str] = {}
        if len(owners) == 1:
            # one owner (R = 1): nobody to hedge with, so no task, event or timer
            try:
                answers[owners[0]] = await self._record(owners[0], key, value)
            except Unavailable as e:
                errors[owners[0]] = str(e)
            return answers, errors
        pending = list(owners)
        flying: dict[int, bool] = {}  # member -> asked for the value
        woke = trio.Event()

        async def one(i: int, with_value: bool) -> None:
            try:
                answers[i] = await self._record(i, key, with_value)
            except Unavailable as e:
                errors[i] = str(e)
            del flying[i]
            woke.set()

        def launch(n: trio.Nursery, hedge: bool) -> None:
            i = pending.pop(0)
            # a hedge asks for the value too: the request that asked for it may be the
            # one that is stuck
            have = any(a.value is not None for a in answers.values())
            with_value = value and (not one_value or (
                not have and (hedge or not any(flying.values()))))
            flying[i] = with_value
            n.start_soon(one, i, with_value)

        async with open_nursery() as n:
            while (more := wanted(answers)) > 0:
                while pending and len(flying) < more:
                    launch(n, hedge=False)
                if not flying:
                    break  # every owner asked has answered or failed
                woke = trio.Event()
                if not pending:  # every owner is asked: nothing to hedge with
                    await woke.wait()
                    continue
                with trio.move_on_after(STRAGGLER_GRACE) as waited:
                    await woke.wait()
                if waited.cancelled_caught:
                    launch(n, hedge=True)
            n.cancel_scope.cancel()
        return answers, errors

    async def _read_block(self, key: str, slot: int, owners: list[int]) -> Found:
        """The first owner whose bytes match the CID; the owners that answered without a
        good copy get it written back."""

        checked: dict[int, bool] = {}  # by id of the answer: each is hashed once

        def good(f: Found) -> bool:
            if id(f) not in checked:
                checked[id(f)] = (f.state == LIVE
                                  and block_matches(key, f.value or b"") is not False)
            return checked[id(f)]

        answers, errors = await self._gather(
            key, owners, True, False,
            lambda got: 0 if any(good(f) for f in got.values()) else 1)
        found = next((f for f in answers.values() if good(f)), None)
        stale = [i for i, f in answers.items() if not good(f)]
        corrupt = [i for i, f in answers.items() if f.state == LIVE and not good(f)]
        for i in corrupt:
            # info, not warning: a client CLI prints one line per error
            log.info("member %d holds bytes at %s that do not match its CID; reading "
                     "another replica and repairing it", i, key)
        if found is not None:
            if stale:
                await self._write_back(key, found, stale)
            return found
        if not answers:  # nobody answered at all
            raise self._unavailable("read", slot, errors, 1)
        gone = [answers[i] for i in stale if i not in corrupt]
        newest_gone = max(gone, key=lambda f: f.version) if gone else None
        if corrupt and (newest_gone is None or newest_gone.state != TOMBSTONE):
            raise StoreError(f"{key}: every copy that answered is corrupt (on member "
                             f"{', '.join(map(str, corrupt))}): its bytes do not match the CID")
        return newest_gone or Found(ZERO, MISSING, 0)

    async def _read_quorum(self, key: str, slot: int, owners: list[int],
                           value: bool) -> Found:
        r = self.map.replication
        need, least = read_quorum(r), owner_quorum(r)
        # a target of a moving slot may not hold all of it yet: only the old owners
        # count, whatever else answered
        old = set(self.map.owners[slot])
        answers, errors = await self._gather(
            key, owners, value, True, lambda got: need - len(old.intersection(got)))
        if len(old.intersection(answers)) < least:
            raise self._unavailable("read", slot, errors, least)
        # among equal versions the one that carries the value, or it is read twice
        newest_at, best = max(answers.items(),
                              key=lambda a: (a[1].version, a[1].value is not None))
        if value and best.state == LIVE and best.value is None:
            best = await self._value_of(key, best, [i for i, a in answers.items()
                                                    if a.version == best.version])
            answers[newest_at] = best
        self.clock.observe(best.version)
        stale = [i for i, a in answers.items() if a.version < best.version]
        if stale and (best.state != LIVE or best.value is not None):
            await self._write_back(key, best, stale)
        return best

    async def _value_of(self, key: str, best: Found, holders: list[int]) -> Found:
        errors: dict[int, str] = {}
        for i in holders:
            try:
                got = await self._record(i, key, True)
            except Unavailable as e:
                errors[i] = str(e)
                continue
            if got.version >= best.version:
                return got
        raise Unavailable(f"{key}: the owners holding its newest version stopped answering: "
                          + "; ".join(errors.values()))

    async def _write_back(self, key: str, best: Found, stale: list[int]) -> None:
        """Read repair; best effort: anti-entropy catches whatever fails here."""
        op = _op(key, best.value if best.state == LIVE else None, best.version)

        async def one(i: int) -> None:
            try:
                await self.caller.try_member(i, wire.WriteRecords(ops=[op], repair=True))
            except DSClusterError as e:
                log.debug("read repair of %s on member %d failed: %s", key, i, e)

        async with open_nursery() as n:
            for i in stale:
                n.start_soon(one, i)

    # -- writes ----------------------------------------------------------------------------
    async def write(self, ops: Sequence[tuple[str, bytes | None]]) -> None:
        """Write ``(key, value or None for a delete)`` to every owner; see the module
        docstring for when it counts as done."""
        v = self.clock.now()
        versions = {key: v for key, _ in ops}
        values = dict(ops)
        for attempt in range(MAX_REDIRECTS + 1):
            epoch = self.map.epoch
            try:
                await self._write_all(values, versions)
                return
            except Redirect as r:
                await self._redo_on_redirect(attempt, r, epoch)

    async def _write_all(self, values: dict[str, bytes | None],
                         versions: dict[str, Version]) -> None:
        cmap = self.map
        applied: dict[str, set[int]] = {k: set() for k in values}
        failed: dict[int, str] = {}
        r = cmap.replication
        # owners believed down are skipped (their writes become hints), unless the
        # quorum needs them: then they are dialed after all
        for dial_down in (False, True):
            await self._rounds(cmap, list(values), values, versions, applied, failed,
                               dial_down)
            if dial_down or all(_reached(cmap, k, applied[k], owner_quorum(r))
                                for k in values):
                break
        hinted = await self._hint(cmap, values, versions, applied, failed)
        for key in values:
            slot = slot_of(key)
            sets = cmap.quorum_sets(slot)
            for owners in sets:
                owners_ok = len(applied[key].intersection(owners))
                if (owners_ok < owner_quorum(r)
                        or owners_ok + hinted.get(key, 0) < durable_quorum(r)):
                    down = {i: failed[i] for i in cmap.write_set(slot) if i in failed}
                    which = f" ({', '.join(map(str, owners))})" if len(sets) > 1 else ""
                    raise self._unavailable("write", slot, down, owner_quorum(r),
                                            f"{owners_ok} of {r} owners{which} applied it")

    async def _rounds(self, cmap: ClusterMap, todo: list[str],
                      values: dict[str, bytes | None], versions: dict[str, Version],
                      applied: dict[str, set[int]], failed: dict[int, str],
                      dial_down: bool) -> None:
        if dial_down:
            for i in [i for i, why in failed.items() if why.startswith(SKIPPED)]:
                del failed[i]
        for _ in range(MAX_RESTAMPS):
            newer: dict[str, set[int]] = {}
            stale = await self._send_round(cmap, todo, values, versions, applied, failed,
                                           dial_down, newer)
            if not stale:
                return
            for key, held in stale.items():
                versions[key] = self.clock.above(held)
                applied[key].clear()  # every owner must take the new stamp
            todo = list(stale)
        # still meeting newer versions: concurrent writes of the same keys keep landing
        # above ours. Last writer wins, so ours is superseded, which is a valid outcome;
        # the owners holding the newer writes count for the quorum as having applied it
        newer = {}
        await self._send_round(cmap, todo, values, versions, applied, failed, dial_down,
                               newer)
        for key, owners in newer.items():
            applied[key] |= owners

    async def _send_round(self, cmap: ClusterMap, keys: list[str],
                          values: dict[str, bytes | None], versions: dict[str, Version],
                          applied: dict[str, set[int]], failed: dict[int, str],
                          dial_down: bool, newer: dict[str, set[int]]) -> dict[str, Version]:
        """One WriteRecords per owner (in bounded chunks) for ``keys``; returns the keys
        some owner holds newer, with the newest version seen (``newer``: which owners)."""
        per_member: dict[int, list[str]] = {}
        refusal = self.caller.liveness.refusal
        for key in keys:
            for i in cmap.write_set(slot_of(key)):
                if i in failed or i in applied[key]:
                    continue
                down = None if dial_down else refusal(i)
                if down is not None:
                    failed[i] = f"{SKIPPED}: {cmap.members[i].describe()}: {down}"
                    continue
                per_member.setdefault(i, []).append(key)
        stale: dict[str, Version] = {}
        enough = read_quorum(cmap.replication)
        waiting: Counter[int] = Counter()  # member -> its requests not answered yet

        async def send(i: int, chunk: list[str]) -> None:
            msg = wire.WriteRecords(ops=[_op(k, values[k], versions[k]) for k in chunk],
                                    layout_epoch=cmap.layout_epoch)
            try:
                ans = await self.caller.try_member(i, msg, dial_down=dial_down)
            except Unavailable as e:
                waiting[i] -= 1
                failed[i] = str(e)
                return
            except Redirect as r:
                if r.epoch >= cmap.epoch:
                    raise  # our map is the stale one: start again on a newer map
                # it has not learnt of a move yet (maps spread within a ping or two)
                waiting[i] -= 1
                failed[i] = (f"{cmap.members[i].describe()} is at map epoch {r.epoch}, "
                             f"behind ours ({cmap.epoch})")
                return
            waiting[i] -= 1  # a request the grace cut off stays counted
            assert isinstance(ans, wire.Written)
            for key, (ok, hlc, writer) in zip(chunk, ans.results, strict=True):
                held = Version(hlc, writer)
                if ok:
                    applied[key].add(i)
                else:
                    newer.setdefault(key, set()).add(i)
                    if held > stale.get(key, ZERO):
                        stale[key] = held
            # A majority of owners applied every key: no earlier acknowledged write can
            # be newer unseen (its owners and ours intersect), so an owner that is slow
            # or silently cut off gets a short grace, then a hint, rather than holding
            # the write up for a whole request timeout.
            # (once: moving a deadline makes trio revisit every task under the scope)
            if (grace.deadline == math.inf and not stale
                    and all(_reached(cmap, k, applied[k], enough) for k in keys)):
                grace.deadline = trio.current_time() + STRAGGLER_GRACE

        requests = [(i, chunk) for i, member_keys in per_member.items()
                    for chunk in self.chunks(member_keys, values)]
        for i, _ in requests:
            waiting[i] += 1
        grace = trio.CancelScope()
        if len(requests) == 1:
            # one request (R = 1, one owner): no straggler to cut off, so no task
            await send(*requests[0])
        else:
            with grace:
                async with open_nursery() as n:
                    for i, chunk in requests:
                        n.start_soon(send, i, chunk)
        for i, left in waiting.items():
            if left > 0:
                failed.setdefault(i, f"{cmap.members[i].describe()} did not answer within "
                                  f"{STRAGGLER_GRACE:g}s after a majority of owners applied "
                                  "the write")
        return stale

    def chunks(self, keys: list[str], values: dict[str, bytes | None]) -> list[list[str]]:
        """``keys`` cut into requests within the batch and page limits."""
        out: list[list[str]] = [[]]
        size = 0
        for k in keys:
            n = len(k) + len(values[k] or b"")
            if out[-1] and (len(out[-1]) >= self.limits.max_batch_ops
                            or size + n > self.limits.page_bytes):
                out.append([])
                size = 0
            out[-1].append(k)
            size += n
        return [c for c in out if c]

    async def _hint(self, cmap: ClusterMap, values: dict[str, bytes | None],
                    versions: dict[str, Version], applied: dict[str, set[int]],
                    failed: dict[int, str]) -> dict[str, int]:
        """Hand the writes of owners that failed to live non-owners; how many hints
        were stored per key."""
        per_target: dict[int, list[str]] = {}
        for key in values:
            for i in cmap.write_set(slot_of(key)):
                if i in failed and i not in applied[key]:
                    per_target.setdefault(i, []).append(key)
        hinted: dict[str, int] = {}
        if not per_target:
            return hinted  # every owner applied it (the usual case): no nursery

        async def hand(target: int, keys: list[str]) -> None:
            owners_of = {k: set(cmap.write_set(slot_of(k))) for k in keys}
            holders = self._hint_holders(cmap, target, failed)
            misses = 0
            # A non-owner's hint adds a copy, so it counts toward durability; where no
            # non-owner is live (R = N), an owner that applied the write keeps the hint
            # anyway, so the skipped owner gets it within a tick of its return instead of
            # at the next full anti-entropy pass.
            for counted in (True, False):
                for holder in holders:
                    mine = [k for k in keys if (holder not in owners_of[k] if counted
                                                else holder in applied[k])]
                    if not mine:
                        continue
                    try:
                        for chunk in self.chunks(mine, values):
                            await self.caller.try_member(holder, wire.StoreHints(
                                target=target,
                                ops=[_op(k, values[k], versions[k]) for k in chunk]))
                    except DSClusterError as e:
                        log.debug("member %d did not take hints for %d: %s", holder,
                                  target, e)
                        misses += 1
                        if misses >= MAX_HINT_MISSES:
                            return
                        continue
                    if counted:
                        for k in mine:
                            hinted[k] = hinted.get(k, 0) + 1
                    keys = [k for k in keys if k not in mine]
                    if not keys:
                        return

        async with open_nursery() as n:
            for target, keys in per_target.items():
                n.start_soon(hand, target, keys)
        return hinted

    def _hint_holders(self, cmap: ClusterMap, target: int, failed: dict[int, str]) -> list[int]:
        """Live members after ``target`` in ring order: where its hints go."""
        n = len(cmap.members)
        ring = [(target + k) % n for k in range(1, n)]
        return [i for i in ring if i not in failed and cmap.members[i].state == JOINED
                and self.caller.liveness.refusal(i) is None]

    def _unavailable(self, what: str, slot: int, errors: dict[int, str], needed: int,
                     detail: str = "") -> Unavailable:
        owners = self.map.write_set(slot)
        down = ", ".join(f"member {i}" for i in owners if i in errors) or "none"
        why = "; ".join(errors.values())
        return Unavailable(
            f"{what} of slot {slot} failed: needs {needed} of its {len(owners)} owners "
            f"({', '.join(map(str, owners))}){'; ' + detail if detail else ''}; down: {down}"
            + (f" ({why})" if why else ""))


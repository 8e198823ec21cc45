"""Mark and sweep: which claimed blocks nothing uses any more, and freeing them.

Theory of operation (doc/operations.md, "Garbage collection" says why each rule):

1. Leases: a lease written within the grace period is live; the *cutoff* is the older
   of (now - grace) and the start of the oldest live lease. Leases older than the grace
   period are stale (their writer died) and are removed by the sweep.
2. Roots, in this order: the parts of uploads in progress, the pins, the S3 objects
   stored as DAGs. CompleteMultipartUpload writes the object before it forgets the
   parts, so listing parts first sees a completing upload as one or the other. An S3
   object whose data key is a block key (Kubo's and Helia's blocks, through the
   gateway's ``blocks`` bucket) protects that block directly.
3. Candidates: the ownership markers (claims.py). Only a claimed block is ever freed.
4. Walk the roots (walk.py). A candidate that is not reached, not an S3 object of its
   own, and whose marker is older than the cutoff is garbage.
5. Sweep, a batch at a time: read the garbage blocks, delete them, then read their
   markers and S3 records again. A block that was claimed again (an add writing the
   same bytes meanwhile) or written through the gateway meanwhile is put back: an add
   writes the marker before the block, so either the add's block write comes after our
   delete (and a replica that holds our tombstone makes it restamp above it) or its
   marker write came before our second read, which then sees it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from ..blocks import BLOCKS_PREFIX
from ..client.datastore import ClusterDatastore
from ..cluster.quorum import LIVE
from ..cluster.versions import LOGICAL_BITS
from ..concurrency import open_nursery
from ..datastore import BatchOp
from ..errors import ClusterError, NotFound
from ..keys import Key
from ..query import Query
from ..s3 import keymap
from ..s3.meta import ObjectMeta, PartRecord, decode
from ..unixfs import BlockCid
from .claims import is_block_key, lease_started
from .keys import LEASES_PREFIX, OWNED_PREFIX, block_of_owned, owned_key
from .pins import list_pins
from .walk import DEFAULT_WINDOW, Reached, walk

DEFAULT_GRACE = 15 * 60.0
# blocks freed per sweep batch: their bytes are held until the batch is checked
SWEEP_BATCH = 64

T = TypeVar("T")


@dataclass
class Garbage:
    key: str  # /blocks/<NAME>
    size: int
    claimed_hlc: int  # the marker's version when it was judged


@dataclass
class Plan:
    """What a collection would free, and why the rest stays."""

    cutoff_ms: int
    roots: dict[str, int] = field(default_factory=dict)  # kind -> count
    claimed: int = 0  # blocks with a marker
    reached: int = 0  # blocks the roots reach
    s3_blocks: int = 0  # claimed blocks that are also S3 objects (Kubo, Helia)
    young: int = 0  # unreached, claimed after the cutoff
    live_leases: int = 0
    stale_leases: list[str] = field(default_factory=list)
    orphan_markers: list[str] = field(default_factory=list)  # the block is gone
    missing: list[str] = field(default_factory=list)  # CIDs reached but not stored
    garbage: list[Garbage] = field(default_factory=list)

    @property
    def garbage_bytes(self) -> int:
        return sum(g.size for g in self.garbage)


async def each(items: Sequence[T], fn: Callable[[T], Awaitable[None]],
               window: int = DEFAULT_WINDOW) -> None:
    """``fn`` on every item, ``window`` at a time."""
    limiter = trio.CapacityLimiter(window)

    async def one(item: T) -> None:
        async with limiter:
            await fn(item)

    async with open_nursery() as n:
        for item in items:
            n.start_soon(one, item)


async def written_hlc(ds: ClusterDatastore, key: str) -> int | None:
    """The version stamp of a live key, None if it is absent or deleted."""
    found = await ds.replicas.read(Key(key), value=False)
    return found.version.hlc if found.state == LIVE else None


def wall_ms(hlc: int) -> int:
    return hlc >> LOGICAL_BITS


async def _leases(ds: ClusterDatastore, plan: Plan, now_ms: int, grace_ms: int) -> None:
    entries = [(e.key, e.value) async for e in ds.query(Query(prefix=LEASES_PREFIX))]
    starts: list[int] = []

    async def judge(entry: tuple[str, bytes | None]) -> None:
        key, value = entry
        hlc = await written_hlc(ds, key)
        if hlc is None:
            return
        started = lease_started(value or b"")
        if now_ms - wall_ms(hlc) < grace_ms:
            plan.live_leases += 1
            # a lease we can't read protects everything still claimed
            starts.append(0 if started is None else started)
        else:
            plan.stale_leases.append(key)

    await each(entries, judge)
    if starts:
        plan.cutoff_ms = min(plan.cutoff_ms, *starts)


async def _roots(ds: ClusterDatastore, plan: Plan) -> tuple[list[BlockCid], set[str]]:
    """Root CIDs and the block keys that are S3 objects themselves."""
    roots: list[BlockCid] = []
    s3_blocks: set[str] = set()

    def root(kind: str, cid: str, where: str) -> None:
        try:
            roots.append(BlockCid.parse(cid))
        except Exception as e:
            raise ClusterError(f"gc stopped: {where} names the invalid CID {cid!r} ({e}); "
                               "nothing was freed") from None
        plan.roots[kind] = plan.roots.get(kind, 0) + 1

    def unreadable(key: str) -> ClusterError:
        # a record we can't read may point at a DAG: freeing anything could break it
        return ClusterError(f"gc stopped: can't read the record {key}; nothing was freed")

    parts_root = f"{keymap.META_ROOT}/parts"
    async for e in ds.query(Query(prefix=parts_root)):
        part = decode(PartRecord, e.value)
        if part is None:
            raise unreadable(e.key)
        root("upload parts", part.cid, e.key)
    for pin in await list_pins(ds):
        root("pins", pin.cid, f"the pin of {pin.cid}")
    objects_root = f"{keymap.META_ROOT}/objects"
    async for e in ds.query(Query(prefix=objects_root)):
        meta = decode(ObjectMeta, e.value)
        if meta is None:
            raise unreadable(e.key)
        if meta.cid is not None:
            root("S3 objects", meta.cid, e.key)
        data_key = e.key[len(objects_root):]
        if is_block_key(data_key):
            s3_blocks.add(data_key)
    return roots, s3_blocks


async def plan_collection(ds: ClusterDatastore, *, grace: float = DEFAULT_GRACE,
                          window: int = DEFAULT_WINDOW,
                          on_block: Callable[[], None] | None = None,
                          now: float | None = None) -> Plan:
    """Mark: what a collection now would free (nothing is changed)."""
    now_ms = int((time.time() if now is None else now) * 1000)
    grace_ms = int(grace * 1000)
    plan = Plan(cutoff_ms=now_ms - grace_ms)
    await _leases(ds, plan, now_ms, grace_ms)
    roots, s3_blocks = await _roots(ds, plan)
    claimed = [block_of_owned(e.key) async for e in
               ds.query(Query(prefix=OWNED_PREFIX, keys_only=True))]
    plan.claimed = len(claimed)
    reached: Reached = await walk(ds, roots, window=window, on_block=on_block)
    plan.reached = len(reached.keys)
    plan.missing = reached.missing
    unused = []
    for key in claimed:
        if key in s3_blocks:
            plan.s3_blocks += 1
        elif key not in reached.keys:
            unused.append(key)

    async def judge(key: str) -> None:
        hlc = await written_hlc(ds, owned_key(key))
        if hlc is None:
            return  # unclaimed meanwhile (another gc)
        if wall_ms(hlc) >= plan.cutoff_ms:
            plan.young += 1
            return
        try:
            size = await ds.get_size(key)
        except NotFound:
            plan.orphan_markers.append(owned_key(key))
            return
        plan.garbage.append(Garbage(key, size, hlc))

    await each(unused, judge, window)
    plan.garbage.sort(key=lambda g: g.key)
    return plan


@dataclass
class Freed:
    blocks: int = 0
    bytes: int = 0
    restored: int = 0  # freed, then put back: claimed or written through S3 meanwhile


async def _sweep_batch(ds: ClusterDatastore, batch: list[Garbage], freed: Freed,
                       window: int) -> None:
    values: dict[str, bytes] = {}
    stale: list[Garbage] = []

    async def read(g: Garbage) -> None:
        # judged again now: the plan may be minutes old
        if await written_hlc(ds, owned_key(g.key)) != g.claimed_hlc:
            return
        try:
            values[g.key] = await ds.get(g.key)
        except NotFound:
            return
        stale.append(g)

    await each(batch, read, window)
    if not stale:
        return
    await ds.apply([BatchOp(g.key, None) for g in stale])
    gone: list[Garbage] = []

    async def recheck(g: Garbage) -> None:
        name = g.key[len(BLOCKS_PREFIX):]
        claimed = await written_hlc(ds, owned_key(g.key))
        through_s3 = await ds.has(f"{keymap.meta_prefix('blocks')}/{name}")
        if claimed != g.claimed_hlc or through_s3:
            await ds.put(g.key, values[g.key])
            freed.restored += 1
        else:
            gone.append(g)

    await each(stale, recheck, window)
    if gone:
        await ds.apply([BatchOp(owned_key(g.key), None) for g in gone])
    freed.blocks += len(gone)
    freed.bytes += sum(g.size for g in gone)


async def sweep(ds: ClusterDatastore, plan: Plan, *, window: int = DEFAULT_WINDOW,
                on_bytes: Callable[[int], None] | None = None) -> Freed:
    """Free the plan's garbage, then its orphan markers and stale leases."""
    freed = Freed()
    for i in range(0, len(plan.garbage), SWEEP_BATCH):
        batch = plan.garbage[i:i + SWEEP_BATCH]
        await _sweep_batch(ds, batch, freed, window)
        if on_bytes is not None:
            on_bytes(sum(g.size for g in batch))
    leftovers = plan.orphan_markers + plan.stale_leases
    for i in range(0, len(leftovers), SWEEP_BATCH):
        await ds.apply([BatchOp(k, None) for k in leftovers[i:i + SWEEP_BATCH]])
    return freed

"""The cluster map: one versioned value that says which node serves which slot.

It holds an ``epoch`` (a monotonic integer), the member nodes (index, peer id,
multiaddrs, state), the replication factor R and, for each of the 16384 slots, an ordered
owner list of R distinct member indexes (first = primary, the rest = replicas).

A map is never edited in place: every change builds the next map with ``epoch + 1``
(``ClusterMap.evolve``), so two maps with the same epoch are the same map.

On disk and on the wire the owner lists are run-length encoded as
``{"start": a, "end": b, "owners": [...]}`` with inclusive ends (as Redis Cluster prints
slot ranges).

Slot moves (Garage's staged layouts): a slot being moved also has a ``target`` owner list.
While it moves, writes go to both lists (``write_set``), reads ask the old owners first
(``read_set``), and every member on either list serves it (``owns``); ``finish`` makes the
target the owners once the coordinator (cluster/rebalance.py) has copied the slot, and
``abort`` drops the targets. ``layout_epoch`` is the epoch at which targets were last
staged: a node refuses writes from a writer whose map is older than that, since such a
writer does not know every member a write must reach. Finishing or dropping targets
needs no refusal (a writer that knows the targets writes to old and new owners alike),
so it does not change ``layout_epoch``, and a writer is sent to refresh once per move.

The format is versioned. Version 3 adds slot targets, ``layout_epoch`` and member weights
and the ``retired`` state. Version 2 always carries ``replication``, and every owner on a
slot's list serves it. Version 1, what releases before replication wrote, may lack
``replication`` (then 1) and had only primaries serve; every version 1 map a release
wrote has one owner per slot, so it means the same in version 2. Older maps are upgraded
as they are read (``_UPGRADES``) and written as the current version the next time a map
is saved.
A map of a newer version is refused: its fields may mean what this code cannot honour,
and guessing would misplace keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from .cluster.placement import check_replication, initial_owners, plan
from .errors import ClusterError, ConfigError
from .identity import fsync_directory
from .keys import SLOT_COUNT, slot_of

MAP_FORMAT_VERSION = 3
PENDING = "pending"  # no node has claimed this member yet
JOINED = "joined"
# removed from the cluster: owns nothing, is not asked, and its peer id joins no more.
# (A member being drained is JOINED with weight 0: it serves what it owns until moved.)
RETIRED = "retired"
MEMBER_STATES = (PENDING, JOINED, RETIRED)
MAX_WEIGHT = 1000.0


@dataclass(frozen=True, slots=True)
class Member:
    index: int
    peer_id: str | None = None
    addrs: tuple[str, ...] = ()
    state: str = PENDING
    # relative capacity: a plan gives each active member slots in proportion to it
    weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.peer_id, "swarm": list(self.addrs),
                "state": self.state, "weight": self.weight}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Member:
        try:
            m = cls(int(d["index"]), d.get("id"), tuple(str(a) for a in d.get("swarm", ())),
                    str(d.get("state", PENDING)), float(d.get("weight", 1.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise ClusterError(f"invalid member entry in cluster map: {e}") from None
        if m.state not in MEMBER_STATES:
            raise ClusterError(f"invalid member state {m.state!r}")
        if not 0.0 <= m.weight <= MAX_WEIGHT:  # also refuses NaN
            raise ClusterError(f"member {m.index} has weight {m.weight}; weights are "
                               f"0..{MAX_WEIGHT:g}")
        return m

    def describe(self) -> str:
        return f"node {self.index} ({self.peer_id or 'not joined yet'})"


@dataclass(frozen=True)
class ClusterMap:
    epoch: int
    members: tuple[Member, ...]
    owners: tuple[tuple[int, ...], ...]  # one owner list per slot
    replication: int = 1
    # slot -> the owner list it is moving to (see the module docstring)
    moving: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    layout_epoch: int = 0
    _ranges: dict[int, list[tuple[int, int]]] = field(default_factory=dict, compare=False,
                                                      repr=False)

    def __post_init__(self) -> None:
        if len(self.owners) != SLOT_COUNT:
            raise ClusterError(f"cluster map must assign all {SLOT_COUNT} slots")
        n = len(self.members)
        for i, m in enumerate(self.members):
            if m.index != i:
                raise ClusterError("cluster map members must be numbered 0..n-1 in order")
        try:
            check_replication(n, self.replication)
        except ConfigError as e:
            raise ClusterError(f"invalid cluster map: {e}") from None
        for s, owners in enumerate(self.owners):
            self._check_owners(s, owners, "owner")
        for s, target in self.moving.items():
            if not 0 <= s < SLOT_COUNT:
                raise ClusterError(f"slot {s} does not exist")
            self._check_owners(s, target, "target")
            if set(target) == set(self.owners[s]):
                raise ClusterError(f"slot {s} moves to the owners it has")
        if not 0 <= self.layout_epoch <= self.epoch:
            raise ClusterError(f"layout epoch {self.layout_epoch} is not within 0..{self.epoch}")

    def _check_owners(self, s: int, owners: tuple[int, ...], what: str) -> None:
        n = len(self.members)
        if not owners or any(not 0 <= o < n for o in owners) \
                or len(set(owners)) != len(owners):
            raise ClusterError(f"slot {s} has an invalid {what} list {owners}")
        if len(owners) != self.replication:
            # the quorums (placement.py) are sized from R: they are majorities only
            # of exactly R owners
            raise ClusterError(f"slot {s} has {len(owners)} {what}s {owners}; the map's "
                               f"replication factor is {self.replication}")
        for o in owners:
            if self.members[o].state == RETIRED:
                raise ClusterError(f"slot {s} lists retired member {o} as {what}")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def initial(cls, node_count: int, replication: int = 1) -> ClusterMap:
        """Slots split evenly in contiguous ranges, like Redis Cluster's create, with
        replicas spread as cluster/placement.py explains."""
        owners = initial_owners(node_count, replication)
        return cls(1, tuple(Member(i) for i in range(node_count)), owners, replication)

    def evolve(self, **changes: Any) -> ClusterMap:
        """The next map: the given changes with the epoch advanced by one."""
        return replace(self, epoch=self.epoch + 1, _ranges={}, **changes)

    def with_member(self, member: Member) -> ClusterMap:
        members = list(self.members)
        members[member.index] = member
        return self.evolve(members=tuple(members))

    def add_member(self, peer_id: str, addrs: tuple[str, ...], weight: float = 1.0
                   ) -> ClusterMap:
        """The next map with a new joined member that owns nothing yet (a rebalance gives
        it slots)."""
        if len(self.members) >= SLOT_COUNT:
            raise ClusterError(f"a cluster has at most {SLOT_COUNT} members")
        member = Member(len(self.members), peer_id, addrs, JOINED, weight)
        return self.evolve(members=(*self.members, member))

    # -- slot moves -----------------------------------------------------------------------
    def stage(self, new_owners: tuple[tuple[int, ...], ...]) -> ClusterMap:
        """The next map moving every slot whose owner set differs from ``new_owners``;
        a slot with the same owners in another order takes that order at once, since
        reordering moves no data (it only changes which owner is asked first)."""
        if self.moving:
            raise ClusterError(f"{len(self.moving)} slots are still moving; finish or abort "
                               "that rebalance first")
        if len(new_owners) != SLOT_COUNT:
            raise ClusterError(f"a layout must assign all {SLOT_COUNT} slots")
        owners = list(self.owners)
        moving: dict[int, tuple[int, ...]] = {}
        for s, new in enumerate(new_owners):
            new = tuple(new)
            if set(new) == set(owners[s]):
                owners[s] = new
            else:
                moving[s] = new
        return self.evolve(owners=tuple(owners), moving=moving,
                           layout_epoch=self.epoch + 1)

    def finish(self, slots: Iterable[int]) -> ClusterMap:
        """The next map where the given moving slots belong to their targets."""
        owners = list(self.owners)
        moving = dict(self.moving)
        for s in slots:
            if s not in moving:
                raise ClusterError(f"slot {s} is not moving")
            owners[s] = moving.pop(s)
        return self.evolve(owners=tuple(owners), moving=moving)

    def abort(self) -> ClusterMap:
        """The next map with every move dropped: the old owners, which got every write
        during the move, keep their slots."""
        return self.evolve(moving={})

    def plan(self) -> tuple[tuple[int, ...], ...]:
        """The owner lists a rebalance moves to (cluster/placement.py)."""
        weights = {i: self.members[i].weight for i in self.active_members()}
        return plan(self.owners, weights, self.replication)

    def moving_slots(self) -> list[int]:
        return sorted(self.moving)

    def old_set(self, slot: int) -> tuple[int, ...]:
        return self.owners[slot]

    def new_set(self, slot: int) -> tuple[int, ...]:
        return self.moving.get(slot, self.owners[slot])

    def incoming(self, index: int, slot: int) -> bool:
        """Whether ``index`` is receiving ``slot``: a target not yet holding all of it."""
        target = self.moving.get(slot)
        return target is not None and index in target and index not in self.owners[slot]

    def planned_owners(self) -> tuple[tuple[int, ...], ...]:
        """Every slot's owner list once the moves in progress are finished."""
        return tuple(self.new_set(s) for s in range(SLOT_COUNT))

    def active_members(self) -> list[int]:
        """The members a plan gives slots to: not retired and not being drained."""
        return [m.index for m in self.members if m.state != RETIRED and m.weight > 0]

    def held(self, index: int) -> int:
        """How many slots ``index`` owns (as primary or replica; not those incoming)."""
        return sum(index in o for o in self.owners)

    def slots_of(self, index: int) -> int:
        """How many slots ``index`` serves (as owner or incoming target)."""
        return sum(self.owns(index, s) for s in range(SLOT_COUNT))

    # -- lookups ------------------------------------------------------------------------
    def owners_of_slot(self, slot: int) -> tuple[Member, ...]:
        return tuple(self.members[i] for i in self.owners[slot])

    def primary(self, key: str) -> Member:
        return self.members[self.owners[slot_of(key)][0]]

    def member_by_peer(self, peer_id: str) -> Member | None:
        for m in self.members:
            if m.peer_id == peer_id:
                return m
        return None

    def slot_ranges(self, index: int) -> list[tuple[int, int]]:
        """Inclusive slot ranges for which member ``index`` is primary."""
        cached = self._ranges.get(index)
        if cached is None:
            cached = []
            start = None
            for s in range(SLOT_COUNT + 1):
                mine = s < SLOT_COUNT and self.owners[s][0] == index
                if mine and start is None:
                    start = s
                elif not mine and start is not None:
                    cached.append((start, s - 1))
                    start = None
            self._ranges[index] = cached
        return cached

    def describe_ranges(self, index: int) -> str:
        r = self.slot_ranges(index)
        return ",".join(f"{a}-{b}" for a, b in r) if r else "no slots"

    # The named questions every caller asks instead of indexing owner lists itself, so
    # that replication and slot moves change these answers, not their callers.
    def write_set(self, slot: int) -> tuple[int, ...]:
        """The members a write to ``slot`` goes to: every owner, and while the slot moves
        every target too (old owners first)."""
        owners = self.owners[slot]
        target = self.moving.get(slot)
        if target is None:
            return owners
        return owners + tuple(t for t in target if t not in owners)

    def quorum_sets(self, slot: int) -> tuple[tuple[int, ...], ...]:
        """The owner lists in each of which a write must reach a quorum (Garage's
        ``try_write_many_sets``): the owners, and while the slot moves its targets too,
        so that the write is on a majority of whichever list serves the slot next."""
        target = self.moving.get(slot)
        return (self.owners[slot],) if target is None else (self.owners[slot], target)

    def read_set(self, slot: int) -> tuple[int, ...]:
        """The members a read of ``slot`` may ask, in the order to ask them (primary
        first, so that reads of one slot land on one node while it is up; while the slot
        moves the old owners, which hold all of it, before the targets)."""
        return self.write_set(slot)

    def read_groups(self, slots: Sequence[int]) -> dict[tuple[int, ...], list[int]]:
        """``slots`` grouped by their read set (a map has a few distinct owner lists);
        the lists are not to be changed."""
        if slots == range(SLOT_COUNT):
            return self._all_read_groups
        return self._group(slots)

    @cached_property
    def _all_read_groups(self) -> dict[tuple[int, ...], list[int]]:
        return self._group(range(SLOT_COUNT))

    def _group(self, slots: Sequence[int]) -> dict[tuple[int, ...], list[int]]:
        groups: dict[tuple[int, ...], list[int]] = {}
        for s in slots:
            groups.setdefault(self.read_set(s), []).append(s)
        return groups

    def owns(self, index: int, slot: int) -> bool:
        """Whether member ``index`` holds (or is receiving) a replica of ``slot``."""
        return index in self.owners[slot] or index in self.moving.get(slot, ())

    def slots_without(self, members: Collection[int]) -> list[int]:
        """The slots none of ``members`` owns."""
        return [s for s in range(SLOT_COUNT) if not any(o in members for o in self.owners[s])]

    def slot_health(self, up: Collection[int]) -> dict[str, int]:
        """How many slots have every owner up (ok), only some (under_replicated) or none
        (unavailable), given the members that are up."""
        counts = {"ok": 0, "under_replicated": 0, "unavailable": 0}
        for owners in self.owners:
            live = sum(o in up for o in owners)
            state = ("ok" if live == len(owners) else
                     "unavailable" if live == 0 else "under_replicated")
            counts[state] += 1
        return counts

    def serving_members(self) -> list[int]:
        """The members that answer for at least one slot, in index order."""
        return list(self._serving)

    @cached_property
    def _serving(self) -> tuple[int, ...]:
        # asked once per query; a map is immutable, so once per map is enough
        serving = {o for owners in self.owners for o in owners}
        serving.update(t for target in self.moving.values() for t in target)
        return tuple(sorted(serving))

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        runs: list[dict[str, Any]] = []
        for s, owners in enumerate(self.owners):
            run: dict[str, Any] = {"start": s, "end": s, "owners": list(owners)}
            target = self.moving.get(s)
            if target is not None:
                run["target"] = list(target)
            if runs and runs[-1]["owners"] == run["owners"] \
                    and runs[-1].get("target") == run.get("target"):
                runs[-1]["end"] = s
            else:
                runs.append(run)
        return {
            "version": MAP_FORMAT_VERSION,
            "epoch": self.epoch,
            "layout_epoch": self.layout_epoch,
            "replication": self.replication,
            "nodes": [m.to_dict() for m in self.members],
            "slots": runs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterMap:
        """A map of this format version or an older one (upgraded); ConfigError for a
        newer one, ClusterError for anything else that is not a valid map."""
        if not isinstance(d, dict):
            raise ClusterError("cluster map must be an object")
        d = _upgraded(d)
        try:
            members = tuple(Member.from_dict(m) for m in d["nodes"])
            owners: list[tuple[int, ...]] = [()] * SLOT_COUNT
            moving: dict[int, tuple[int, ...]] = {}
            for run in d["slots"]:
                start, end = int(run["start"]), int(run["end"])
                if not 0 <= start <= end < SLOT_COUNT:
                    raise ClusterError(f"invalid slot range {start}-{end}")
                ol = tuple(int(o) for o in run["owners"])
                target = run.get("target")
                tl = None if target is None else tuple(int(o) for o in target)
                for s in range(start, end + 1):
                    owners[s] = ol
                    if tl is not None:
                        moving[s] = tl
            return cls(int(d["epoch"]), members, tuple(owners), int(d["replication"]),
                       moving, int(d["layout_epoch"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ClusterError(f"invalid cluster map: {e!r}") from None

    def save(self, path: Path) -> None:
        """Replace the file at ``path`` durably: a bootstrapper that crashes right after
        handing out an epoch must find that same map when it restarts, never an older
        one it would then evolve into a different map under the same epoch. Maps change
        only on membership events, so the few milliseconds of fsync stay off hot paths."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(self.to_dict(), indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        fsync_directory(path.parent)

    @classmethod
    def load(cls, path: Path) -> ClusterMap:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ConfigError(f"cluster map {path} does not exist") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"cluster map {path} is not valid JSON: {e}") from None
        except (ClusterError, ConfigError) as e:
            raise type(e)(f"{path}: {e}") from None


def _v1_to_v2(d: dict[str, Any]) -> dict[str, Any]:
    return {**d, "version": 2, "replication": d.get("replication", 1)}


def _v2_to_v3(d: dict[str, Any]) -> dict[str, Any]:
    # no slot of a version 2 map moves and its layout never changed: every writer's map
    # lists the owners a write must reach
    return {**d, "version": 3, "layout_epoch": 0}


# each step turns a map of version v into one of version v + 1
_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2,
                                                                    2: _v2_to_v3}


def _upgraded(d: dict[str, Any]) -> dict[str, Any]:
    version = d.get("version")
    # not isinstance: JSON true would pass for 1
    if type(version) is not int or version < 1:
        raise ClusterError(f"cluster map has no valid format version ({version!r})")
    if version > MAP_FORMAT_VERSION:
        raise ConfigError(
            f"cluster map format version {version} is newer than this dscluster reads "
            f"(1 to {MAP_FORMAT_VERSION}); upgrade dscluster on this machine"
        )
    while version < MAP_FORMAT_VERSION:
        d = _UPGRADES[version](d)
        version = d["version"]
    return d


"""The cluster map: one versioned value that says which node serves which slot.

It holds an ``epoch`` (a monotonic integer), the member nodes (index, peer id,
multiaddrs, state), the replication factor R and, for each of the 16384 slots, an ordered
owner list of R distinct member indexes (first = primary, the rest = replicas).

A map is never edited in place: every change builds the next map with ``epoch + 1``
(``ClusterMap.evolve``), so two maps with the same epoch are the same map.

On disk and on the wire the owner lists are run-length encoded as
``{"start": a, "end": b, "owners": [...]}`` with inclusive ends (as Redis Cluster prints
slot ranges).

The format is versioned. Version 2 always carries ``replication``, and every owner on a
slot's list serves it. Version 1, what releases before replication wrote, may lack
``replication`` (then 1) and had only primaries serve; every version 1 map a release
wrote has one owner per slot, so it means the same in version 2. Older maps are upgraded
as they are read (``_UPGRADES``) and written as version 2 the next time a map is saved.
A map of a newer version is refused: its fields may mean what this code cannot honour,
and guessing would misplace keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from .cluster.placement import check_replication, initial_owners
from .errors import ClusterError, ConfigError
from .keys import SLOT_COUNT, slot_of

MAP_FORMAT_VERSION = 2
PENDING = "pending"  # no node has claimed this member yet
JOINED = "joined"
MEMBER_STATES = (PENDING, JOINED)


@dataclass(frozen=True, slots=True)
class Member:
    index: int
    peer_id: str | None = None
    addrs: tuple[str, ...] = ()
    state: str = PENDING

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.peer_id, "swarm": list(self.addrs),
                "state": self.state}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Member:
        try:
            m = cls(int(d["index"]), d.get("id"), tuple(str(a) for a in d.get("swarm", ())),
                    str(d.get("state", PENDING)))
        except (KeyError, TypeError, ValueError) as e:
            raise ClusterError(f"invalid member entry in cluster map: {e}") from None
        if m.state not in MEMBER_STATES:
            raise ClusterError(f"invalid member state {m.state!r}")
        return m

    def describe(self) -> str:
        return f"node {self.index} ({self.peer_id or 'not joined yet'})"


@dataclass(frozen=True)
class ClusterMap:
    epoch: int
    members: tuple[Member, ...]
    owners: tuple[tuple[int, ...], ...]  # one owner list per slot
    replication: int = 1
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
            if not owners or any(not 0 <= o < n for o in owners) \
                    or len(set(owners)) != len(owners):
                raise ClusterError(f"slot {s} has an invalid owner list {owners}")
            if len(owners) != self.replication:
                # the quorums (placement.py) are sized from R: they are majorities only
                # of exactly R owners
                raise ClusterError(f"slot {s} has {len(owners)} owners {owners}; the map's "
                                   f"replication factor is {self.replication}")

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
        """The members a write to ``slot`` goes to: every owner."""
        return self.owners[slot]

    def read_set(self, slot: int) -> tuple[int, ...]:
        """The members a read of ``slot`` may ask, in the order to ask them (primary
        first, so that reads of one slot land on one node while it is up)."""
        return self.owners[slot]

    def owns(self, index: int, slot: int) -> bool:
        """Whether member ``index`` holds a replica of ``slot``."""
        return index in self.owners[slot]

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
        return tuple(sorted({o for s in range(SLOT_COUNT) for o in self.read_set(s)}))

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        runs: list[dict[str, Any]] = []
        for s, owners in enumerate(self.owners):
            if runs and runs[-1]["owners"] == list(owners):
                runs[-1]["end"] = s
            else:
                runs.append({"start": s, "end": s, "owners": list(owners)})
        return {
            "version": MAP_FORMAT_VERSION,
            "epoch": self.epoch,
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
            for run in d["slots"]:
                start, end = int(run["start"]), int(run["end"])
                if not 0 <= start <= end < SLOT_COUNT:
                    raise ClusterError(f"invalid slot range {start}-{end}")
                ol = tuple(int(o) for o in run["owners"])
                for s in range(start, end + 1):
                    owners[s] = ol
            return cls(int(d["epoch"]), members, tuple(owners), int(d["replication"]))
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
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

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


# each step turns a map of version v into one of version v + 1
_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


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


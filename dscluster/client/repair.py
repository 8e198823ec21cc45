"""Repair as a client asks for it: ``dsclient repair`` and the agreement in ``status``.

A client cannot compare replicas itself without reading every key, so it asks the
owners: ``Repair`` makes each owner of a slot run an anti-entropy pass now (each pulls
what the others hold newer, cluster/repair.py), and ``SlotDigests`` tells whether the
owners of a slot hold the same records. Slots go in chunks so that progress moves and
no single request runs long; a member that cannot be reached is reported, not fatal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import Any

from .. import wire
from ..cluster.caller import MemberCaller
from ..cluster.replica import DIGEST_BYTES
from ..clustermap import JOINED, ClusterMap
from ..concurrency import open_nursery
from ..errors import RemoteProtocolError, Unavailable
from ..keys import SLOT_COUNT, slot_ranges

# slots per Repair request: small enough that the progress bar moves
REPAIR_CHUNK = 1024


async def repair_slots(caller: MemberCaller, slots: Sequence[int],
                       on_progress: Callable[[int], None]) -> dict[str, Any]:
    """Run a repair pass on every owner of ``slots``, a chunk at a time; ``on_progress``
    gets the number of slots of each chunk done. Answers ``{"slots", "differing"
    (slots in which some owner found a difference), "pulled" (keys copied), "bytes",
    "unreachable" ({member: why})}``."""
    ordered = sorted(set(slots))
    differing: set[int] = set()
    unreachable: dict[int, str] = {}
    totals = {"pulled": 0, "bytes": 0}

    async def one(member: int, mine: list[int]) -> None:
        try:
            # a pass takes as long as it takes: the node paces it, not our request timeout
            ans = await caller.ask(member, wire.Repair(slots=slot_ranges(mine)), timeout=math.inf)
        except Unavailable as e:
            unreachable.setdefault(member, str(e))
            return
        if not isinstance(ans, wire.RepairReport):
            raise RemoteProtocolError(f"node {member} answered Repair with "
                                      f"{type(ans).__name__}")
        report = ans.report
        totals["pulled"] += int(report.get("pulled", 0))
        totals["bytes"] += int(report.get("bytes", 0))
        for first, end in report.get("differing_slots", ()):
            differing.update(range(first, end))
        why = report.get("why_unreachable", {})
        for peer in report.get("peers_unreachable", ()):
            unreachable.setdefault(int(peer), f"unreachable from node {member}: "
                                   + str(why.get(str(peer), "no reason given")))

    for i in range(0, len(ordered), REPAIR_CHUNK):
        chunk = ordered[i:i + REPAIR_CHUNK]
        async with open_nursery() as n:
            for member, mine in _per_owner(caller.state.map, chunk).items():
                n.start_soon(one, member, mine)
        on_progress(len(chunk))
    return {"slots": len(ordered), "differing": len(differing), **totals,
            "unreachable": dict(sorted(unreachable.items()))}


async def disagreeing_slots(caller: MemberCaller) -> set[int]:
    """The slots with two or more owners that answered and hold different records (a
    write that missed an owner, or one in flight). Owners that do not answer are left
    out: the map's slot health already counts them."""
    cmap = caller.state.map
    digests: dict[int, dict[int, bytes]] = {}

    async def one(member: int, mine: list[int]) -> None:
        try:
            ans = await caller.ask(member, wire.SlotDigests(slots=slot_ranges(mine)))
        except Unavailable:
            return
        if not (isinstance(ans, wire.Digests) and len(ans.digests) == DIGEST_BYTES * len(mine)):
            raise RemoteProtocolError(f"node {member} answered SlotDigests with "
                                      f"{type(ans).__name__} of the wrong size")
        for j, s in enumerate(mine):
            digests.setdefault(s, {})[member] = ans.digests[j * DIGEST_BYTES:
                                                            (j + 1) * DIGEST_BYTES]

    async with open_nursery() as n:
        for member, mine in _per_owner(cmap, range(SLOT_COUNT)).items():
            if cmap.members[member].state == JOINED:
                n.start_soon(one, member, mine)
    return {s for s, held in digests.items() if len(set(held.values())) > 1}


def slot_health(cmap: ClusterMap, up: Collection[int],
                disagreeing: Collection[int]) -> dict[str, int]:
    """The map's slot health (ok, under_replicated, unavailable) with the slots whose
    owners are all up but disagree counted as under-replicated, plus the number of
    slots whose owners disagree as ``disagreeing``."""
    health = cmap.slot_health(up)
    all_up = sum(all(o in up for o in cmap.owners[s]) for s in disagreeing)
    health["ok"] -= all_up
    health["under_replicated"] += all_up
    health["disagreeing"] = len(disagreeing)
    return health


def _per_owner(cmap: ClusterMap, slots: Sequence[int]) -> dict[int, list[int]]:
    """Each member with its slots among ``slots``, leaving out slots with a single
    owner: it has no one to compare with."""
    out: dict[int, list[int]] = {}
    for s in slots:
        owners = cmap.write_set(s)  # a moving slot's targets too
        if len(owners) > 1:
            for o in owners:
                out.setdefault(o, []).append(s)
    return out

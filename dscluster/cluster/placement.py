"""Where a slot's replicas go: the owner lists of a fresh cluster map.

Theory of operation. Primaries split the slots in even contiguous ranges, as Redis
Cluster's create does (and as every map before replication did, so R=1 gives exactly
the old maps). Each primary's range is then cut into N-1 equal parts, and part c takes
its R-1 replicas from the other members in ring order starting c places after the
primary. So:

- every slot has R distinct owners, and losing any one node leaves every slot R-1;
- the slots a dead node was primary for fall back to N-1 different peers (one per
  part), not to one neighbour — its load spreads, as DESIGN.md asks;
- no node holds all the replicas of another node's range (for N > R).

Every member owns (as primary or replica) R/N of the slots, within one slot per part.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..keys import SLOT_COUNT

Owners = tuple[tuple[int, ...], ...]


def check_replication(node_count: int, replication: int) -> None:
    if replication < 1:
        raise ConfigError(f"the replication factor must be at least 1, not {replication}")
    if replication > node_count:
        raise ConfigError(f"a replication factor of {replication} needs at least "
                          f"{replication} nodes; this cluster has {node_count}")


def default_replication(node_count: int) -> int:
    """min(3, N): three copies survive any one loss with a majority left (W=2 of 3),
    and a smaller cluster keeps a copy on every node."""
    return min(3, node_count)


def initial_owners(node_count: int, replication: int = 1) -> Owners:
    if node_count < 1:
        raise ConfigError("a cluster needs at least one node")
    if node_count > SLOT_COUNT:
        raise ConfigError(f"a cluster has at most {SLOT_COUNT} nodes")
    check_replication(node_count, replication)
    owners: list[tuple[int, ...]] = []
    parts = max(1, node_count - 1)
    for p in range(node_count):
        lo, hi = p * SLOT_COUNT // node_count, (p + 1) * SLOT_COUNT // node_count
        ring = [(p + k) % node_count for k in range(1, node_count)]
        for j in range(hi - lo):
            c = j * parts // (hi - lo)
            replicas = [ring[(c + t) % len(ring)] for t in range(replication - 1)]
            owners.append((p, *replicas))
    return tuple(owners)


def owner_quorum(replication: int) -> int:
    """Owners that must apply a write before it is acknowledged: ⌈R/2⌉."""
    return (replication + 1) // 2


def durable_quorum(replication: int) -> int:
    """Nodes that must hold a write durably (owners, or hint holders for owners that are
    down) before it is acknowledged: ⌊R/2⌋+1, a majority. With an odd R the owners
    alone make it; with R=2 one owner and a hint elsewhere do, so one node down does
    not stop writes and every acknowledged write still lives on two nodes."""
    return replication // 2 + 1


def read_quorum(replication: int) -> int:
    """Owners a read of a mutable key asks: ⌊R/2⌋+1, so that it meets every set of
    ⌈R/2⌉ owners a write reached. While fewer are up it makes do with ⌈R/2⌉ (so R=2
    reads on with one owner down; doc/architecture.md says what that costs)."""
    return replication // 2 + 1


# -- rebalancing ------------------------------------------------------------------------
# A plan is the owner lists a rebalance moves to. It changes as few slot replicas as the
# fair shares allow: a member is taken off a slot only while it holds more than its share
# and only for a member that holds less (or for one that is leaving), so the replicas
# moved are exactly the excess. Primaries are then balanced by reordering owner lists,
# which moves no data. Shares are weighted (largest remainder, so they sum exactly and
# each member is within one slot of its exact share), and a member never holds a slot
# twice, so a plan always keeps R distinct owners per slot.


def shares(total: int, weights: dict[int, float], cap: int = SLOT_COUNT,
           held: dict[int, int] | None = None) -> dict[int, int]:
    """``total`` split in proportion to ``weights`` (largest remainder), none above
    ``cap``: a member cannot hold a slot twice, so the excess of a very heavy member goes
    to the others. Among equal remainders the members that ``held`` more get the odd
    slots, so that a balanced layout plans no move."""
    held = held or {}
    result: dict[int, int] = {}
    free = {i: w for i, w in weights.items() if w > 0}
    remaining = total
    while True:
        wsum = sum(free.values())
        exact = {i: remaining * w / wsum for i, w in free.items()}
        capped = [i for i, x in exact.items() if x > cap]
        if not capped:
            break
        for i in capped:
            result[i] = cap
            remaining -= cap
            del free[i]
    floors = {i: int(x) for i, x in exact.items()}
    left = remaining - sum(floors.values())
    for i in sorted(free, key=lambda i: (floors[i] - exact[i], -held.get(i, 0), i))[:left]:
        floors[i] += 1
    result.update(floors)
    return result


def plan(current: Owners, weights: dict[int, float], replication: int) -> Owners:
    """The owner lists over the members of ``weights`` (index -> weight > 0) closest to
    ``current`` in which every member holds its share of slot replicas and of primaries."""
    active = sorted(i for i, w in weights.items() if w > 0)
    if len(active) < replication:
        raise ConfigError(f"a replication factor of {replication} needs at least "
                          f"{replication} members to hold slots; {len(active)} would")
    held: dict[int, int] = {}
    primaries: dict[int, int] = {}
    for owners in current:
        for o in owners:
            held[o] = held.get(o, 0) + 1
        primaries[owners[0]] = primaries.get(owners[0], 0) + 1
    quota = shares(SLOT_COUNT * replication, weights, held=held)
    sets = [[o for o in owners if o in quota] for owners in current]
    count = dict.fromkeys(active, 0)
    for s in sets:
        for o in s:
            count[o] += 1
    # members that leave leave holes; the members furthest below their share fill them
    for s in sets:
        while len(s) < replication:
            pick = max((i for i in active if i not in s),
                       key=lambda i: (quota[i] - count[i], -i))
            s.append(pick)
            count[pick] += 1
    _transfer(sets, count, quota)
    return _order_primaries(sets, current, shares(SLOT_COUNT, weights, held=primaries),
                            active)


def _transfer(sets: list[list[int]], count: dict[int, int], quota: dict[int, int]) -> None:
    """Move replicas from members above their share to members below it, one per slot
    changed. A receiver keeps taking from the same donor while it can, so what moves is
    long runs of slots (a short map) rather than every other slot."""
    for r in sorted(count, key=lambda i: (count[i] - quota[i], i)):
        donor: int | None = None
        for s in sets:
            if count[r] >= quota[r]:
                break
            if r in s:
                continue
            if donor is None or donor not in s or count[donor] <= quota[donor]:
                over = [o for o in s if count[o] > quota[o]]
                if not over:
                    continue
                donor = max(over, key=lambda o: (count[o] - quota[o], -o))
            s[s.index(donor)] = r
            count[donor] -= 1
            count[r] += 1


def _order_primaries(sets: list[list[int]], current: Owners, pquota: dict[int, int],
                     active: list[int]) -> Owners:
    """Each slot's owners with a primary chosen so that primaries are shared like slots:
    the current primary stays while it is within its share, and the replicas keep their
    current order (new ones last). Consecutive slots prefer the same primary, so that
    the map stays a few long runs."""
    pcount = dict.fromkeys(active, 0)
    firsts: list[int] = []
    prev: int | None = None
    for s, owners in zip(sets, current, strict=True):
        keep = owners[0] if owners and owners[0] in s else None
        if keep is not None and pcount[keep] < pquota[keep]:
            first = keep
        elif prev in s and pcount[prev] < pquota[prev]:
            first = prev
        else:
            first = max(s, key=lambda i: (pquota[i] - pcount[i], -i))
        pcount[first] += 1
        firsts.append(first)
        prev = first

    def excess(i: int) -> int:
        return pcount[i] - pquota[i]

    # Levelling: a primary hands a slot to a co-owner at least two below it (relative to
    # their shares). Chains settle over passes (above -> at share -> below), and every
    # hand-over lowers the sum of squared excesses, so the passes end.
    for _ in range(64):
        moved = False
        for k, s in enumerate(sets):
            p = firsts[k]
            q = min(s, key=lambda o: (excess(o), o))
            if excess(p) - excess(q) >= 2:
                firsts[k] = q
                pcount[p] -= 1
                pcount[q] += 1
                moved = True
        if not moved:
            break
    out = []
    for s, owners, first in zip(sets, current, firsts, strict=True):
        rank = {o: i for i, o in enumerate(owners)}
        rest = sorted((o for o in s if o != first), key=lambda o: rank.get(o, len(rank)))
        out.append((first, *rest))
    return tuple(out)

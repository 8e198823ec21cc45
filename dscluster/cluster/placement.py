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

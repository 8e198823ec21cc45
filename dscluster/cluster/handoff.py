"""A member forgets the slots it handed over: once a map no longer lists it as an owner
or target of a slot, the slot's keys and records go from its store.

Only a finished move or an abort takes a member off a slot, and a move is finished only
after the new owners copied the slot (cluster/rebalance.py); maps only move forward, so
a slot this member does not own in its current map is never its own again without a new
move that copies it back. Until then it holds nothing of the slot to serve stale: a
client whose map still sends it there gets a redirect.
"""

from __future__ import annotations

import logging

from ..keys import SLOT_COUNT
from .replica import ReplicaStore
from .state import ClusterState

log = logging.getLogger(__name__)


async def drop_handed_over(replica: ReplicaStore, state: ClusterState, index: int) -> int:
    """Drop every slot this replica holds that the current map does not give ``index``;
    how many keys went."""
    cmap = state.map
    dropped = slots = 0
    for s in range(SLOT_COUNT):
        if replica.holds(s) and not cmap.owns(index, s):
            dropped += await replica.drop_slot(s, lambda s=s: not state.map.owns(index, s))
            slots += 1
    if slots:
        log.info("dropped %d keys of %d slots handed over to other members (map epoch %d)",
                 dropped, slots, cmap.epoch)
    return dropped


async def follow_handoffs(replica: ReplicaStore, state: ClusterState, index: int) -> None:
    """At start and after every map change, until cancelled."""
    while True:
        await drop_handed_over(replica, state, index)
        await state.wait_changed()

"""A node's (or client's) current view of the cluster map.

Maps only move forward: ``offer`` accepts a map only if its epoch is higher than the
one held, persists it (so a restarted node or client starts from what it last knew)
and wakes everyone waiting for a change.
"""

from __future__ import annotations

import logging
from pathlib import Path

import trio

from ..clustermap import ClusterMap

log = logging.getLogger(__name__)


class ClusterState:
    def __init__(self, cmap: ClusterMap, path: Path | None = None) -> None:
        self.map = cmap
        self._path = path
        self._changed = trio.Event()

    @property
    def epoch(self) -> int:
        return self.map.epoch

    def offer(self, cmap: ClusterMap) -> bool:
        """Adopt ``cmap`` if it is newer; returns whether it was adopted."""
        if cmap.epoch <= self.map.epoch:
            return False
        log.info("cluster map epoch %d -> %d", self.map.epoch, cmap.epoch)
        self.map = cmap
        if self._path is not None:
            cmap.save(self._path)
        self._changed.set()
        self._changed = trio.Event()
        return True

    async def wait_changed(self) -> None:
        await self._changed.wait()

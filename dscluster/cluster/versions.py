"""Versions of stored records: a hybrid logical clock stamp and the writer's id.

Theory of operation. Every write of a key (a value or a delete's tombstone) carries a
``Version``; replicas keep the highest one they saw and last writer wins. The stamp is
a hybrid logical clock (Kulkarni et al.): milliseconds of wall-clock time in the high
bits, a counter in the low 16, so stamps from one clock are strictly increasing even
within a millisecond and never go back when the wall clock does. The writer's id breaks
ties between different writers in the same millisecond.

A clock that runs ahead would let an old write win over newer ones; two rules bound
that (doc/architecture.md, "Replication"):

- a node refuses a new write stamped more than ``MAX_AHEAD_MS`` ahead of its own clock;
- a replica that holds a newer version refuses an older new write and says which version
  it holds; the writer restamps above it and writes again. Write quorums intersect, so a
  write that starts after another was acknowledged always lands above it, whatever the
  clocks say.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

LOGICAL_BITS = 16
# how far ahead of a node's clock a new write may be stamped
MAX_AHEAD_MS = 5 * 60 * 1000
# a writer id is a peer id (52 characters) or a client's random id; bounded on the wire
MAX_WRITER_CHARS = 64


@dataclass(frozen=True, slots=True, order=True)
class Version:
    hlc: int
    writer: str

    def to_wire(self) -> list[int | str]:
        return [self.hlc, self.writer]

    @property
    def wall_ms(self) -> int:
        return self.hlc >> LOGICAL_BITS

    def describe(self) -> str:
        return f"{self.hlc >> LOGICAL_BITS}.{self.hlc & ((1 << LOGICAL_BITS) - 1)}@{self.writer}"


# what a key no one ever wrote (or data stored before versions existed) has
ZERO = Version(0, "")


class HybridClock:
    def __init__(self, writer: str, wall: Callable[[], float] = time.time) -> None:
        self.writer = writer
        self._wall = wall
        self._last = 0

    def wall_hlc(self) -> int:
        return int(self._wall() * 1000) << LOGICAL_BITS

    def now(self) -> Version:
        self._last = max(self._last + 1, self.wall_hlc())
        return Version(self._last, self.writer)

    def above(self, v: Version) -> Version:
        """A stamp newer than ``v`` (and than anything this clock gave before)."""
        self.observe(v)
        return self.now()

    def observe(self, v: Version) -> None:
        self._last = max(self._last, v.hlc)

    def too_far_ahead(self, v: Version) -> int | None:
        """How many ms ``v`` is ahead of this clock beyond the allowed skew, or None."""
        ahead = v.wall_ms - (self.wall_hlc() >> LOGICAL_BITS)
        return ahead if ahead > MAX_AHEAD_MS else None

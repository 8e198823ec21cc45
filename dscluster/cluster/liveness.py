"""Which members answer: a view kept from request outcomes and pings.

Theory of operation. Liveness changes where requests go, never the map (DESIGN.md): the
map changes only by membership operations. Every answer marks its member up; a failure
to reach it marks it down. A member marked down is not dialed again for ``retry_after``
seconds — requests to it fail at once, naming why and since when, instead of each
waiting out a connect timeout (a black-holed node costs one timeout, not one per
request). After that the next request tries again: an answer lifts the mark, another
failure renews it. Nodes also ping each other (cluster/caller.py ``watch``), so a node's
view is current even for members it has no requests for, and ``dsclient status`` shows
every node's view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio

# as long as one dial may take (the default connect timeout): a member that did not
# answer is not dialed again within the same operation; nodes' pings (which ignore the
# mark) notice its return within a ping interval
RETRY_AFTER = 5.0
UP, DOWN, UNKNOWN = "up", "down", "unknown"


@dataclass(slots=True)
class _Down:
    since: float
    retry_at: float
    why: str


class Liveness:
    def __init__(self, *, retry_after: float = RETRY_AFTER,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.retry_after = retry_after
        self._clock = clock
        self._up: set[int] = set()
        self._down: dict[int, _Down] = {}

    def reachable(self, index: int) -> None:
        self._down.pop(index, None)
        self._up.add(index)

    def unreachable(self, index: int, why: str) -> None:
        now = self._clock()
        was = self._down.get(index)
        since = was.since if was is not None else now
        self._down[index] = _Down(since, now + self.retry_after, why)
        self._up.discard(index)

    def forget(self, index: int) -> None:
        """Drop what is known of ``index``: another peer now holds it (a replacement)."""
        self._down.pop(index, None)
        self._up.discard(index)

    def refusal(self, index: int) -> str | None:
        """Why a request to ``index`` should fail now without dialing, or None to try."""
        d = self._down.get(index)
        if d is None or self._clock() >= d.retry_at:
            return None
        return f"down for {self._clock() - d.since:.1f}s: {d.why}"

    def state(self, index: int) -> str:
        return DOWN if index in self._down else UP if index in self._up else UNKNOWN

    def view(self) -> dict[str, list[int]]:
        """The members this view knows about, as lists (a wire map may hold only a few
        entries, a list many): ``{"up": [...], "down": [...]}``."""
        return {UP: sorted(self._up), DOWN: sorted(self._down)}

from __future__ import annotations

from dscluster.cluster.liveness import Liveness
from dscluster.clustermap import ClusterMap


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_member_marked_down_fails_fast_until_it_is_worth_trying_again():
    clock = Clock()
    live = Liveness(retry_after=1.0, clock=clock)
    assert live.refusal(2) is None and live.state(2) == "unknown"
    live.unreachable(2, "connection refused")
    clock.now += 0.4
    why = live.refusal(2)
    assert why is not None and "connection refused" in why and "0.4s" in why
    clock.now += 0.7  # past retry_after: the next request dials again
    assert live.refusal(2) is None
    live.unreachable(2, "still refused")  # renewed, and "down for" counts from the first
    clock.now += 0.5
    assert "down for 1.6s: still refused" in (live.refusal(2) or "")
    live.reachable(2)
    assert live.refusal(2) is None and live.state(2) == "up"
    assert live.view() == {"up": [2], "down": []}


def test_slot_health_counts_owners_up():
    m = ClusterMap.initial(3)
    assert m.slot_health({0, 1, 2}) == {"ok": 16384, "under_replicated": 0, "unavailable": 0}
    assert m.slot_health({0, 1}) == {"ok": 10922, "under_replicated": 0, "unavailable": 5462}
    r = ClusterMap.initial(3, 2)
    assert r.slot_health({0, 1}) == {"ok": 5461, "under_replicated": 10923, "unavailable": 0}
    assert r.slot_health({0}) == {"ok": 0, "under_replicated": 10922, "unavailable": 5462}

"""The admission controller (net/admission.py) and the descriptor budget, without sockets
(tests that evict run under trio, on its clock: cancelling a scope needs it)."""

from __future__ import annotations

import math
import resource
from collections.abc import Callable

import pytest
import trio

from dscluster.errors import ConfigError
from dscluster.limits import FD_RESERVED, ConnectionLimits, fd_budget, fd_share
from dscluster.net.admission import AdmissionControl, Refused, Ticket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def control(*, clock: Callable[[], float] | None = None, **limits: float) -> AdmissionControl:
    return AdmissionControl(ConnectionLimits(**limits), name="test",  # type: ignore[arg-type]
                            clock=clock or Clock())


def admit(c: AdmissionControl, source: str, *, speak: bool = False) -> Ticket:
    t = c.admit_unauthenticated(source)
    assert isinstance(t, Ticket), t
    if speak:
        t.heard_from()
    return t


def test_a_ticket_must_authenticate_within_the_preauth_timeout():
    c = control(preauth_timeout=3)
    t = admit(c, "10.0.0.1")
    assert t.deadline == t.scope.deadline == 103.0
    assert t.promote("client")
    assert t.scope.deadline == math.inf and t.authenticated
    assert (c.unauthenticated, c.clients) == (0, 1)


async def test_silent_connections_from_one_source_make_room_for_a_client_there():
    c = control(unauthenticated=100, unauthenticated_per_source=4, clock=trio.current_time)
    idle = [admit(c, "10.0.0.1") for _ in range(4)]
    client = admit(c, "10.0.0.1")  # the flood's address, and the cap is full
    assert idle[0].scope.cancel_called and not any(t.scope.cancel_called for t in idle[1:])
    client.heard_from()
    for _ in range(10):  # the flood goes on: it evicts itself, never the client
        admit(c, "10.0.0.1")
    assert not client.scope.cancel_called
    assert client.promote("client")
    assert c.evicted == 11 and c.unauthenticated == 3


def test_a_source_whose_connections_all_spoke_is_refused():
    c = control(unauthenticated=100, unauthenticated_per_source=2)
    talkers = [admit(c, "10.0.0.1", speak=True) for _ in range(2)]
    refused = c.admit_unauthenticated("10.0.0.1")
    assert isinstance(refused, Refused) and "10.0.0.1" in refused.reason
    assert isinstance(c.admit_unauthenticated("10.0.0.2"), Ticket)
    talkers[0].release()
    assert isinstance(c.admit_unauthenticated("10.0.0.1"), Ticket)


async def test_a_full_table_evicts_the_oldest_silent_connection_first():
    c = control(unauthenticated=3, unauthenticated_per_source=3, clock=trio.current_time)
    spoke = admit(c, "10.0.0.1", speak=True)
    silent = [admit(c, f"10.0.1.{i}") for i in range(2)]
    admit(c, "10.0.2.1", speak=True)
    assert silent[0].scope.cancel_called and not spoke.scope.cancel_called
    silent[1].heard_from()  # with no silent one left, the oldest goes
    newest = admit(c, "10.0.2.2", speak=True)
    assert spoke.scope.cancel_called and not newest.scope.cancel_called
    assert not spoke.promote("client")  # evicted: too late to authenticate
    assert c.unauthenticated == 3


def test_clients_cannot_take_the_members_reserve():
    c = control(authenticated=3, member_reserve=1)
    assert [admit(c, "a").promote("client") for _ in range(3)] == [True, True, False]
    assert [admit(c, "b").promote("node") for _ in range(2)] == [True, False]
    assert (c.clients, c.members) == (2, 1)


def test_members_may_use_all_authenticated_capacity():
    c = control(authenticated=3, member_reserve=1)
    members = [admit(c, "a") for _ in range(3)]
    assert all(t.promote("node") for t in members)
    assert not admit(c, "b").promote("readonly")
    members[0].release()
    assert admit(c, "b").promote("readonly")


def test_release_is_counted_once_and_a_refused_ticket_stays_unauthenticated():
    c = control(authenticated=2, member_reserve=1)
    t = admit(c, "a")
    assert t.promote("client")
    assert t.promote("client")  # a second stream on the same connection
    t.release()
    t.release()
    assert c.clients == 0
    first, second = admit(c, "a"), admit(c, "a")
    assert first.promote("client") and not second.promote("client")
    assert c.unauthenticated == 1
    second.release()
    assert c.unauthenticated == 0


@pytest.mark.parametrize(("bad", "match"), [
    ({"unauthenticated": 0}, "positive"),
    ({"member_reserve": 1024}, "member_reserve"),
    ({"unauthenticated": 8, "unauthenticated_per_source": 9}, "per_source"),
    ({"preauth_timeout": 0}, "preauth_timeout"),
])
def test_connection_limits_are_checked(bad, match):
    with pytest.raises(ConfigError, match=match):
        ConnectionLimits(**bad)
    with pytest.raises(ConfigError, match="unknown connections"):
        ConnectionLimits.from_dict({"bogus": 1})


def test_caps_shrink_to_the_descriptors_they_may_use():
    lim = ConnectionLimits()
    assert lim.within(100_000) is lim
    small = lim.within(128)
    assert small.unauthenticated + small.authenticated <= 128
    assert 0 < small.unauthenticated_per_source <= small.unauthenticated
    assert 0 <= small.member_reserve < small.authenticated
    # shares of the budget above what the store and outbound connections keep
    assert fd_share("lane", 20_000) == int((20_000 - FD_RESERVED) * 0.4)
    assert fd_share("gateway", 1024) == int(256 * 0.3)


def test_fd_budget_raises_the_soft_limit_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 64:
        pytest.skip("needs a finite hard limit")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard // 2, hard))
    try:
        assert fd_budget() == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

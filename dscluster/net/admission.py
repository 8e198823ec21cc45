"""Admission of inbound connections: who may hold a file descriptor, and for how long.

Why: an idle TCP connection costs an attacker nothing and a node a descriptor; 1,100 of
them filled the data lane's 1,024 slots and shut real clients out, 1,500 did the same to
libp2p. So an inbound connection is *unauthenticated* from accept until a stream on it
passes the handshake (server_handshake proves a role), and the two kinds have capacity
of their own (``limits.ConnectionLimits``, one controller per listener):

- An unauthenticated connection must authenticate within ``preauth_timeout`` of accept,
  TLS or Noise and yamux included, or the transport closes it. A source address holds
  at most ``unauthenticated_per_source`` of them, all sources ``unauthenticated``. When
  a cap is full, a newcomer takes the place of the oldest connection that has not sent
  a byte yet (a real client speaks first, at once: TLS's ClientHello, multistream's
  header), so idle connections never shut a client out, even from the same address.
  When all of one address's connections have spoken, more from it are refused; when
  all connections have spoken, the oldest is evicted, so a flood from many addresses
  only cycles the slots and a client has to finish its handshake (milliseconds) before
  ``unauthenticated`` more connections arrive.
- Authenticated connections: ``authenticated`` in all, of which ``member_reserve`` only
  nodes (role "node") may use, so clients (every other role: client, readonly, admin)
  cannot starve node-to-node traffic. A connection that proves a role when there is no
  room for it is refused (the server says so and closes it; a client then tries
  libp2p).

Sans-IO apart from trio's clock and one cancel scope per ticket: a transport admits a
connection at accept, calls ``heard_from`` when its first bytes arrive (at once if
``has_spoken``, so that no other admission can evict it in between) and does
everything for it inside ``ticket.scope``, whose deadline is the pre-auth deadline,
lifted by promotion; eviction cancels it. The transport releases the ticket when the
connection is closed.
"""

from __future__ import annotations

import logging
import math
import select
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..limits import ConnectionLimits
from ..logs import RateLimitedLog

MEMBER_ROLE = "node"
_evictions = RateLimitedLog(logging.getLogger(__name__))


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


@dataclass(frozen=True, slots=True)
class Unmetered:
    """The admission of a stream whose connection needs none (we dialed it, or it is
    authenticated already): only the stream's own handshake has a deadline."""

    deadline: float

    def promote(self, role: str) -> bool:
        return True


def has_spoken(sock: trio.socket.SocketType) -> bool:
    """Whether bytes (or the end) from the peer already wait on ``sock``: a real client's
    first message is usually there by the time its connection is admitted."""
    poll = select.poll()  # not select(): descriptors beyond 1023 are normal here
    poll.register(sock.fileno(), select.POLLIN)
    return bool(poll.poll(0))


def unmetered(timeout: float) -> Unmetered:
    return Unmetered(trio.current_time() + timeout)


class Ticket:
    """One admitted inbound connection; its streams see it as their ``base.Admission``."""

    __slots__ = ("_control", "_live", "deadline", "role", "scope", "source")

    def __init__(self, control: AdmissionControl, source: str, deadline: float) -> None:
        self._control = control
        self._live = True
        self.source = source
        self.deadline = deadline
        self.role: str | None = None
        self.scope = trio.CancelScope(deadline=deadline)

    @property
    def authenticated(self) -> bool:
        return self.role is not None

    def heard_from(self) -> None:
        """The peer has sent its first bytes: it is evicted only after every silent
        connection."""
        self._control.heard_from(self)

    def promote(self, role: str) -> bool:
        """A stream on this connection proved ``role``: count the connection as
        authenticated and lift its deadline; False if there is no room for it."""
        return self._control.promote(self, role)

    def release(self) -> None:
        self._control.release(self)


class AdmissionControl:
    def __init__(self, limits: ConnectionLimits, *, name: str,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.limits = limits
        self.name = name  # which listener, for log lines
        self._clock = clock
        # unauthenticated tickets, each dict in admission order (the oldest first): the
        # silent ones (nothing received yet), by source too, and those heard from
        self._silent: dict[Ticket, None] = {}
        self._silent_from: dict[str, dict[Ticket, None]] = {}
        self._heard: dict[Ticket, None] = {}
        self._per_source: Counter[str] = Counter()
        self.clients = 0
        self.members = 0
        self.evicted = 0
        self.refused = 0  # since start, for metrics (evictions are counted apart)

    @property
    def unauthenticated(self) -> int:
        return len(self._silent) + len(self._heard)

    def admit_unauthenticated(self, source: str) -> Ticket | Refused:
        lim = self.limits
        if self._per_source[source] >= lim.unauthenticated_per_source:
            silent = self._silent_from.get(source)
            if not silent:
                self.refused += 1
                return Refused(f"{lim.unauthenticated_per_source} unauthenticated "
                               f"connections from {source} already")
            self._evict(next(iter(silent)))
        elif self.unauthenticated >= lim.unauthenticated:
            self._evict(next(iter(self._silent or self._heard)))
        t = Ticket(self, source, self._clock() + lim.preauth_timeout)
        self._silent[t] = None
        self._silent_from.setdefault(source, {})[t] = None
        self._per_source[source] += 1
        return t

    def heard_from(self, t: Ticket) -> None:
        if t in self._silent:
            self._unsilence(t)
            self._heard[t] = None

    def promote(self, t: Ticket, role: str) -> bool:
        if t.role is not None:
            return True
        if not t._live:
            return False
        lim = self.limits
        room = self.clients + self.members < lim.authenticated and (
            role == MEMBER_ROLE or self.clients < lim.authenticated - lim.member_reserve)
        if not room:
            self.refused += 1
            return False
        self._forget(t)
        t.role = role
        if role == MEMBER_ROLE:
            self.members += 1
        else:
            self.clients += 1
        t.scope.deadline = math.inf
        return True

    def release(self, t: Ticket) -> None:
        if not t._live:
            return
        if t.role is None:
            self._forget(t)
        elif t.role == MEMBER_ROLE:
            self.members -= 1
        else:
            self.clients -= 1
        t._live = False

    def _evict(self, t: Ticket) -> None:
        self._forget(t)
        t._live = False
        t.scope.cancel()
        self.evicted += 1
        _evictions.info((self.name, "evicted"), "%s: closing unauthenticated connections "
                        "to make room (the latest from %s)", self.name, t.source)

    def _unsilence(self, t: Ticket) -> None:
        del self._silent[t]
        from_source = self._silent_from[t.source]
        del from_source[t]
        if not from_source:
            del self._silent_from[t.source]

    def _forget(self, t: Ticket) -> None:
        """Stop counting ``t`` as unauthenticated."""
        if t in self._silent:
            self._unsilence(t)
        else:
            del self._heard[t]
        self._per_source[t.source] -= 1
        if not self._per_source[t.source]:
            del self._per_source[t.source]

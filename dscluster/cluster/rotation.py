"""Rotating the cluster secret (`dsclient admin secret rotate`), with a grace period.

Theory of operation (the secrets themselves: keyring.py):

1. The bootstrapper (member 0) carries out every rotation, so that two never race; any
   other member relays the operator's request to it. It draws a new secret one
   generation higher and adopts it durably, with the grace's deadline and a switch time
   half way to it. A rotation is refused while the previous one's grace runs: a node
   holds two secrets, no more.
2. It writes the rotation record ``/.dscluster/secret``: the generation and the two
   times, never the secret, so the record tells that there is something to fetch and
   nothing more.
3. Every node reads the record every ``RELOAD_INTERVAL``; when it names a newer
   generation (or the read is refused, as for a node that was down during the whole
   grace), the node asks the members for the secret with SecretFetch, over libp2p. A
   node answers only a caller whose peer id, which libp2p's Noise handshake proves, is
   a joined member of its map: the old secret alone does not get the new one. The data
   lane does not identify its clients, so the request is refused there.
4. The bootstrapper waits until every serving member reports the new generation (Stats)
   or the switch time comes, and returns the new client, read-only and admin tokens to
   the operator (derived from the secret, which itself never leaves the nodes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import trio

from .. import wire
from ..auth import CLIENT_ROLES, Token, new_secret
from ..clustermap import JOINED
from ..datastore import Datastore
from ..errors import DSClusterError, InvalidArgument, NotFound, RemoteProtocolError
from ..keyring import Keyring, now_ms
from ..net.pool import ChannelPool
from ..net.tls import is_lane_addr
from .caller import MemberCaller
from .credentials import PREFIX, RELOAD_INTERVAL

log = logging.getLogger(__name__)
RECORD = f"{PREFIX}/secret"
FETCH_TIMEOUT = 10.0
MAX_GRACE_S = 30 * 86400
# how often the bootstrapper asks the members whether they hold the new secret yet, and
# for how long at most (within the operator's request timeout)
WAIT_INTERVAL = 0.5
MAX_WAIT = 20.0
# while the record cannot be read, how often the members are asked anyway: the read is
# refused to a node whose secret was rotated while it was down, and fails too while
# the record's owners are down, when asking every member every reload would be waste
UNREAD_FETCH_INTERVAL = 10.0


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


class SecretRotation:
    def __init__(self, keyring: Keyring, ds: Datastore, caller: MemberCaller,
                 pool: ChannelPool, index: int,
                 on_new: Callable[[], Awaitable[None]]) -> None:
        self.keyring = keyring
        self.ds = ds
        self.caller = caller
        # dials libp2p addresses only: SecretFetch is refused over the data lane
        self.pool = pool
        self.index = index
        # the credential book's reload, which seals records again under the new secret
        self.on_new = on_new
        self._lock = trio.Lock()

    # -- the operator's request ---------------------------------------------------------
    async def rotate(self, grace: str) -> dict[str, Any]:
        try:
            grace_s = float(grace)
        except ValueError:
            grace_s = -1.0
        if not 0 <= grace_s <= MAX_GRACE_S:
            raise InvalidArgument(f"the grace period must be 0 to {MAX_GRACE_S} seconds, "
                                  f"not {grace!r}")
        if self.index != 0:
            ans = await self.caller.ask(0, wire.Admin(action="secret-rotate",
                                                      args={"grace": grace}))
            if not isinstance(ans, wire.AdminResult):
                raise RemoteProtocolError(f"node 0 answered Admin with {type(ans).__name__}")
            return ans.result
        async with self._lock:
            now = now_ms()
            k = self.keyring
            if k.in_grace(now):
                raise InvalidArgument(f"the grace of the last rotation runs until "
                                      f"{_iso(k.deadline_ms)}; rotate again after it")
            grace_ms = round(grace_s * 1000)
            k.adopt(k.generation + 1, new_secret(), now + grace_ms // 2, now + grace_ms)
            log.info("rotated the cluster secret to generation %d; the previous one works "
                     "until %s", k.generation, _iso(k.deadline_ms))
            await self._publish()
            await self.on_new()
            pending = await self._wait_for_members(k.generation)
        return {"generation": k.generation, "deadline_ms": k.deadline_ms,
                "tokens": {role: Token.for_role(k.secret, role).encode()
                           for role in CLIENT_ROLES},
                "pending": pending}

    async def _wait_for_members(self, generation: int) -> list[str]:
        """The serving members that do not hold ``generation`` yet when it is time for
        the nodes to switch (or, with no grace, at once), or after MAX_WAIT; one that
        does not answer is not waited for (it fetches the secret when it is back)."""
        pending = {i for i in self.caller.state.map.serving_members() if i != self.index}
        down: set[int] = set()
        until = min(self.keyring.switch_ms, now_ms() + round(MAX_WAIT * 1000))
        with trio.move_on_after(max(0, until - now_ms()) / 1000):
            while pending:
                for i in sorted(pending):
                    try:
                        # once, and at once for a member known to be down
                        ans = await self.caller.try_member(i, wire.Stats())
                    except DSClusterError:
                        down.add(i)
                        pending.discard(i)
                        continue
                    if (isinstance(ans, wire.StatsData)
                            and ans.stats.get("secret_generation", -1) >= generation):
                        pending.discard(i)
                if pending:
                    await trio.sleep(WAIT_INTERVAL)
        return [self.caller.state.map.members[i].describe() for i in sorted(pending | down)]

    async def _publish(self) -> None:
        k = self.keyring
        await self.ds.put(RECORD, msgpack.packb({
            "v": 1, "generation": k.generation, "switch_ms": k.switch_ms,
            "deadline_ms": k.deadline_ms}))

    # -- every node ---------------------------------------------------------------------
    def answer(self, asked: wire.SecretFetch) -> wire.SecretData:
        """For a member (the server checked the caller's peer id)."""
        k = self.keyring
        return wire.SecretData(generation=k.generation,
                               secret=k.secret if k.generation > asked.generation else b"",
                               switch_ms=k.switch_ms, deadline_ms=k.deadline_ms)

    async def follow(self) -> None:
        """Fetch the secret of every rotation the record announces (runs forever)."""
        last_blind = -float("inf")
        while True:
            try:
                recorded = await self._recorded()
            except DSClusterError as e:
                log.debug("could not read the rotation record: %s", e)
                if trio.current_time() - last_blind >= UNREAD_FETCH_INTERVAL:
                    last_blind = trio.current_time()
                    await self._fetch()
            else:
                if recorded > self.keyring.generation:
                    await self._fetch()
                elif recorded < self.keyring.generation and self.index == 0:
                    await self._publish()  # the write after a rotation failed
            await trio.sleep(RELOAD_INTERVAL)

    async def _recorded(self) -> int:
        try:
            d = msgpack.unpackb(await self.ds.get(RECORD))
        except NotFound:
            return 0
        except (ValueError, msgpack.UnpackException):
            d = None
        if not (isinstance(d, dict) and isinstance(d.get("generation"), int)):
            log.warning("ignoring the rotation record %s: not one this node reads", RECORD)
            return self.keyring.generation
        return int(d["generation"])

    async def _fetch(self) -> bool:
        """Ask the members, the bootstrapper first, for a newer secret; whether one was
        adopted."""
        cmap = self.caller.state.map
        for m in cmap.members:
            p2p = [a for a in m.addrs if not is_lane_addr(a)]
            if m.index == self.index or m.state != JOINED or not m.peer_id or not p2p:
                continue
            try:
                with trio.fail_after(FETCH_TIMEOUT):
                    async with self.pool.channel(m.peer_id, p2p) as chan:
                        ans = await chan.request(
                            wire.SecretFetch(generation=self.keyring.generation))
            except (DSClusterError, trio.TooSlowError) as e:
                log.debug("could not ask %s for the cluster secret: %s", m.describe(), e)
                await self.pool.forget(m.peer_id)
                continue
            if not (isinstance(ans, wire.SecretData) and ans.secret):
                continue
            k = self.keyring
            if k.adopt(ans.generation, ans.secret, ans.switch_ms, ans.deadline_ms):
                log.info("took the cluster secret of generation %d from %s; the previous "
                         "one works until %s", k.generation, m.describe(),
                         _iso(k.deadline_ms))
                await self.on_new()
                return True
        return False

"""A data node's side of membership: join through the bootstrapper, then follow the map.

A node is given one member's multiaddr (``--bootstrapper``), its *contact*: any live
member will do. Only the bootstrapper (always member 0) takes joins, so the node asks
the contact for the map and sends Join to member 0 of it, over libp2p (the data lane
does not identify the caller). It joins as the member its config names, as a new
member (it then records the index it was given), or in a dead member's place.

A node that has never joined must reach the bootstrapper before it can serve, so it
retries for a while and then stops with a clear error. A node that has a cached map it
appears in starts from it and re-announces itself, briefly before it serves and then in
the background, so a restart does not depend on the bootstrapper being up. Afterwards
the node polls the contact for newer epochs. A node the bootstrapper refuses, or whose
index the map gives to another peer (it was replaced), stops: two nodes must never
serve one member.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from .. import wire
from ..clustermap import ClusterMap
from ..errors import (
    ClusterError,
    DSClusterError,
    Forbidden,
    InvalidArgument,
    Unauthorized,
    Unavailable,
)
from ..net.pool import ChannelPool
from ..net.tls import is_lane_addr
from .bootstrapper import NEW_MEMBER
from .state import ClusterState

log = logging.getLogger(__name__)
FOLLOW_INTERVAL = 2.0
JOIN_RETRY = 0.5


class Membership:
    def __init__(self, pool: ChannelPool, contact: tuple[str, Sequence[str]], peer_id: str,
                 index: int | None, addrs: Sequence[str], request_timeout: float, *,
                 replace: bool = False) -> None:
        self.pool = pool
        self.contact_peer, self.contact_addrs = contact
        self.peer_id = peer_id
        self.index = index  # None: a new member, until the bootstrapper gives it one
        self.replace = replace
        self.addrs = list(addrs)
        self.timeout = request_timeout
        self._desk_peer: str | None = None

    async def _ask(self, msg: wire.Message,
                   to: tuple[str, Sequence[str]] | None = None) -> wire.MapData:
        peer, addrs = to or (self.contact_peer, self.contact_addrs)
        with trio.fail_after(self.timeout):
            async with self.pool.channel(peer, addrs) as chan:
                ans = await chan.request(msg)
        assert isinstance(ans, wire.MapData)
        return ans

    async def _desk(self) -> tuple[str, Sequence[str]]:
        """Where joins go: the bootstrapper, member 0 of the contact's map."""
        ans = await self._ask(wire.GetMap(known_epoch=0))
        boot = None if ans.map is None else ClusterMap.from_dict(ans.map).members[0]
        if boot is None or boot.peer_id in (None, self.contact_peer):
            return self.contact_peer, self.contact_addrs
        p2p = [a for a in boot.addrs if not is_lane_addr(a)]
        if not p2p:
            raise Unavailable(f"the map lists no libp2p address of the bootstrapper "
                              f"{boot.peer_id}")
        self._desk_peer = boot.peer_id
        return boot.peer_id, p2p

    async def join_once(self) -> ClusterMap:
        desk = await self._desk()
        index = NEW_MEMBER if self.index is None else self.index
        ans = await self._ask(wire.Join(index=index, addrs=self.addrs, replace=self.replace),
                              desk)
        assert ans.map is not None
        cmap = ClusterMap.from_dict(ans.map)
        me = cmap.member_by_peer(self.peer_id)
        if me is None or self.index not in (None, me.index):
            raise ClusterError(f"the bootstrapper accepted this node's join, but its map "
                               f"lists {self.peer_id} as {me.describe() if me else 'no member'}")
        self.index = me.index
        self.replace = False  # in its place now: later joins only re-announce it
        return cmap

    async def _forget(self) -> None:
        await self.pool.forget(self.contact_peer)
        if self._desk_peer is not None:
            await self.pool.forget(self._desk_peer)

    async def join(self, deadline_s: float) -> ClusterMap:
        """Join, retrying while the bootstrapper is unreachable, for ``deadline_s``."""
        last: Exception | None = None
        with trio.move_on_after(deadline_s):
            while True:
                try:
                    return await self.join_once()
                except (Forbidden, InvalidArgument, Unauthorized):
                    raise  # the bootstrapper said no: retrying will not change that
                except (DSClusterError, trio.TooSlowError) as e:
                    last = e
                    log.info("bootstrapper not reachable yet (%s); retrying", e or "timeout")
                    await self._forget()
                    await trio.sleep(JOIN_RETRY)
        raise Unavailable(
            f"cannot join: the bootstrapper, through {self.contact_peer} at "
            f"{', '.join(self.contact_addrs)}, did not accept us within {deadline_s:g}s "
            f"({last or 'timeout'})"
        )

    async def rejoin_soon(self, state: ClusterState, timeout: float) -> bool:
        """Re-announce a restarted node within ``timeout``; whether it was done. A
        refusal stops the node before it serves; an unreachable bootstrapper only leaves
        the rejoin to ``follow``."""
        with trio.move_on_after(timeout):
            try:
                state.offer(await self.join_once())
                return True
            except (Forbidden, InvalidArgument) as e:
                raise _refused(e) from None
            except (DSClusterError, trio.TooSlowError) as e:
                log.info("cannot re-announce this node yet (%s); serving from the cached "
                         "map meanwhile", e or "timeout")
                await self._forget()
        return False

    async def guard(self, state: ClusterState) -> None:
        """Stop the node once the map gives its index to another peer: it was replaced,
        and whatever it still served would be lost to the cluster."""
        assert self.index is not None
        while True:
            cmap = state.map
            held = cmap.members[self.index].peer_id if self.index < len(cmap.members) else None
            if held != self.peer_id:
                raise Forbidden(
                    f"node {self.index} is now {held or 'nobody'} in map epoch {cmap.epoch}: "
                    f"this node ({self.peer_id}) was replaced and is no longer a member; "
                    "to rejoin, start a new node in a fresh directory")
            await state.wait_changed()

    async def follow(self, state: ClusterState, *, rejoin: bool) -> None:
        """Keep ``state`` current; first re-announce ourselves if asked (after a restart)."""
        warned = False
        while True:
            try:
                if rejoin:
                    state.offer(await self.join_once())
                    rejoin = False
                ans = await self._ask(wire.GetMap(known_epoch=state.epoch))
                if ans.map is not None:
                    state.offer(ClusterMap.from_dict(ans.map))
                warned = False
            except (Forbidden, InvalidArgument) as e:
                if rejoin:
                    raise _refused(e) from None
                log.error("the contact refused this node: %s", e)
            except (DSClusterError, trio.TooSlowError) as e:
                if not warned:
                    # the contact is the bootstrapper unless _desk found another
                    who = ("the bootstrapper" if rejoin or self._desk_peer is None
                           else f"node {self.contact_peer}")
                    log.warning("cannot reach %s: %s", who, e or "timeout")
                    warned = True
                await self._forget()
            await trio.sleep(FOLLOW_INTERVAL)


def _refused(e: DSClusterError) -> Forbidden:
    # the node ends with this line: it says whose refusal it is
    return Forbidden(f"the bootstrapper refused this node: {e}")

"""The bootstrapper: holder of the authoritative cluster map and its join desk.

A joining node proves it holds the cluster secret (the stream handshake) and sends
Join, in one of three forms:

- a member index: the node claims that member of the map dscfg made. The claim binds
  the index to the node's peer id for good: a different key claiming a taken index is
  refused, so nobody can take over a node's slots by knowing its index;
- index -1: the node becomes a new member at the end of the map, owning no slots until
  a rebalance gives it some. A peer that is a member already gets its own index back,
  so a node whose first answer was lost can simply ask again;
- an index and ``replace``: the node takes the place of a member that died for good (its
  disk is gone). The member's slots stay where they are and the newcomer, empty, is
  refilled by anti-entropy from the other owners. Only a member that does not answer
  may be replaced: two live nodes must never serve one index.

The joining node generated its own key; no private key ever travels. Every change
produces the next epoch of the map.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from .. import wire
from ..clustermap import JOINED, RETIRED, Member
from ..errors import (
    ClusterError,
    ConfigError,
    DSClusterError,
    Forbidden,
    InvalidArgument,
    Unavailable,
)
from ..net.addrs import parse_maddr
from .state import ClusterState

if TYPE_CHECKING:
    from .caller import MemberCaller

log = logging.getLogger(__name__)
MAX_ADDRS = 16
MAX_ADDR_LEN = 256
NEW_MEMBER = -1  # Join's index for "give me a new member's place"
# how long a member asked whether it is alive has to answer before it is taken for dead:
# a live node answers a GetMap in milliseconds, and a dead host's address refuses or
# times out the connect (the pool's connect timeout is longer, so this one decides)
PROBE_TIMEOUT = 3.0


def checked_addrs(addrs: list[Any]) -> tuple[str, ...]:
    if not addrs or len(addrs) > MAX_ADDRS:
        raise InvalidArgument(f"a node must announce 1..{MAX_ADDRS} addresses")
    out = []
    for a in addrs:
        if not isinstance(a, str) or len(a) > MAX_ADDR_LEN:
            raise InvalidArgument("addresses must be multiaddr strings")
        try:
            parse_maddr(a)
        except ConfigError:
            raise InvalidArgument(f"invalid multiaddr {a!r}") from None
        out.append(a)
    return tuple(out)


class Bootstrapper:
    def __init__(self, state: ClusterState, own_index: int,
                 caller: MemberCaller | None = None) -> None:
        self.state = state
        self.own_index = own_index
        # to ask a member to be replaced whether it is alive (the daemon sets it once
        # the caller exists: the caller needs the server, which needs on_join)
        self.caller = caller
        # a replacement waits for its probe: no other join may change the map meanwhile
        self._lock = trio.Lock()

    def claim(self, index: int, peer: str, addrs: tuple[str, ...]) -> None:
        """Record that ``peer`` serves member ``index`` at ``addrs`` (new epoch if changed)."""
        cmap = self.state.map
        if not 0 <= index < len(cmap.members):
            raise InvalidArgument(
                f"identity {index} does not exist: this cluster has identities "
                f"0..{len(cmap.members) - 1}"
            )
        held = cmap.members[index]
        if held.state == RETIRED:
            raise Forbidden(f"identity {index} was removed from the cluster; a node joins "
                            "again as a new member, with a new conf directory")
        holder = held.peer_id
        if holder not in (None, peer):
            raise Forbidden(
                f"identity {index} is already held by node {holder}; a node keeps its "
                "identity by keeping its conf directory (one that was replaced can only "
                "join again as a new node, from a fresh directory)"
            )
        other = cmap.member_by_peer(peer)
        if other is not None and other.index != index:
            raise Forbidden(f"peer {peer} already serves identity {other.index}")
        # the weight is the operator's (a drain sets it to 0): a restart must not undo it
        member = Member(index, peer, addrs, JOINED, held.weight)
        if held != member:
            self.state.offer(cmap.with_member(member))
            log.info("node %d (%s) joined at %s", index, peer, ", ".join(addrs))

    def add(self, peer: str, addrs: tuple[str, ...]) -> int:
        """Make ``peer`` a new member, owning no slots; its index. A peer that is a
        member already keeps its index (a retried join)."""
        cmap = self.state.map
        known = cmap.member_by_peer(peer)
        if known is not None:
            self.claim(known.index, peer, addrs)
            return known.index
        try:
            grown = cmap.add_member(peer, addrs)
        except ClusterError as e:
            # not worth a retry: the cluster stays full until members are removed
            raise Forbidden(f"cannot add a member: {e}") from None
        self.state.offer(grown)
        member = grown.member_by_peer(peer)
        assert member is not None
        index = member.index
        log.info("node %d (%s) joined as a new member at %s; it owns no slots until a "
                 "rebalance", index, peer, ", ".join(addrs))
        return index

    async def replace(self, index: int, peer: str, addrs: tuple[str, ...]) -> None:
        """Give member ``index`` to ``peer`` in the place of its dead holder."""
        cmap = self.state.map
        if not 0 <= index < len(cmap.members):
            raise InvalidArgument(f"node {index} does not exist: this cluster has nodes "
                                  f"0..{len(cmap.members) - 1}")
        if index == self.own_index:
            raise Forbidden(f"node {index} is the bootstrapper itself; it cannot be replaced")
        old = cmap.members[index]
        if old.peer_id == peer or old.peer_id is None:
            # a retry after the replacement went through, or a member nobody holds yet
            # (nothing to replace: taking it is an ordinary claim)
            self.claim(index, peer, addrs)
            return
        if old.state == RETIRED:
            raise Forbidden(f"node {index} was removed from the cluster; there is nothing "
                            "to replace (join as a new member instead)")
        other = cmap.member_by_peer(peer)
        if other is not None:
            raise Forbidden(f"peer {peer} already serves node {other.index}")
        if await self._answers(index):
            raise Forbidden(f"node {index} is still answering; stop it first, or drain it "
                            f"with `dsclient remove-node {index}`")
        if self.state.map.members[index] != old:
            # changed while we asked (a rebalance): what we checked no longer holds
            raise Unavailable(f"node {index} changed while the bootstrapper checked it; "
                              "try again")
        self.state.offer(self.state.map.with_member(
            Member(index, peer, addrs, JOINED, old.weight)))
        log.warning("node %d replaced: %s at %s takes the place of %s, which did not "
                    "answer; it is refilled from the other owners", index, peer,
                    ", ".join(addrs), old.peer_id)

    async def _answers(self, index: int) -> bool:
        """Whether member ``index`` answers a request within PROBE_TIMEOUT."""
        if self.caller is None:
            raise Unavailable("the bootstrapper cannot check members yet; try again")
        with trio.move_on_after(PROBE_TIMEOUT):
            try:
                await self.caller.try_member(index, wire.GetMap(known_epoch=0),
                                             dial_down=True)
            except Unavailable as e:
                log.info("node %d does not answer: %s", index, e)
                return False
            except DSClusterError:
                pass  # an error is an answer too: something holds that peer's key
            return True
        log.info("node %d did not answer within %gs", index, PROBE_TIMEOUT)
        return False

    async def on_join(self, peer: str, m: wire.Join) -> dict[str, Any]:
        addrs = checked_addrs(m.addrs)
        async with self._lock:
            if m.replace:
                await self.replace(m.index, peer, addrs)
            elif m.index == NEW_MEMBER:
                self.add(peer, addrs)
            elif m.index == self.own_index:
                raise Forbidden(f"identity {m.index} is the bootstrapper itself")
            else:
                self.claim(m.index, peer, addrs)
        return self.state.map.to_dict()

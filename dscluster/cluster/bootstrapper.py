"""The bootstrapper: holder of the authoritative cluster map and its join desk.

A joining node proves it holds the cluster secret (the stream handshake) and claims a
member index with Join. The claim binds that index to the node's peer id for good: a
different key claiming a taken index is refused, so nobody can take over a node's
slots by knowing its index. The joining node generated its own key; no private key
ever travels. Every change produces the next epoch of the map.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import wire
from ..clustermap import JOINED, Member
from ..errors import ConfigError, Forbidden, InvalidArgument
from ..net.addrs import parse_maddr
from .state import ClusterState

log = logging.getLogger(__name__)
MAX_ADDRS = 16
MAX_ADDR_LEN = 256


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
    def __init__(self, state: ClusterState, own_index: int) -> None:
        self.state = state
        self.own_index = own_index

    def claim(self, index: int, peer: str, addrs: tuple[str, ...]) -> None:
        """Record that ``peer`` serves member ``index`` at ``addrs`` (new epoch if changed)."""
        cmap = self.state.map
        if not 0 <= index < len(cmap.members):
            raise InvalidArgument(
                f"identity {index} does not exist: this cluster has identities "
                f"0..{len(cmap.members) - 1}"
            )
        holder = cmap.members[index].peer_id
        if holder not in (None, peer):
            raise Forbidden(
                f"identity {index} is already held by node {holder}; a node keeps its "
                "identity by keeping its conf directory"
            )
        other = cmap.member_by_peer(peer)
        if other is not None and other.index != index:
            raise Forbidden(f"peer {peer} already serves identity {other.index}")
        member = Member(index, peer, addrs, JOINED)
        if cmap.members[index] != member:
            self.state.offer(cmap.with_member(member))
            log.info("node %d (%s) joined at %s", index, peer, ", ".join(addrs))

    async def on_join(self, peer: str, m: wire.Join) -> dict[str, Any]:
        if m.index == self.own_index:
            raise Forbidden(f"identity {m.index} is the bootstrapper itself")
        self.claim(m.index, peer, checked_addrs(m.addrs))
        return self.state.map.to_dict()

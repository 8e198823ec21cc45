"""The transport nodes and clients use: libp2p plus, where a peer offers one, the TLS
data lane (see tls.py for why and how it is authenticated).

A peer's addresses come from the cluster map; when they include a lane address and the
lane is enabled, requests go over the lane, otherwise over libp2p. The same handler
serves both, so no request handler knows which carried it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio
from libp2p.crypto.keys import KeyPair

from .base import ByteStream, StreamHandler
from .libp2p import Libp2pTransport, open_libp2p_transport
from .tls import TlsLane, is_lane_addr, lane_addr


class ClusterTransport:
    def __init__(self, p2p: Libp2pTransport, lane: TlsLane, use_lane: bool) -> None:
        self.p2p = p2p
        self.lane = lane
        self.use_lane = use_lane
        self.peer_id = p2p.peer_id
        self.lane_listen: str | None = None
        self._handler: StreamHandler | None = None

    def listen_addrs(self) -> list[str]:
        return self.p2p.listen_addrs() + ([self.lane_listen] if self.lane_listen else [])

    def set_handler(self, handler: StreamHandler) -> None:
        self._handler = handler
        self.p2p.set_handler(handler)

    async def open_stream(self, peer_id: str, addrs: Sequence[str]) -> ByteStream:
        la = lane_addr(addrs) if self.use_lane else None
        if la is not None:
            return await self.lane.open_stream(peer_id, la)
        return await self.p2p.open_stream(peer_id, [a for a in addrs if not is_lane_addr(a)])

    async def _dispatch(self, stream: ByteStream) -> None:
        if self._handler is not None:  # a connection before start-up completed is dropped
            await self._handler(stream)


@asynccontextmanager
async def open_transport(
    kp: KeyPair,
    *,
    listen: Sequence[str] = (),
    lane: str | None = None,
    use_lane: bool = True,
    connect_timeout: float = 5.0,
) -> AsyncIterator[ClusterTransport]:
    """Start libp2p (listening on ``listen``) and, if ``lane`` is given, the lane listener."""
    async with open_libp2p_transport(kp, listen, connect_timeout) as p2p:
        t = ClusterTransport(p2p, TlsLane(kp, p2p.peer_id, connect_timeout), use_lane)
        async with trio.open_nursery() as n:
            if lane is not None:
                t.lane_listen = await n.start(t.lane.serve, lane, t._dispatch)
            yield t
            n.cancel_scope.cancel()

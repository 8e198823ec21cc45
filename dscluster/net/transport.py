"""The transport nodes and clients use: libp2p plus, where a peer offers one, the TLS
data lane (see tls.py for why and how it is authenticated).

A peer's addresses come from the cluster map; when they include a lane address and the
lane is enabled, requests go over the lane, otherwise over libp2p. The same handler
serves both, so no request handler knows which carried it.

py-libp2p is started (and imported: ~0.6 s) only when it is needed: at once for a node,
which listens on it, and on a client's first request to a peer without a lane — for a
client working from a cached map of lane-serving nodes, never.

A lane that refuses a connection, closes it or is not listening fails within
milliseconds; then libp2p is tried within what is left of the same connect timeout (a
node that sheds unauthenticated lane connections under a flood, or whose lane port is
blocked, still answers), so a node that is down fails within one connect timeout as
before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ..concurrency import open_nursery
from ..errors import Unavailable
from ..identity import Identity
from ..limits import ConnectionLimits
from .base import ByteStream, StreamHandler
from .tls import TlsLane, is_lane_addr, lane_addr

if TYPE_CHECKING:
    from .libp2p import Libp2pTransport

log = logging.getLogger(__name__)


class ClusterTransport:
    def __init__(self, ident: Identity, nursery: trio.Nursery, *, listen: Sequence[str],
                 use_lane: bool, connect_timeout: float,
                 lane_connections: ConnectionLimits | None = None,
                 libp2p_connections: ConnectionLimits | None = None) -> None:
        self.ident = ident
        self.peer_id = ident.peer_id
        self.lane = TlsLane(ident, connect_timeout, lane_connections)
        self._libp2p_connections = libp2p_connections
        self.use_lane = use_lane
        self.lane_listen: str | None = None
        self._nursery = nursery
        self._listen = list(listen)
        self._timeout = connect_timeout
        self._handler: StreamHandler | None = None
        self._p2p: Libp2pTransport | None = None
        self._p2p_lock = trio.Lock()

    async def libp2p(self) -> Libp2pTransport:
        """The libp2p transport, started on first use."""
        async with self._p2p_lock:
            if self._p2p is None:
                self._p2p = await self._nursery.start(self._run_libp2p)
        assert self._p2p is not None
        return self._p2p

    async def _run_libp2p(self, task_status: trio.TaskStatus[Libp2pTransport]) -> None:
        from .libp2p import open_libp2p_transport

        async with open_libp2p_transport(self.ident, self._listen, self._timeout,
                                         self._libp2p_connections) as p2p:
            p2p.set_handler(self._dispatch)
            task_status.started(p2p)
            await trio.sleep_forever()

    def listen_addrs(self) -> list[str]:
        p2p = self._p2p.listen_addrs() if self._p2p is not None else []
        return p2p + ([self.lane_listen] if self.lane_listen else [])

    def set_handler(self, handler: StreamHandler) -> None:
        self._handler = handler

    async def open_stream(self, peer_id: str, addrs: Sequence[str]) -> ByteStream:
        la = lane_addr(addrs) if self.use_lane else None
        p2p_addrs = [a for a in addrs if not is_lane_addr(a)]
        if la is None:
            return await (await self.libp2p()).open_stream(peer_id, p2p_addrs)
        deadline = trio.current_time() + self._timeout
        try:
            return await self.lane.open_stream(peer_id, la)
        except Unavailable as e:
            if not p2p_addrs or trio.current_time() >= deadline:
                raise
            lane_error = e
        log.debug("trying libp2p to %s: %s", peer_id, lane_error)
        try:
            with trio.fail_at(deadline):
                return await (await self.libp2p()).open_stream(peer_id, p2p_addrs)
        except trio.TooSlowError:
            raise Unavailable(f"peer {peer_id} at {', '.join(addrs)} did not answer within "
                              f"{self._timeout:g}s ({lane_error})") from None
        except Unavailable as e:
            raise Unavailable(f"{e}; over the data lane: {lane_error}") from None

    async def _dispatch(self, stream: ByteStream) -> None:
        if self._handler is not None:  # a connection before start-up completed is dropped
            await self._handler(stream)


@asynccontextmanager
async def open_transport(
    ident: Identity,
    *,
    listen: Sequence[str] = (),
    lane: str | None = None,
    use_lane: bool = True,
    connect_timeout: float = 5.0,
    lane_connections: ConnectionLimits | None = None,
    libp2p_connections: ConnectionLimits | None = None,
) -> AsyncIterator[ClusterTransport]:
    """A transport; with ``listen`` it listens on libp2p at once, with ``lane`` on the
    data lane too, each admitting connections within its ``*_connections`` limits."""
    # our open_nursery: an error of the caller's body leaves as itself, not in a group
    async with open_nursery() as n:
        t = ClusterTransport(ident, n, listen=listen, use_lane=use_lane,
                             connect_timeout=connect_timeout,
                             lane_connections=lane_connections,
                             libp2p_connections=libp2p_connections)
        if listen:
            await t.libp2p()
        if lane is not None:
            t.lane_listen = await n.start(t.lane.serve, lane, t._dispatch)
        yield t
        n.cancel_scope.cancel()

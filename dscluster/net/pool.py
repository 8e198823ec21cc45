"""Authenticated channels to peers, opened once and reused.

Opening a libp2p stream and running the handshake costs round trips, so channels go
back to an idle list after each request. A channel is reused only if its conversation
is back in the IDLE state — a request that was cancelled or broke mid-way leaves it in
another state, and such a channel is closed instead. A per-peer semaphore bounds how
many streams one process opens to one peer.

A node with no room for another authenticated connection on its data lane says so in
the handshake (admission.py); the channel is then opened over libp2p, which has
capacity of its own.

A node's token changes when the cluster secret is rotated (keyring.py): the pool then
takes a function that says which token to dial with now, and an idle channel opened
with another token is closed instead of reused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType

import trio

from .. import wire
from ..auth import Token
from ..errors import Unavailable
from ..limits import Limits
from .base import ByteStream, Transport
from .channel import MessageChannel
from .handshake import client_handshake
from .tls import is_lane_addr

DEFAULT_STREAMS_PER_PEER = 32


class ChannelPool:
    def __init__(
        self,
        transport: Transport,
        token: Token | Callable[[], Token],
        limits: Limits,
        *,
        streams_per_peer: int = DEFAULT_STREAMS_PER_PEER,
        on_epoch: Callable[[int], None] | None = None,
    ) -> None:
        self.transport = transport
        self._token = token if callable(token) else lambda: token
        self.limits = limits
        self._streams_per_peer = streams_per_peer
        # each idle channel with the token it was opened with
        self._idle: dict[str, list[tuple[Token, MessageChannel]]] = {}
        self._slots: dict[str, trio.Semaphore] = {}
        self._on_epoch = on_epoch

    @property
    def token(self) -> Token:
        """The token new channels are opened with."""
        return self._token()

    async def _open(self, peer_id: str, addrs: Sequence[str],
                    token: Token) -> MessageChannel:
        stream = await self.transport.open_stream(peer_id, addrs)
        p2p_addrs = [a for a in addrs if not is_lane_addr(a)]
        try:
            return await self._handshake(stream, token)
        except Unavailable:
            # refused or closed during the handshake: the lane may be full, libp2p not
            if stream.transport != "lane" or not p2p_addrs:
                raise
        return await self._handshake(await self.transport.open_stream(peer_id, p2p_addrs),
                                     token)

    async def _handshake(self, stream: ByteStream, token: Token) -> MessageChannel:
        chan = MessageChannel(stream, wire.Connection(wire.Role.CLIENT, self.limits))
        try:
            welcome = await client_handshake(chan, token)
        except BaseException:
            await chan.aclose()
            raise
        if self._on_epoch is not None:
            self._on_epoch(welcome.epoch)
        return chan

    def channel(self, peer_id: str, addrs: Sequence[str]) -> _Lease:
        """``async with pool.channel(peer, addrs) as chan``: an idle channel to the peer
        or a new one, back to the idle list afterwards if its conversation is IDLE."""
        return _Lease(self, peer_id, addrs)

    async def forget(self, peer_id: str) -> None:
        """Close idle channels to a peer (after it moved or failed)."""
        for _, chan in self._idle.pop(peer_id, []):
            await chan.aclose()

    async def aclose(self) -> None:
        for peer in list(self._idle):
            await self.forget(peer)


class _Lease:
    """One use of a pooled channel (ChannelPool.channel). A class rather than an
    ``asynccontextmanager``, and no scheduler round trip when a stream slot is free: this
    runs for every request."""

    __slots__ = ("_addrs", "_chan", "_peer", "_pool", "_sem", "_token")

    def __init__(self, pool: ChannelPool, peer_id: str, addrs: Sequence[str]) -> None:
        self._pool = pool
        self._peer = peer_id
        self._addrs = addrs

    async def __aenter__(self) -> MessageChannel:
        pool, peer = self._pool, self._peer
        sem = pool._slots.get(peer)
        if sem is None:
            sem = pool._slots[peer] = trio.Semaphore(pool._streams_per_peer)
        # what ``async with sem`` does, less its yield when a slot is free: a request
        # that was cancelled before it started still takes no channel
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            sem.acquire_nowait()
        except trio.WouldBlock:
            await sem.acquire()
        try:
            idle = pool._idle.get(peer)
            if idle is None:
                idle = pool._idle[peer] = []
            token = pool._token()
            if any(t is not token and t != token for t, _ in idle):
                stale = [c for t, c in idle if t != token]  # opened with a replaced token
                idle[:] = [e for e in idle if e[0] == token]
                for old in stale:
                    await old.aclose()
            self._chan = idle.pop()[1] if idle else await pool._open(peer, self._addrs, token)
        except BaseException:
            sem.release()
            raise
        self._sem = sem
        self._token = token
        return self._chan

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        chan, pool, token = self._chan, self._pool, self._token
        try:
            now = pool._token()
            if chan.conn.state is wire.State.IDLE and (token is now or token == now):
                pool._idle.setdefault(self._peer, []).append((token, chan))
            else:
                with trio.CancelScope(shield=True):
                    await chan.aclose()
        finally:
            self._sem.release()

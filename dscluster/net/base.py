"""The transport interface: byte streams between authenticated peers.

A transport opens a stream to a peer (by peer id and addresses) and hands incoming
streams to one handler. Both ends know the other's *authenticated* peer id — the
transport's job — so the cluster's own authorisation can bind its proofs to it.
Handlers do not know which transport carried a stream; libp2p is the first one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol


class Admission(Protocol):
    """How the transport admitted the connection an incoming stream arrived on
    (net/admission.py): it counts as unauthenticated until a stream on it proves a role,
    and must do so by ``deadline`` (trio's clock)."""

    @property
    def deadline(self) -> float: ...

    def promote(self, role: str) -> bool:
        """The stream's handshake proved ``role``; False: no room for such a peer."""
        ...


class ByteStream(Protocol):
    # the two ends' peer ids as both ends see them (proofs are bound to them)
    local_peer: str
    remote_peer: str
    transport: str  # "lane" or "libp2p", so a client can try the other one
    # on a stream a node accepted; None on one we opened
    admission: Admission | None

    async def send_all(self, data: bytes) -> None: ...

    async def receive_some(self, max_bytes: int) -> bytes:
        """At least one byte, or b"" once the peer has finished sending."""
        ...

    async def aclose(self) -> None: ...


StreamHandler = Callable[[ByteStream], Awaitable[None]]


class Transport(Protocol):
    peer_id: str

    def listen_addrs(self) -> list[str]: ...

    async def open_stream(self, peer_id: str, addrs: Sequence[str]) -> ByteStream:
        """A stream to ``peer_id``, authenticated as that peer, at one of ``addrs``."""
        ...

    def set_handler(self, handler: StreamHandler) -> None: ...

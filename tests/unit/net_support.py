"""In-memory transport streams for the network layer's unit tests."""

from __future__ import annotations

from dataclasses import dataclass

import trio


@dataclass
class End:
    """One end of an in-memory stream, with the peer ids a transport would give it."""

    stream: trio.abc.Stream
    local_peer: str
    remote_peer: str
    transport: str = "libp2p"
    admission: object = None

    async def send_all(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive_some(self, max_bytes: int) -> bytes:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()

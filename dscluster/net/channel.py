"""Messages over a byte stream: the sans-IO codec meets a transport here, and only here.

Errors a peer reports arrive as ``wire.Error`` and are turned back into the exception
class they name at this single receive point (``request``).
"""

from __future__ import annotations

from .. import wire
from ..errors import DSClusterError, RemoteProtocolError, Unavailable, error_from_wire
from ..limits import (
    HANDSHAKE_ERROR_CHARS,
    HANDSHAKE_FRAME_BYTES,
    MAX_ERROR_CHARS,
    MAX_MAP_ENTRIES,
)
from .base import ByteStream

READ_CHUNK = 256 * 1024


class MessageChannel:
    __slots__ = ("conn", "stream")

    def __init__(self, stream: ByteStream, conn: wire.Connection) -> None:
        self.stream = stream
        self.conn = conn

    @property
    def remote_peer(self) -> str:
        return self.stream.remote_peer

    async def send(self, msg: wire.Message) -> None:
        await self.stream.send_all(self.conn.send(msg))

    async def send_final_error(self, err: DSClusterError) -> None:
        if self.conn.authenticated:
            msg = error_message(err)
        else:  # it must fit the small frame a peer accepts during the handshake
            msg = wire.Error(code=err.code, message=_text(err.message, HANDSHAKE_ERROR_CHARS))
        await self.stream.send_all(self.conn.send_final_error(msg))

    async def receive(self) -> wire.Message | None:
        """The next message, or None if the peer closed the stream between messages."""
        while True:
            ev = self.conn.next_event()
            if ev is not wire.NEED_DATA:
                return ev  # type: ignore[return-value]
            data = await self.stream.receive_some(self._read_size())
            if not data:
                if self.conn.mid_frame:
                    raise RemoteProtocolError(f"{self.remote_peer} closed the stream mid-frame")
                return None
            self.conn.receive_data(data)

    def _read_size(self) -> int:
        if not self.conn.authenticated:
            # a peer that has not proved anything gets no more buffer than one frame
            return HANDSHAKE_FRAME_BYTES
        return max(READ_CHUNK, self.conn.pending_bytes)

    async def request(self, msg: wire.Message) -> wire.Message:
        """Send a request and return the answer; a wire Error is raised as its class."""
        await self.send(msg)
        answer = await self.receive()
        if answer is None:
            raise Unavailable(f"{self.remote_peer} closed the stream without answering")
        if isinstance(answer, wire.Error):
            raise error_from_wire(answer.code, answer.message, answer.detail)
        return answer

    async def aclose(self) -> None:
        await self.stream.aclose()


def error_message(err: DSClusterError) -> wire.Error:
    # the receiver refuses long strings, and an error may quote a whole key or value
    return wire.Error(code=err.code, message=_text(err.message, MAX_ERROR_CHARS),
                      detail=_plain(err.detail))


def _plain(detail: dict) -> dict:
    """Only msgpack-able detail values travel; anything else is sent as text."""
    out = {}
    for k, v in list(detail.items())[:MAX_MAP_ENTRIES]:
        if not isinstance(v, int | float | bool | type(None)):
            v = _text(str(v), MAX_ERROR_CHARS)
        out[_text(str(k), MAX_ERROR_CHARS)] = v
    return out


def _text(s: str, max_chars: int) -> str:
    return s if len(s) <= max_chars else s[:max_chars] + "…"

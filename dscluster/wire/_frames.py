"""Frames in and out of a byte stream, with as few copies of their bytes as msgpack allows.

A frame is a 4-byte big-endian length followed by that many bytes.

Out: a message is packed into a per-thread ``msgpack.Packer`` whose buffer is kept from
frame to frame (``msgpack.packb`` allocates a 256 KiB buffer per call and copies its
result out of it), and the header and that buffer are joined into the frame: one copy
of a value between the message and the transport. The buffer stays as large as the
largest frame the thread packed (at most ``Limits.max_frame_bytes``, once per thread,
not per connection).

In: ``FrameReader`` keeps what it is fed as it came (no copy) and hands out each
complete frame as a memoryview: of the chunk itself when the frame arrived within one
(small messages nearly always do), else of the frame's pieces joined once. The length
is checked against the caller's limit as soon as the 4 header bytes are in, so a frame
over it is refused before any of its body is kept beyond the chunk it came in with.
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from typing import Any

import msgpack

from ..errors import TooLarge

HEADER = struct.Struct(">I")

_packers = threading.local()


def pack_frame(obj: Any) -> bytes:
    """``obj`` packed as one frame."""
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True, autoreset=False)
    try:
        packer.pack(obj)
        with packer.getbuffer() as payload:
            return b"".join((HEADER.pack(len(payload)), payload))
    finally:
        packer.reset()


class FrameReader:
    """Splits what a stream delivers into frames (sans-IO)."""

    __slots__ = ("_chunks", "_queued", "_want")

    def __init__(self) -> None:
        self._chunks: deque[memoryview] = deque()
        self._queued = 0  # bytes in _chunks
        self._want: int | None = None  # body length of the frame whose header is in

    def feed(self, data: bytes) -> None:
        if data:
            # a view of the caller's bytes, not a copy; bytes cannot change under it
            self._chunks.append(memoryview(bytes(data) if type(data) is not bytes else data))
            self._queued += len(data)

    def next_frame(self, max_frame: int) -> memoryview | None:
        """The next complete frame's body, or None until it is all in. TooLarge, from
        its header alone, for a frame announcing more than ``max_frame`` bytes."""
        if self._want is None:
            if self._queued < HEADER.size:
                return None
            (n,) = HEADER.unpack(self._take(HEADER.size))
            if n > max_frame:
                raise TooLarge(f"peer announced a {n}-byte frame; the limit is {max_frame} bytes")
            self._want = n
        if self._queued < self._want:
            return None
        frame = self._take(self._want)
        self._want = None
        return frame

    @property
    def mid_frame(self) -> bool:
        """Whether part of a frame has arrived."""
        return self._want is not None or self._queued > 0

    @property
    def pending_bytes(self) -> int:
        """How many more bytes the frame whose header is in needs (0 if none)."""
        return 0 if self._want is None else max(0, self._want - self._queued)

    def _take(self, n: int) -> memoryview:
        """The next ``n`` queued bytes (``n`` <= _queued): a slice of the first chunk if
        it holds them all, else the pieces joined."""
        if not n:
            return memoryview(b"")
        self._queued -= n
        chunks = self._chunks
        first = chunks[0]
        if len(first) >= n:
            if len(first) == n:
                chunks.popleft()
            else:
                chunks[0] = first[n:]
            return first[:n]
        parts = []
        while n:
            c = chunks[0]
            if len(c) <= n:
                parts.append(chunks.popleft())
                n -= len(c)
            else:
                parts.append(c[:n])
                chunks[0] = c[n:]
                n = 0
        return memoryview(b"".join(parts))

"""The aws-chunked body encoding, decoded incrementally and sans-IO.

A body sent with ``x-amz-content-sha256: STREAMING-…`` is a series of chunks::

    <hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n   (repeated)
    0[;chunk-signature=<sig>]\\r\\n
    [<trailer name>:<value>\\r\\n ...]                    (…-TRAILER modes)
    \\r\\n

``feed`` takes whatever bytes arrived and returns the payload they complete; chunk data
is passed on before its chunk's signature is checked (at the chunk's end), which is safe
because nothing is committed before the whole body has been read and verified. Header
and trailer lines are bounded, so a hostile body can't grow the buffer.
"""

from __future__ import annotations

import hashlib
import re

from .errors import S3Error
from .sigv4 import EMPTY_SHA256, ChunkChain

MAX_LINE = 4096
MAX_TRAILER_BYTES = 16384
TRAILER_SIGNATURE = "x-amz-trailer-signature"

_HEX_SIZE_RE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_HEADER, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


def _malformed(why: str) -> S3Error:
    return S3Error("InvalidRequest", f"Malformed aws-chunked body: {why}.")


class AwsChunkedDecoder:
    def __init__(self, chain: ChunkChain | None, *, signed_trailer: bool = False) -> None:
        """``chain`` checks chunk signatures (None: the chunks are unsigned);
        ``signed_trailer``: the trailer section ends with x-amz-trailer-signature."""
        self._chain = chain
        self._signed_trailer = signed_trailer
        self._state = _HEADER
        self._line = bytearray()
        self._remaining = 0
        self._signature: str | None = None
        self._hash: hashlib._Hash | None = None
        self._trailer_bytes = 0
        self._trailer_lines: list[tuple[str, str]] = []
        self.trailers: dict[str, str] = {}

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        i, n = 0, len(data)
        while i < n:
            if self._state == _DATA:
                take = min(self._remaining, n - i)
                piece = data[i:i + take]
                i += take
                self._remaining -= take
                if self._hash is not None:
                    self._hash.update(piece)
                out.append(piece)
                if self._remaining == 0:
                    self._end_of_data()
            elif self._state == _DONE:
                raise _malformed("data after the final chunk")
            else:
                j = data.find(b"\n", i)
                end = n if j < 0 else j + 1
                self._line += data[i:end]
                i = end
                if len(self._line) > MAX_LINE:
                    raise _malformed("line too long")
                if j >= 0:
                    line = bytes(self._line)
                    self._line.clear()
                    if not line.endswith(b"\r\n"):
                        raise _malformed("line not ended by CRLF")
                    self._on_line(line[:-2])
        return out

    def close(self) -> None:
        """The body ended: it must have ended exactly after the final chunk."""
        if self._state != _DONE:
            raise S3Error("IncompleteBody", "The aws-chunked body ended before its final "
                          "chunk.")

    def _on_line(self, line: bytes) -> None:
        if self._state == _HEADER:
            self._on_chunk_header(line)
        elif self._state == _DATA_END:
            if line:
                raise _malformed("chunk data longer than its size")
            self._state = _HEADER
        else:
            self._on_trailer_line(line)

    def _on_chunk_header(self, line: bytes) -> None:
        size_hex, _, ext = line.partition(b";")
        if not _HEX_SIZE_RE.fullmatch(size_hex):
            raise _malformed("bad chunk size")
        size = int(size_hex, 16)
        self._signature = None
        if self._chain is not None:
            name, _, sig = ext.decode("latin-1").partition("=")
            if name.strip() != "chunk-signature" or not _SIGNATURE_RE.fullmatch(sig.strip()):
                raise _malformed("chunk without chunk-signature")
            self._signature = sig.strip()
        if size == 0:
            if self._chain is not None:
                self._chain.verify_chunk(self._signature or "", EMPTY_SHA256)
            self._state = _TRAILER
            return
        self._remaining = size
        self._hash = hashlib.sha256() if self._chain is not None else None
        self._state = _DATA

    def _end_of_data(self) -> None:
        if self._chain is not None and self._hash is not None:
            self._chain.verify_chunk(self._signature or "", self._hash.hexdigest())
        self._hash = None
        self._state = _DATA_END

    def _on_trailer_line(self, line: bytes) -> None:
        if line:
            self._trailer_bytes += len(line)
            if self._trailer_bytes > MAX_TRAILER_BYTES:
                raise _malformed("trailers too long")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise _malformed("trailer without ':'")
            self._trailer_lines.append((name.strip().lower(), value.strip()))
            return
        signature = None
        for name, value in self._trailer_lines:
            if name == TRAILER_SIGNATURE:
                signature = value
            else:
                self.trailers[name] = value
        if self._signed_trailer and self._chain is not None:
            if signature is None:
                raise _malformed("trailers without x-amz-trailer-signature")
            canonical = "".join(f"{n}:{v}\n" for n, v in self._trailer_lines
                                if n != TRAILER_SIGNATURE)
            self._chain.verify_trailer(signature, canonical.encode())
        self._state = _DONE

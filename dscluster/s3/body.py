"""Request bodies: streamed from ASGI, decoded and verified on the way through.

Theory of operation. ``RequestBody.chunks()`` yields the payload as it arrives, with
aws-chunked framing removed, while it counts the bytes (bounded by the object size
limit and the declared length) and feeds every hash the request asked for: MD5 (the
ETag, and Content-MD5), the signed SHA-256 of ``x-amz-content-sha256``, and an
``x-amz-checksum-*`` whose expected value may only arrive in the trailer. Nothing is
ever held beyond what the caller keeps. Once the stream is exhausted, ``verify()``
compares every digest; callers commit (write metadata) only after it returned.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

from .checksums import HEADER_PREFIX, Hasher, b64, claimed_checksum, new_hasher, parse_content_md5
from .chunked import AwsChunkedDecoder
from .errors import S3Error
from .http import Request, is_count
from .meta import Checksum
from .sigv4 import (
    STREAMING_MODES,
    STREAMING_SIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    ChunkChain,
)

# what an error response may read and discard so the client can see it (see drain)
DRAIN_LIMIT = 16 << 20


def _length(req: Request, name: str) -> int | None:
    value = req.header(name)
    if value is None:
        return None
    if not is_count(value.strip(), 20):
        raise S3Error("InvalidArgument", f"{name} must be a non-negative integer.",
                      ArgumentName=name, ArgumentValue=value)
    return int(value)


class RequestBody:
    def __init__(self, req: Request, *, max_size: int) -> None:
        assert req.auth is not None
        self._req = req
        self._max = max_size
        self.size = 0
        payload = req.auth.payload_hash
        self._decoder: AwsChunkedDecoder | None = None
        if payload in STREAMING_MODES:
            chain = ChunkChain(req.auth.signing) if req.auth.signing else None
            self._decoder = AwsChunkedDecoder(
                chain, signed_trailer=payload == STREAMING_SIGNED_TRAILER)
            self.declared = _length(req, "x-amz-decoded-content-length")
        else:
            self.declared = _length(req, "content-length")
        if self.declared is not None and self.declared > max_size:
            raise S3Error("EntityTooLarge", ProposedSize=str(self.declared),
                          MaxSizeAllowed=str(max_size))
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = (hashlib.sha256()
                        if payload not in (UNSIGNED_PAYLOAD, *STREAMING_MODES) else None)
        md5_header = req.header("content-md5")
        self._content_md5 = parse_content_md5(md5_header) if md5_header is not None else None
        claim = claimed_checksum(req.headers)
        self.checksum_algorithm = claim[0] if claim else None
        self._checksum_expected = claim[1] if claim else None
        self._checksum: Hasher | None = new_hasher(claim[0]) if claim else None
        self._ended = False

    async def chunks(self) -> AsyncIterator[bytes]:
        more = not self._req.body_done
        while more:
            data, more = await self._req.receive_body()
            pieces = self._decoder.feed(data) if self._decoder and data else [data]
            for piece in pieces:
                if piece:
                    self._account(piece)
                    yield piece
        self._ended = True
        if self._decoder is not None:
            self._decoder.close()
        if self.declared is not None and self.size != self.declared:
            raise S3Error("IncompleteBody")

    def _account(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > self._max:
            raise S3Error("EntityTooLarge", MaxSizeAllowed=str(self._max))
        self._md5.update(piece)
        if self._sha256 is not None:
            self._sha256.update(piece)
        if self._checksum is not None:
            self._checksum.update(piece)

    async def read_all(self) -> bytes:
        return b"".join([piece async for piece in self.chunks()])

    @property
    def md5_hex(self) -> str:
        return self._md5.hexdigest()

    def verify(self) -> Checksum | None:
        """Check every digest of the fully read body; the checksum to store with it."""
        assert self._ended, "verify() before the body was read"
        if self._sha256 is not None and not hmac.compare_digest(
                self._sha256.hexdigest(), self._req.auth.payload_hash):  # type: ignore[union-attr]
            raise S3Error("XAmzContentSHA256Mismatch")
        if self._content_md5 is not None and self._content_md5 != self._md5.digest():
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we "
                          "received.")
        if self._checksum is None or self.checksum_algorithm is None:
            return None
        value = b64(self._checksum.digest())
        expected = self._checksum_expected
        if expected is None and self._decoder is not None:
            expected = self._decoder.trailers.get(HEADER_PREFIX + self.checksum_algorithm)
        if expected is not None and expected != value:
            raise S3Error("BadDigest", f"The {self.checksum_algorithm.upper()} you specified "
                          "did not match the calculated checksum.")
        return Checksum(self.checksum_algorithm, value)


async def drain(req: Request) -> None:
    """Read and drop what is left of a body the handler did not (fully) read, so that
    the connection can be reused and a client still sending sees the answer. Past
    ``DRAIN_LIMIT`` the rest is left, and hypercorn closes the connection."""
    declared = (req.header("content-length") or "").strip()
    if declared.isdigit() and int(declared) - req.body_received > DRAIN_LIMIT:
        return
    drained = 0
    while not req.body_done and drained <= DRAIN_LIMIT:
        data, _ = await req.receive_body()
        drained += len(data)

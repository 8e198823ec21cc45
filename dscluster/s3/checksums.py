"""Object checksums: Content-MD5 and the x-amz-checksum-* family.

S3 sends and returns checksums as base64 of the big-endian digest. CRC32C comes from the
``crc32c`` package (hardware-accelerated where the CPU has it); CRC64NVME is refused
rather than computed slowly in pure Python, so clients fall back to the others.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable, Sequence
from typing import Protocol

import crc32c

from .errors import S3Error

ALGORITHMS = ("crc32", "crc32c", "sha1", "sha256")
HEADER_PREFIX = "x-amz-checksum-"


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc:
    """A running CRC with hashlib's update/digest shape."""

    def __init__(self, step: Callable[[bytes, int], int]) -> None:
        self._step = step
        self._value = 0

    def update(self, data: bytes, /) -> None:
        self._value = self._step(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


def new_hasher(algorithm: str) -> Hasher:
    if algorithm == "crc32":
        return _Crc(zlib.crc32)
    if algorithm == "crc32c":
        return _Crc(crc32c.crc32c)
    if algorithm in ("sha1", "sha256"):
        return hashlib.new(algorithm)
    raise S3Error("InvalidRequest", f"Checksum algorithm {algorithm!r} is not supported; "
                  f"use one of {', '.join(ALGORITHMS)}.")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def check_algorithm(name: str) -> str:
    """The lower-case algorithm of a header or trailer value like "CRC32"."""
    algorithm = name.strip().lower()
    new_hasher(algorithm)
    return algorithm


def composite(algorithm: str, part_values: Sequence[str]) -> str:
    """S3's checksum of a multipart object: the checksum of the parts' digests, "-N"."""
    h = new_hasher(algorithm)
    for value in part_values:
        h.update(base64.b64decode(value))
    return f"{b64(h.digest())}-{len(part_values)}"


def parse_content_md5(value: str) -> bytes:
    try:
        digest = base64.b64decode(value, validate=True)
    except binascii.Error:
        digest = b""
    if len(digest) != 16:
        raise S3Error("InvalidDigest", "The Content-MD5 you specified is not valid.")
    return digest


def claimed_checksum(headers: Sequence[tuple[str, str]]) -> tuple[str, str | None] | None:
    """(algorithm, expected value or None when it comes in a trailer) a request claims.

    The value is in an ``x-amz-checksum-<algorithm>`` header, or announced by
    ``x-amz-trailer`` to follow the body; ``x-amz-sdk-checksum-algorithm`` alone only
    asks the server to compute and store that checksum.
    """
    found = [(n[len(HEADER_PREFIX):], v.strip()) for n, v in headers
             if n.startswith(HEADER_PREFIX) and n not in (HEADER_PREFIX + "mode",
                                                          HEADER_PREFIX + "type")]
    trailer = next((v for n, v in headers if n == "x-amz-trailer"), None)
    if trailer:
        names = [t.strip().lower() for t in trailer.split(",") if t.strip()]
        found += [(t[len(HEADER_PREFIX):], None) for t in names if t.startswith(HEADER_PREFIX)]
    if len(found) > 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple "
                      "checksum types are not allowed.")
    if found:
        return check_algorithm(found[0][0]), found[0][1]
    sdk = next((v for n, v in headers if n == "x-amz-sdk-checksum-algorithm"), None)
    return (check_algorithm(sdk), None) if sdk else None

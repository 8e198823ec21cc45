"""IPFS block keys: ``/blocks/<base32 multihash>`` holds exactly the bytes that hash to it.

Kubo, Helia (with Kubo's keys) and ``dsclient add`` keep a block at
``/blocks/<base32 of its multihash>`` (upper case, unpadded RFC 4648 base32; Kubo's
dshelp.MultihashToDsKey) and trust what they read there. The S3 gateway refuses other
bytes at such a key, and a replicated read takes the first replica whose bytes match.

Keys that are not a canonical multihash (sharded ``XY/….data`` keys of blockstore-s3, or
names that do not decode) are no block anyone reads, and hash functions that
``multiformats`` can't compute here (keccak without its optional package) can't be
checked; for both the answer is "unknown" (None).

Every block read and written is checked here, so the common case is done by hand: the
multihash's two varints split with the importer's reader, the functions Kubo adds with
hashed by ``hashlib`` (the importer's table). ``multiformats`` validates the type of
every argument of every call (typing_validation), which measured 1.3 ms per key parsed
and 4 ms per 256 KiB block checked, against 1 ms for the SHA-256 itself; it is asked
only about the other functions.
"""

from __future__ import annotations

import base64
import binascii

from multiformats import multihash

from .unixfs._cid import HASHES
from .unixfs._dagpb import read_uvarint

BLOCKS_PREFIX = "/blocks/"
_IDENTITY = 0x00


def block_multihash(data_key: str) -> tuple[int, bytes] | None:
    """(hash function code, digest) when ``data_key`` is Kubo's key of a block."""
    if not data_key.startswith(BLOCKS_PREFIX):
        return None
    name = data_key[len(BLOCKS_PREFIX):]
    if not name or "/" in name:
        return None
    try:
        raw = base64.b32decode(name + "=" * (-len(name) % 8))
    except binascii.Error:
        return None
    # a key is Kubo's only in its one canonical spelling
    if base64.b32encode(raw).decode().rstrip("=") != name:
        return None
    try:
        code, pos = read_uvarint(raw, 0)
        size, pos = read_uvarint(raw, pos)
    except ValueError:
        return None
    digest = raw[pos:]
    if len(digest) != size:
        return None
    if code != _IDENTITY and code not in HASHES:
        try:  # the registry knows whether the code is a hash function at all
            multihash.unwrap_raw(raw)
        except (ValueError, KeyError):
            return None
    return code, digest


def block_matches(data_key: str, value: bytes) -> bool | None:
    """Whether ``value`` hashes to the block key ``data_key``; None when that can't be
    told (not a block key, or a hash function not available here)."""
    found = block_multihash(data_key)
    if found is None:
        return None
    code, digest = found
    if code == _IDENTITY:
        return value == digest
    if code in HASHES:
        full = HASHES[code][1](value)
        # a truncated digest is the function's first bytes (multihash's rule)
        return len(digest) <= len(full) and full[:len(digest)] == digest
    try:
        hasher = multihash.get(code=code)
    except KeyError:
        return None
    try:
        return bool(hasher.digest(value, size=len(digest)) == multihash.wrap(digest, code))
    except ImportError:  # its implementation needs a package that is not installed
        return None
    except ValueError:  # a digest length the function does not produce
        return False

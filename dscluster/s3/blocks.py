"""IPFS block keys: an object that lands on one must be that block.

Kubo, Helia (with Kubo's keys) and ``dsclient add`` keep a block at
``/blocks/<base32 of its multihash>`` (upper case, unpadded RFC 4648 base32; Kubo's
dshelp.MultihashToDsKey) and trust what they read there. A PUT into bucket ``blocks``
writes those very keys, so the gateway refuses bytes that do not hash to the key's
multihash; otherwise any credential could replace a block that other objects, dsclient
files and Kubo pins share. An object too large to be stored as its bytes (a UnixFS DAG
behind an ``/ipfs/<cid>`` pointer, as every multipart object is) can't be a block either.

Keys that are not a canonical multihash (sharded ``XY/….data`` keys of blockstore-s3, or
names that do not decode) are no block anyone reads, and hash functions that
``multiformats`` can't compute here (keccak without its optional package) can't be
checked; both are stored as they come, so that no Kubo set-up is refused.
"""

from __future__ import annotations

import base64
import binascii

from multiformats import multihash

from .errors import S3Error

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
        code, digest = multihash.unwrap_raw(raw)
    except (binascii.Error, ValueError, KeyError):
        return None
    # a key is Kubo's only in its one canonical spelling
    if base64.b32encode(raw).decode().rstrip("=") != name:
        return None
    return code, bytes(digest)


def check_block(data_key: str, value: bytes | None) -> None:
    """BadDigest unless an object's value may be stored at ``data_key``; ``value`` is
    None for an object stored as a UnixFS DAG."""
    found = block_multihash(data_key)
    if found is None:
        return
    code, digest = found
    name = data_key[len(BLOCKS_PREFIX):]
    if value is None:
        raise S3Error("BadDigest", f"{name} is the key of an IPFS block, which must be "
                      "stored as its own bytes: it can't be a multipart object or larger "
                      "than max_value_size.")
    if code == _IDENTITY:
        ok = value == digest
    else:
        try:
            hasher = multihash.get(code=code)
        except KeyError:
            return
        try:
            ok = hasher.digest(value, size=len(digest)) == multihash.wrap(digest, code)
        except ImportError:  # its implementation needs a package that is not installed
            return
        except ValueError:  # a digest length the function does not produce
            ok = False
    if not ok:
        raise S3Error("BadDigest", f"{name} is the key of an IPFS block, and these bytes "
                      "do not hash to its multihash: a block key holds only that block.")

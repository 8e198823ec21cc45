"""IPFS block keys in S3: an object that lands on one must be that block.

A PUT into bucket ``blocks`` writes Kubo's block keys (dscluster/blocks.py), so the
gateway refuses bytes that do not hash to the key's multihash; otherwise any credential
could replace a block that other objects, dsclient files and Kubo pins share. An object
too large to be stored as its bytes (a UnixFS DAG behind an ``/ipfs/<cid>`` pointer, as
every multipart object is) can't be a block either. Keys whose bytes can't be checked
are stored as they come, so that no Kubo set-up is refused.
"""

from __future__ import annotations

from ..blocks import BLOCKS_PREFIX, block_matches, block_multihash
from .errors import S3Error


def check_block(data_key: str, value: bytes | None) -> None:
    """BadDigest unless an object's value may be stored at ``data_key``; ``value`` is
    None for an object stored as a UnixFS DAG."""
    if value is None:
        if block_multihash(data_key) is None:
            return
        name = data_key[len(BLOCKS_PREFIX):]
        raise S3Error("BadDigest", f"{name} is the key of an IPFS block, which must be "
                      "stored as its own bytes: it can't be a multipart object or larger "
                      "than max_value_size.")
    if block_matches(data_key, value) is False:
        name = data_key[len(BLOCKS_PREFIX):]
        raise S3Error("BadDigest", f"{name} is the key of an IPFS block, and these bytes "
                      "do not hash to its multihash: a block key holds only that block.")

"""Where pins and garbage collection keep their records: under ``/.ipfs``, a prefix no
S3 bucket's keys can have (bucket names start with a letter or a digit), and outside
``/.dscluster``, which only nodes may touch: clients write these.

    /.ipfs/owned/<NAME>    dscluster wrote the block /blocks/<NAME>; empty value, the
                           record's version says when it was last claimed
    /.ipfs/leases/<ID>     an add in progress (JSON: started_ms, what)
    /.ipfs/pins/<CID>      a recursive pin (JSON: created_ms, name)
"""

from __future__ import annotations

from ..blocks import BLOCKS_PREFIX

ROOT = "/.ipfs"
OWNED_PREFIX = f"{ROOT}/owned"
LEASES_PREFIX = f"{ROOT}/leases"
PINS_PREFIX = f"{ROOT}/pins"


def owned_key(block_key: str) -> str:
    """The ownership marker of the block at ``block_key`` (``/blocks/<NAME>``)."""
    return f"{OWNED_PREFIX}/{block_key[len(BLOCKS_PREFIX):]}"


def block_of_owned(marker: str) -> str:
    return BLOCKS_PREFIX + marker[len(OWNED_PREFIX) + 1:]


def lease_key(lease_id: str) -> str:
    return f"{LEASES_PREFIX}/{lease_id}"


def pin_key(cid: str) -> str:
    return f"{PINS_PREFIX}/{cid}"

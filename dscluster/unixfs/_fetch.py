"""Reading one block: from the datastore, verified against its CID, then decoded.

Every read of the exporter (and of ``concat``) goes through here, so no byte reaches a
caller unverified. Identity-hashed CIDs carry their block inline and are never looked up
(as Kubo's idstore does).
"""

from __future__ import annotations

from ..datastore import Datastore
from ..errors import NotFound
from ._cid import BlockCid
from ._errors import BlockNotFound
from ._node import Node, decode_block


async def fetch_block(ds: Datastore, cid: BlockCid) -> bytes:
    if cid.is_identity:
        return cid.digest
    try:
        data = await ds.get(cid.key)
    except NotFound:
        raise BlockNotFound(f"block {cid} not found (key {cid.key})") from None
    cid.verify(data)
    return data


async def fetch_node(ds: Datastore, cid: BlockCid) -> Node:
    cid.require_supported()
    return decode_block(cid, await fetch_block(ds, cid))

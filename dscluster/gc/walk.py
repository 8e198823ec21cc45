"""The blocks a set of roots reaches: a concurrent walk over dag-pb links.

Every dag-pb block is read (verified against its CID) to learn its links, as Kubo's
`repo gc` does; a raw block has none and is not read. A block that is missing is noted,
not fatal: it can't be freed anyway, and the rest of the DAG may still be there. A
block of another codec (dag-cbor…) is kept but not followed: dscluster never writes one,
and `dsclient pin add` refuses roots it can't follow. Any other failure (a member down,
a corrupt block) stops the walk, because a sweep after an incomplete walk could free
what is still used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio

from ..concurrency import open_nursery
from ..datastore import Datastore
from ..errors import NotFound
from ..unixfs import BlockCid, linked_cids
from ..unixfs._cid import DAG_PB, RAW

DEFAULT_WINDOW = 32


@dataclass
class Reached:
    keys: set[str] = field(default_factory=set)  # block keys reached
    missing: list[str] = field(default_factory=list)  # CIDs of reached blocks not found
    unfollowed: list[str] = field(default_factory=list)  # CIDs whose links can't be read


async def walk(ds: Datastore, roots: Iterable[BlockCid], *, window: int = DEFAULT_WINDOW,
               on_block: Callable[[], None] | None = None,
               reached: Reached | None = None) -> Reached:
    """Every block the roots reach (added to ``reached`` when given)."""
    out = reached if reached is not None else Reached()
    limiter = trio.CapacityLimiter(window)

    async def visit(cid: BlockCid, nursery: trio.Nursery) -> None:
        if cid.is_identity:
            return  # inline in its CID: no block stored
        if cid.key in out.keys:
            return
        out.keys.add(cid.key)
        if on_block is not None:
            on_block()
        if cid.codec != DAG_PB:
            if cid.codec != RAW:  # a raw block has no links
                out.unfollowed.append(str(cid))
            return
        async with limiter:
            try:
                data = await ds.get(cid.key)
            except NotFound:
                out.missing.append(str(cid))
                return
        cid.verify(data)
        for child in linked_cids(cid, data):
            nursery.start_soon(visit, child, nursery)

    async with open_nursery() as nursery:
        for root in roots:
            nursery.start_soon(visit, root, nursery)
    return out

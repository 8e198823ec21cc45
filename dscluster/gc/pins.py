"""Pins: Kubo's recursive pins, kept in the cluster (keys.py) like any replicated key.

A pin names a root CID; garbage collection keeps every block the root reaches. Pinning
checks first that the whole DAG is there, as `ipfs pin add` does (it fetches what is
missing; we have nowhere to fetch from, so we say what is missing instead).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..datastore import Datastore
from ..errors import NotFound
from ..query import Query
from ..unixfs import BlockCid
from .keys import PINS_PREFIX, pin_key
from .walk import walk

# missing blocks named in the error of a pin that can't be added
SHOWN_MISSING = 5


@dataclass(frozen=True, slots=True)
class Pin:
    cid: str
    created_ms: int
    name: str = ""


def parse_root(cid: str) -> BlockCid:
    """A CID we can pin: one whose links garbage collection can follow."""
    return BlockCid.parse(cid).require_supported()


async def add_pin(ds: Datastore, cid: str, *, name: str = "", verify: bool = True,
                  on_block: Callable[[], None] | None = None) -> Pin:
    """Pin ``cid`` recursively; NotFound (and no pin) if blocks are missing.

    ``verify=False`` skips the walk, for a DAG its caller has just written."""
    root = parse_root(cid)
    if verify:
        reached = await walk(ds, [root], on_block=on_block)
        if reached.missing:
            shown = ", ".join(reached.missing[:SHOWN_MISSING])
            more = len(reached.missing) - SHOWN_MISSING
            raise NotFound(
                f"can't pin {root}: {len(reached.missing)} block(s) of its DAG are missing: "
                f"{shown}{f' and {more} more' if more > 0 else ''}")
    pin = Pin(str(root), int(time.time() * 1000), name)
    await ds.put(pin_key(pin.cid), json.dumps(
        {"v": 1, "created_ms": pin.created_ms, "name": name}).encode())
    return pin


async def remove_pin(ds: Datastore, cid: str) -> None:
    key = pin_key(str(parse_root(cid)))
    if not await ds.has(key):
        raise NotFound(f"{cid} is not pinned")
    await ds.delete(key)


def _decode(cid: str, raw: bytes | None) -> Pin | None:
    try:
        d = json.loads(raw or b"")
        if not isinstance(d, dict) or d.get("v") != 1:
            return None
        return Pin(cid, int(d.get("created_ms", 0)), str(d.get("name", "")))
    except (ValueError, TypeError):
        return None


async def list_pins(ds: Datastore) -> list[Pin]:
    """Every pin in CID order (a record that is not a pin's is left out)."""
    out = []
    async for e in ds.query(Query(prefix=PINS_PREFIX)):
        cid = e.key[len(PINS_PREFIX) + 1:]
        pin = _decode(cid, e.value)
        if pin is not None:
            out.append(pin)
    return out


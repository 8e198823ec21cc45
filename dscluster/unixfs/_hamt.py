"""Directories as `ipfs add` makes them: one basic node, or a HAMT shard once large.

Theory of operation. Kubo keeps a directory basic while its estimated size — the sum over
its entries of name length + binary CID length (boxo's "links" estimate) — is at most
HAMT_SHARDING_SIZE, and turns it into a HAMT shard past that. Entries only ever get added
during an import, so the final estimate decides.

A HAMT shard (boxo ipld/unixfs/hamt) hashes each name with murmur3-x64-64 (the first
64-bit half of murmur3 x64 128, seed 0) and reads the hash most significant bit first,
log2(fanout) bits a level: at depth d an entry goes to slot bits[d]. A slot holding one
entry links to it under the name ``%02X`` (slot, upper-case hex, padded to fanout-1's
width) + entry name; a slot that more entries share links to a sub-shard of the next
level, named by the slot alone. The structure therefore depends only on the set of
names. A shard node is dag-pb with links in slot order and UnixFS Data{HAMTShard, Data:
the occupied-slot bitfield (bit i = slot i, big-endian bytes, leading zero bytes
dropped), hashType 0x22 (murmur3-x64-64), fanout}.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import mmh3

from ._cid import BlockCid, CidPrefix
from ._errors import MalformedBlock, PathNotFound
from ._node import Block, Child, Node, basic_directory, hamt_shard
from ._types import HAMT_FANOUT, HAMT_SHARDING_SIZE

MURMUR3_X64_64 = 0x22
_HASH_BITS = 64
# boxo accepts fanouts that are powers of two up to 1024 (Kubo's --max-hamt-fanout range)
_MAX_FANOUT = 1024


def name_hash(name: bytes) -> int:
    """murmur3-x64-64 of a name: h1 of murmur3 x64 128 with seed 0."""
    return int.from_bytes(mmh3.mmh3_x64_128_digest(name)[:8], "little")


def link_size_estimate(name: bytes, cid: BlockCid) -> int:
    """Kubo's estimate of one directory link's share of the block (linksize.go)."""
    return len(name) + len(cid.binary)


def needs_sharding(entries: Sequence[tuple[bytes, Child]]) -> bool:
    estimate = sum(link_size_estimate(name, c.cid) for name, c in entries)
    return estimate > HAMT_SHARDING_SIZE


def _width(fanout: int) -> int:
    return len(f"{fanout - 1:X}")


def _slot(h: int, depth: int, fanout: int) -> int:
    bits = fanout.bit_length() - 1
    shift = _HASH_BITS - (depth + 1) * bits
    if shift < 0:
        raise MalformedBlock("HAMT deeper than the 64 bits of the name hash")
    return (h >> shift) & (fanout - 1)


def directory(
    entries: Sequence[tuple[bytes, Child]], *, prefix: CidPrefix, where: str
) -> tuple[list[Block], Child]:
    """The blocks of a directory of (name, child) entries, its root block last."""
    names = [name for name, _ in entries]
    if len(set(names)) != len(names):
        raise MalformedBlock(f"directory {where} has duplicate entry names")
    if not needs_sharding(entries):
        block, child = basic_directory(entries, prefix=prefix)
        return [block], child
    blocks: list[Block] = []
    hashed = [(name_hash(name), name, c) for name, c in entries]
    root = _build_shard(hashed, 0, HAMT_FANOUT, prefix, blocks)
    return blocks, root


def _build_shard(
    entries: list[tuple[int, bytes, Child]], depth: int, fanout: int, prefix: CidPrefix,
    blocks: list[Block],
) -> Child:
    slots: dict[int, list[tuple[int, bytes, Child]]] = {}
    for entry in entries:
        slots.setdefault(_slot(entry[0], depth, fanout), []).append(entry)
    width = _width(fanout)
    links: list[tuple[bytes, Child]] = []
    occupied = 0
    for slot in sorted(slots):
        group = slots[slot]
        label = f"{slot:0{width}X}".encode()
        occupied |= 1 << slot
        if len(group) == 1:
            _, name, child = group[0]
            links.append((label + name, child))
        else:
            links.append((label, _build_shard(group, depth + 1, fanout, prefix, blocks)))
    bitfield = occupied.to_bytes(fanout // 8, "big").lstrip(b"\0")
    block, child = hamt_shard(links, bitfield, fanout, MURMUR3_X64_64, prefix)
    blocks.append(block)
    return child


# ---- reading ---------------------------------------------------------------------------

FetchNode = Callable[[BlockCid], Awaitable[Node]]


def _check_shard(node: Node) -> int:
    """The shard's fanout, once its parameters are ones we can read."""
    fanout = node.fanout
    if node.hash_type != MURMUR3_X64_64:
        raise MalformedBlock(
            f"HAMT shard {node.cid} uses hash function 0x{node.hash_type:x}, not murmur3 (0x22)")
    if fanout < 2 or fanout > _MAX_FANOUT or fanout & (fanout - 1):
        raise MalformedBlock(f"HAMT shard {node.cid} has an invalid fanout {fanout}")
    return fanout


def _sub_shard(node: Node, child: Node) -> Node:
    if child.kind != "hamt-shard":
        raise MalformedBlock(
            f"HAMT shard {node.cid} links to {child.cid} as a sub-shard, but it is a "
            f"{child.kind}")
    return child


def _label(node: Node, i: int, width: int) -> tuple[int, bytes]:
    """Link i's slot and the entry name after it (empty for a sub-shard)."""
    name = node.links[i].name or b""
    try:
        slot = int(name[:width].decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        slot = -1
    if len(name) < width or slot < 0:
        raise MalformedBlock(f"HAMT shard {node.cid} has a malformed link name {name!r}")
    return slot, name[width:]


async def shard_links(
    node: Node, fetch: FetchNode, depth: int = 0
) -> AsyncIterator[tuple[Node, int]]:
    """Every entry of a HAMT-sharded directory as (shard node, link index), in slot
    order, sub-shards read through ``fetch`` as they are reached."""
    fanout = _check_shard(node)
    width = _width(fanout)
    _slot(0, depth, fanout)  # refuses a shard deeper than the hash
    for i in range(len(node.links)):
        _, rest = _label(node, i, width)
        if rest:
            yield node, i
        else:
            sub = _sub_shard(node, await fetch(node.link_cid(i)))
            if sub.fanout != fanout:
                raise MalformedBlock(f"HAMT shard {sub.cid} has a fanout unlike its parent's")
            async for item in shard_links(sub, fetch, depth + 1):
                yield item


def shard_entry_name(node: Node, i: int) -> str:
    """The directory entry name of link i of a shard node (refused unless safe)."""
    return node.entry_name(i, skip=_width(_check_shard(node)))


async def shard_lookup(node: Node, name: bytes, fetch: FetchNode) -> BlockCid:
    """The CID of entry ``name``: one shard node read a level, down the name's hash."""
    h = name_hash(name)
    depth = 0
    root = node.cid
    while True:
        fanout = _check_shard(node)
        width = _width(fanout)
        want = _slot(h, depth, fanout)
        for i in range(len(node.links)):
            slot, rest = _label(node, i, width)
            if slot != want:
                continue
            if not rest:
                node = _sub_shard(node, await fetch(node.link_cid(i)))
                break
            if rest == name:
                return node.link_cid(i)
        else:
            raise PathNotFound(f"no entry {name.decode(errors='replace')!r} in directory {root}")
        depth += 1

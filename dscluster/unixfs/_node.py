"""UnixFS nodes: building the blocks `ipfs add` makes, and reading any UnixFS block.

The builders reproduce go-ipfs (boxo) byte for byte: a dag-pb leaf is Data{File, Data,
filesize} (Data omitted for the empty file), an inner file node is Data{File, filesize,
blocksizes} with one link per child (empty name, Tsize = the child's cumulative size),
a directory is Data{Directory} with links sorted by name, a symlink Data{Symlink, target}.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._cid import DAG_PB, RAW, BlockCid
from ._dagpb import (
    DataType,
    FSData,
    PBLink,
    decode_fsdata,
    decode_node,
    encode_node_parts,
    fsdata_parts,
)
from ._errors import DirectoryTooLarge, MalformedBlock
from ._types import HAMT_SHARDING_SIZE


@dataclass(frozen=True, slots=True)
class Block:
    cid: BlockCid
    data: bytes


@dataclass(frozen=True, slots=True)
class Child:
    """A node as its parent links to it: CID, content bytes, cumulative block bytes."""

    cid: BlockCid
    size: int
    tsize: int


def _pb_block(links: Sequence[PBLink], fsdata: FSData, version: int) -> Block:
    data = encode_node_parts(links, fsdata_parts(fsdata))
    return Block(BlockCid.for_block(data, version=version, codec=DAG_PB), data)


def _cumulative(block: Block, children: Iterable[Child]) -> int:
    return len(block.data) + sum(c.tsize for c in children)


def file_leaf(chunk: bytes, *, raw: bool, version: int) -> tuple[Block, Child]:
    """A leaf holding one chunk: a raw block (always CIDv1, as Kubo) or a dag-pb File."""
    if raw:
        block = Block(BlockCid.for_block(chunk, version=1, codec=RAW), chunk)
    else:
        fs = FSData(DataType.FILE, data=chunk or None, filesize=len(chunk))
        block = _pb_block((), fs, version)
    return block, Child(block.cid, len(chunk), len(block.data))


def file_parent(children: Sequence[Child], *, version: int) -> tuple[Block, Child]:
    """An inner file node over ``children`` (in content order)."""
    sizes = tuple(c.size for c in children)
    links = [PBLink(c.cid.binary, b"", c.tsize) for c in children]
    block = _pb_block(links, FSData(DataType.FILE, filesize=sum(sizes), blocksizes=sizes), version)
    return block, Child(block.cid, sum(sizes), _cumulative(block, children))


def link_size_estimate(name: bytes, cid_len: int) -> int:
    """Kubo's estimate of one directory link's share of the block (linksize.go)."""
    return len(name) + cid_len


def directory(
    entries: Sequence[tuple[bytes, Child]], *, version: int, where: str
) -> tuple[Block, Child]:
    """A basic (non-sharded) directory; ``where`` names it in errors.

    Raises DirectoryTooLarge where `ipfs add` would switch to a HAMT shard.
    """
    ordered = sorted(entries, key=lambda e: e[0])
    estimate = sum(link_size_estimate(name, len(c.cid.binary)) for name, c in ordered)
    check_directory_size(where, len(ordered), estimate)
    links = [PBLink(c.cid.binary, name, c.tsize) for name, c in ordered]
    block = _pb_block(links, FSData(DataType.DIRECTORY), version)
    children = [c for _, c in ordered]
    return block, Child(block.cid, sum(c.size for c in children), _cumulative(block, children))


def check_directory_size(where: str, count: int, estimate: int) -> None:
    if estimate >= HAMT_SHARDING_SIZE:
        raise DirectoryTooLarge(
            f"directory {where} is too large for one block ({count} entries, estimated "
            f"{estimate} bytes, Kubo shards from {HAMT_SHARDING_SIZE}): HAMT-sharded "
            "directories are not supported"
        )


def symlink(target: bytes, *, version: int) -> tuple[Block, Child]:
    block = _pb_block((), FSData(DataType.SYMLINK, data=target), version)
    return block, Child(block.cid, 0, len(block.data))


# ---- reading ---------------------------------------------------------------------------

_KINDS: dict[int, str] = {
    DataType.RAW: "file",  # old go-ipfs wrote file leaves with the Raw data type
    DataType.FILE: "file",
    DataType.DIRECTORY: "directory",
    DataType.SYMLINK: "symlink",
    DataType.HAMT_SHARD: "hamt-shard",
    DataType.METADATA: "metadata",
}


@dataclass(frozen=True, slots=True)
class Node:
    """A verified, decoded block.

    kind: "file", "raw" (a raw-codec block), "directory", "symlink", "hamt-shard",
    "metadata". ``data`` is the node's own content: a file node's inline bytes, a raw
    block, a symlink's target. A file's content is ``data`` followed by its children's
    content, child i holding ``blocksizes[i]`` bytes.
    """

    cid: BlockCid
    kind: str
    data: bytes
    links: tuple[PBLink, ...]
    blocksizes: tuple[int, ...]
    block_size: int

    @property
    def content_size(self) -> int:
        return len(self.data) + sum(self.blocksizes)

    @property
    def cumulative_size(self) -> int:
        return self.block_size + sum(link.tsize or 0 for link in self.links)

    def link_cid(self, i: int) -> BlockCid:
        return BlockCid.from_bytes(self.links[i].hash)

    def entry_name(self, i: int) -> str:
        """The name of directory entry i, refused unless it is one safe path segment."""
        raw = self.links[i].name
        name = os.fsdecode(raw) if raw else ""
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise MalformedBlock(f"directory {self.cid} has an unsafe entry name {name!r}")
        return name


def decode_block(cid: BlockCid, block: bytes) -> Node:
    """Decode a block already verified against ``cid``."""
    if cid.codec == RAW:
        return Node(cid, "raw", block, (), (), len(block))
    try:
        pb = decode_node(block)
        if pb.data is None:
            raise ValueError("dag-pb node without Data is not UnixFS")
        fs = decode_fsdata(pb.data)
    except ValueError as e:
        raise MalformedBlock(f"block {cid} is not a valid UnixFS node: {e}") from None
    kind = _KINDS.get(fs.type)
    if kind is None:
        raise MalformedBlock(f"block {cid} has unknown UnixFS type {fs.type}")
    blocksizes: tuple[int, ...] = ()
    if kind == "file":
        if len(fs.blocksizes) != len(pb.links):
            raise MalformedBlock(
                f"file node {cid} has {len(pb.links)} links but {len(fs.blocksizes)} blocksizes"
            )
        blocksizes = fs.blocksizes
        size = len(fs.data or b"") + sum(blocksizes)
        if fs.filesize is not None and fs.filesize != size:
            raise MalformedBlock(
                f"file node {cid} says filesize {fs.filesize} but holds {size} bytes"
            )
    return Node(cid, kind, fs.data or b"", pb.links, blocksizes, len(block))

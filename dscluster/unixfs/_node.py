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

from ._cid import DAG_PB, RAW, BlockCid, CidPrefix
from ._dagpb import (
    DataType,
    FSData,
    PBLink,
    decode_fsdata,
    decode_node,
    encode_node_parts,
    fsdata_parts,
)
from ._errors import MalformedBlock


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


def _pb_block(links: Sequence[PBLink], fsdata: FSData, prefix: CidPrefix) -> Block:
    data = encode_node_parts(links, fsdata_parts(fsdata))
    return Block(prefix.cid(data, DAG_PB), data)


def _cumulative(block: Block, children: Iterable[Child]) -> int:
    return len(block.data) + sum(c.tsize for c in children)


def file_leaf(
    chunk: bytes, *, raw: bool, prefix: CidPrefix, unixfs_raw: bool = False
) -> tuple[Block, Child]:
    """A leaf holding one chunk: a raw block (always CIDv1, as Kubo) or a dag-pb node of
    UnixFS type File (``unixfs_raw``: type Raw, as boxo's trickle layout makes them)."""
    if raw:
        block = Block(prefix.cid(chunk, RAW), chunk)
    else:
        kind = DataType.RAW if unixfs_raw else DataType.FILE
        fs = FSData(kind, data=chunk or None, filesize=len(chunk))
        block = _pb_block((), fs, prefix)
    return block, Child(block.cid, len(chunk), len(block.data))


def file_parent(children: Sequence[Child], *, prefix: CidPrefix) -> tuple[Block, Child]:
    """An inner file node over ``children`` (in content order)."""
    sizes = tuple(c.size for c in children)
    links = [PBLink(c.cid.binary, b"", c.tsize) for c in children]
    block = _pb_block(links, FSData(DataType.FILE, filesize=sum(sizes), blocksizes=sizes), prefix)
    return block, Child(block.cid, sum(sizes), _cumulative(block, children))


def link_size_estimate(name: bytes, cid_len: int) -> int:
    """Kubo's estimate of one directory link's share of the block (linksize.go)."""
    return len(name) + cid_len


def basic_directory(
    entries: Sequence[tuple[bytes, Child]], *, prefix: CidPrefix
) -> tuple[Block, Child]:
    """A basic (non-sharded) directory of (name, child) entries, in any order."""
    ordered = sorted(entries, key=lambda e: e[0])
    links = [PBLink(c.cid.binary, name, c.tsize) for name, c in ordered]
    return _node_over(links, FSData(DataType.DIRECTORY), [c for _, c in ordered], prefix)


def _node_over(
    links: Sequence[PBLink], fs: FSData, children: Sequence[Child], prefix: CidPrefix
) -> tuple[Block, Child]:
    block = _pb_block(links, fs, prefix)
    return block, Child(block.cid, sum(c.size for c in children), _cumulative(block, children))


def hamt_shard(
    links: Sequence[tuple[bytes, Child]], bitfield: bytes, fanout: int, hash_type: int,
    prefix: CidPrefix,
) -> tuple[Block, Child]:
    """One node of a HAMT-sharded directory: ``links`` already named and in slot order."""
    fs = FSData(DataType.HAMT_SHARD, data=bitfield or None, hash_type=hash_type, fanout=fanout)
    pb = [PBLink(c.cid.binary, name, c.tsize) for name, c in links]
    return _node_over(pb, fs, [c for _, c in links], prefix)


def symlink(target: bytes, *, prefix: CidPrefix) -> tuple[Block, Child]:
    block = _pb_block((), FSData(DataType.SYMLINK, data=target), prefix)
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
    fanout: int = 0  # of a HAMT shard, with its hash function's multihash code
    hash_type: int = 0

    @property
    def content_size(self) -> int:
        return len(self.data) + sum(self.blocksizes)

    @property
    def cumulative_size(self) -> int:
        return self.block_size + sum(link.tsize or 0 for link in self.links)

    def link_cid(self, i: int) -> BlockCid:
        return BlockCid.from_bytes(self.links[i].hash)

    def entry_name(self, i: int, *, skip: int = 0) -> str:
        """The name of directory entry i (after ``skip`` bytes: a HAMT link's slot),
        refused unless it is one safe path segment."""
        raw = (self.links[i].name or b"")[skip:]
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
    if kind == "hamt-shard":
        return Node(cid, kind, fs.data or b"", pb.links, (), len(block),
                    fs.fanout or 0, fs.hash_type or 0)
    return Node(cid, kind, fs.data or b"", pb.links, blocksizes, len(block))


def linked_cids(cid: BlockCid, block: bytes) -> list[BlockCid]:
    """The CIDs a block verified against ``cid`` links to: every link of a dag-pb node,
    UnixFS or not (garbage collection follows them all); none for a raw block."""
    if cid.codec == RAW:
        return []
    try:
        links = decode_node(block).links
    except ValueError as e:
        raise MalformedBlock(f"block {cid} is not valid dag-pb: {e}") from None
    return [BlockCid.from_bytes(link.hash) for link in links]


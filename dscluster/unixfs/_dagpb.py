"""The two protobuf messages of UnixFS: dag-pb's PBNode/PBLink and UnixFS's Data.

Theory of operation: both codecs are hand-written on purpose. dag-pb's canonical form
puts every Links field (2) before the Data field (1), which generic protobuf serializers
never do (they emit fields in field-number order), and the dag-pb spec asks decoders to
reject what protobuf would accept (unknown fields, repeated Data, Links after Data, link
fields out of order). UnixFS's Data is a plain proto2 message, read with the same small
field reader. Both are pinned to known bytes by tests (Kubo's empty-file block, the CID
vectors), so the encoder's output is byte-identical to go-ipfs's.

Decoders raise ``ValueError``; callers that know which block they decode turn it into an
error that names the CID.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum

_WIRE_VARINT = 0
_WIRE_LEN = 2


def uvarint(n: int) -> bytes:
    """Unsigned LEB128, as protobuf and multiformats' unsigned-varint write it."""
    if n < 0:
        raise ValueError("varint must not be negative")
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_uvarint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; returns (value, position after it)."""
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        if shift > 63:
            raise ValueError("varint longer than 64 bits")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 and shift:
                raise ValueError("varint is not minimally encoded")
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field: an int for a varint, bytes for a
    length-delimited field; other wire types are refused (neither message has them)."""
    view = memoryview(buf)
    pos = 0
    end = len(buf)
    while pos < end:
        tag, pos = read_uvarint(view, pos)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == _WIRE_VARINT:
            value, pos = read_uvarint(view, pos)
            yield field, value
        elif wire == _WIRE_LEN:
            size, pos = read_uvarint(view, pos)
            if pos + size > end:
                raise ValueError("length-delimited field runs past the end")
            yield field, bytes(view[pos : pos + size])
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire} (field {field})")


def _len_field(tag: bytes, value: bytes) -> bytes:
    return tag + uvarint(len(value)) + value


# ---- dag-pb ----------------------------------------------------------------------------

_LINK_HASH = b"\x0a"  # PBLink.Hash, field 1, length-delimited
_LINK_NAME = b"\x12"  # PBLink.Name, field 2, length-delimited
_LINK_TSIZE = b"\x18"  # PBLink.Tsize, field 3, varint
_NODE_DATA = b"\x0a"  # PBNode.Data, field 1, length-delimited
_NODE_LINK = b"\x12"  # PBNode.Links, field 2, length-delimited


@dataclass(frozen=True, slots=True)
class PBLink:
    """A dag-pb link. ``name`` is the raw bytes of the name (UTF-8 by convention);
    None means absent, which differs on the wire from the empty name go-ipfs writes."""

    hash: bytes
    name: bytes | None = b""
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    links: tuple[PBLink, ...]
    data: bytes | None


def encode_link(link: PBLink) -> bytes:
    parts = [_len_field(_LINK_HASH, link.hash)]
    if link.name is not None:
        parts.append(_len_field(_LINK_NAME, link.name))
    if link.tsize is not None:
        parts.append(_LINK_TSIZE + uvarint(link.tsize))
    return b"".join(parts)


def encode_node(links: Sequence[PBLink], data: bytes | None) -> bytes:
    """Canonical dag-pb: all links (in the given order), then Data."""
    return encode_node_parts(links, None if data is None else [data])


def encode_node_parts(links: Sequence[PBLink], data_parts: Sequence[bytes] | None) -> bytes:
    """``encode_node`` with Data given as pieces to join: a leaf's chunk is then copied
    once into its block, not once into UnixFS Data and again into the node."""
    parts = [_len_field(_NODE_LINK, encode_link(link)) for link in links]
    if data_parts is not None:
        parts.append(_NODE_DATA + uvarint(sum(len(p) for p in data_parts)))
        parts.extend(data_parts)
    return b"".join(parts)


def _decode_link(buf: bytes) -> PBLink:
    hash_: bytes | None = None
    name: bytes | None = None
    tsize: int | None = None
    last = 0
    for field, value in _fields(buf):
        if field <= last:
            raise ValueError("PBLink fields out of order or repeated")
        last = field
        if field == 1 and isinstance(value, bytes):
            hash_ = value
        elif field == 2 and isinstance(value, bytes):
            name = value
        elif field == 3 and isinstance(value, int):
            tsize = value
        else:
            raise ValueError(f"unexpected PBLink field {field} ({type(value).__name__})")
    if hash_ is None:
        raise ValueError("PBLink without Hash")
    return PBLink(hash_, name, tsize)


def decode_node(buf: bytes) -> PBNode:
    """Strict dag-pb decoding (the dag-pb spec's rules for decoders)."""
    links: list[PBLink] = []
    data: bytes | None = None
    for field, value in _fields(buf):
        if field == 2 and isinstance(value, bytes):
            if data is not None:
                raise ValueError("PBNode Links after Data")
            links.append(_decode_link(value))
        elif field == 1 and isinstance(value, bytes):
            if data is not None:
                raise ValueError("PBNode has more than one Data field")
            data = value
        else:
            raise ValueError(f"unexpected PBNode field {field} ({type(value).__name__})")
    return PBNode(tuple(links), data)


# ---- UnixFS Data ----------------------------------------------------------------------


class DataType(IntEnum):
    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class FSData:
    """UnixFS's Data message (mode and mtime are read past, not kept: the importer
    never writes them, as ``ipfs add`` does not by default)."""

    type: int
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()
    hash_type: int | None = None
    fanout: int | None = None


def encode_fsdata(d: FSData) -> bytes:
    """proto2 in field order, optional fields only when set, blocksizes unpacked (as
    go-ipfs's gogo-protobuf writes them)."""
    return b"".join(fsdata_parts(d))


def fsdata_parts(d: FSData) -> list[bytes]:
    """``encode_fsdata`` as pieces, ``d.data`` among them uncopied."""
    parts = [b"\x08" + uvarint(d.type)]
    if d.data is not None:
        parts.append(b"\x12" + uvarint(len(d.data)))
        parts.append(d.data)
    if d.filesize is not None:
        parts.append(b"\x18" + uvarint(d.filesize))
    parts.extend(b"\x20" + uvarint(b) for b in d.blocksizes)
    if d.hash_type is not None:
        parts.append(b"\x28" + uvarint(d.hash_type))
    if d.fanout is not None:
        parts.append(b"\x30" + uvarint(d.fanout))
    return parts


def _packed_varints(buf: bytes) -> Iterator[int]:
    pos = 0
    while pos < len(buf):
        value, pos = read_uvarint(buf, pos)
        yield value


def decode_fsdata(buf: bytes) -> FSData:
    """proto2 semantics: unknown fields are skipped, blocksizes may be packed or not."""
    type_: int | None = None
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    hash_type: int | None = None
    fanout: int | None = None
    for field, value in _fields(buf):
        if isinstance(value, bytes):
            if field == 2:
                data = value
            elif field == 4:
                blocksizes.extend(_packed_varints(value))
            elif field in (1, 3, 5, 6):
                raise ValueError(f"UnixFS Data field {field} has the wrong wire type")
        elif field == 1:
            type_ = value
        elif field == 3:
            filesize = value
        elif field == 4:
            blocksizes.append(value)
        elif field == 5:
            hash_type = value
        elif field == 6:
            fanout = value
        elif field == 2:
            raise ValueError("UnixFS Data field 2 has the wrong wire type")
    if type_ is None:
        raise ValueError("UnixFS Data without Type")
    return FSData(type_, data, filesize, tuple(blocksizes), hash_type, fanout)

"""dag-pb and UnixFS Data codecs against known bytes; CIDs and block keys."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID, multihash

from dscluster.errors import InvalidArgument, NotFound, StoreError
from dscluster.unixfs import (
    BlockCid,
    CorruptBlock,
    InvalidCid,
    UnsupportedCid,
    block_key,
)
from dscluster.unixfs._cid import DAG_PB, RAW
from dscluster.unixfs._dagpb import (
    DataType,
    FSData,
    PBLink,
    PBNode,
    decode_fsdata,
    decode_node,
    encode_fsdata,
    encode_node,
    read_uvarint,
    uvarint,
)
from tests.unit.unixfs_support import VECTORS

# Blocks `ipfs add` makes, with the CIDs Kubo gives them.
EMPTY_FILE = bytes.fromhex("0a0408021800"), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
FILE_A = bytes.fromhex("0a0708021201611801"), "QmfDmsHTywy6L9Ne5RXsj5YumDedfBLMvCvmaxjBoe6w4d"
EMPTY_DIR = bytes.fromhex("0a020801"), "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"


@pytest.mark.parametrize(
    ("block", "fsdata", "cid"),
    [
        (*EMPTY_FILE[:1], FSData(DataType.FILE, filesize=0), EMPTY_FILE[1]),
        (*FILE_A[:1], FSData(DataType.FILE, data=b"a", filesize=1), FILE_A[1]),
        (*EMPTY_DIR[:1], FSData(DataType.DIRECTORY), EMPTY_DIR[1]),
    ],
)
def test_known_blocks(block: bytes, fsdata: FSData, cid: str) -> None:
    assert encode_node([], encode_fsdata(fsdata)) == block
    assert str(BlockCid.for_block(block, version=0, codec=DAG_PB)) == cid
    node = decode_node(block)
    assert node.links == ()
    assert decode_fsdata(node.data or b"") == fsdata


def test_link_layout_is_canonical() -> None:
    """Links before Data; each link Hash, Name (present even if empty), Tsize."""
    target = BlockCid.parse(EMPTY_FILE[1]).binary
    block = encode_node([PBLink(target, b"", 6)], b"\x08\x02")
    assert block == b"\x12\x28\x0a\x22" + target + b"\x12\x00\x18\x06" + b"\x0a\x02\x08\x02"
    assert decode_node(block) == PBNode((PBLink(target, b"", 6),), b"\x08\x02")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("0a020801" + "1202" + "0a00", "Links after Data"),
        ("0a0208010a020801", "more than one Data"),
        ("1a00", "unexpected PBNode field 3"),
        ("0801", "unexpected PBNode field 1"),
        ("12021800", "PBLink without Hash"),
        ("12041200" + "0a00", "out of order"),
        ("12040a000a00", "out of order"),
        ("0a05 08", "runs past the end"),
        ("0a", "truncated varint"),
        ("0a8000", "not minimally encoded"),
        ("0b00", "unsupported wire type"),
    ],
)
def test_dagpb_decoder_is_strict(raw: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        decode_node(bytes.fromhex(raw.replace(" ", "")))


def test_fsdata_reads_packed_and_unpacked_blocksizes_and_skips_unknown_fields() -> None:
    unpacked = bytes.fromhex("0802180a20052005")
    packed = bytes.fromhex("0802180a22020505")
    with_mode = packed + bytes.fromhex("38a403")  # mode 0o644, which we do not keep
    for raw in (unpacked, packed, with_mode):
        assert decode_fsdata(raw) == FSData(DataType.FILE, filesize=10, blocksizes=(5, 5))
    assert encode_fsdata(decode_fsdata(packed)) == unpacked  # go-ipfs writes them unpacked
    with pytest.raises(ValueError, match="without Type"):
        decode_fsdata(b"\x18\x00")
    with pytest.raises(ValueError, match="wire type"):
        decode_fsdata(b"\x0a\x00")


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_round_trip(n: int) -> None:
    raw = uvarint(n)
    assert read_uvarint(raw + b"\xff", 0) == (n, len(raw))


links = st.builds(
    PBLink,
    hash=st.binary(min_size=1, max_size=40),
    name=st.none() | st.binary(max_size=20),
    tsize=st.none() | st.integers(min_value=0, max_value=2**63),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(links, max_size=5), st.none() | st.binary(max_size=50))
def test_dagpb_round_trip(node_links: list[PBLink], data: bytes | None) -> None:
    block = encode_node(node_links, data)
    assert decode_node(block) == PBNode(tuple(node_links), data)
    assert encode_node(node_links, data) == block


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_decoders_only_raise_value_error(raw: bytes) -> None:
    for decode in (decode_node, decode_fsdata):
        try:
            decode(raw)
        except ValueError:
            pass


def test_block_key_vector() -> None:
    example = VECTORS["block_keys"]["example"]
    assert block_key(example["cid"]) == example["key"]
    assert block_key(CID.decode(example["cid"])) == example["key"]
    # the key is the multihash's: the same for the CIDv1 of the block, and for raw
    v1 = CID.decode(example["cid"]).set(version=1)
    assert block_key(str(v1)) == example["key"]
    assert block_key(str(v1.set(codec="raw"))) == example["key"]


def test_cid_parse_and_format() -> None:
    v0 = BlockCid.parse(EMPTY_FILE[1])
    assert (v0.version, v0.codec, len(v0.digest)) == (0, DAG_PB, 32)
    assert str(v0) == EMPTY_FILE[1]
    assert BlockCid.from_bytes(v0.binary) == v0
    v1 = BlockCid.parse(" bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku\n")
    assert (v1.version, v1.codec) == (1, RAW)
    assert str(v1) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert BlockCid.from_bytes(v1.binary) == v1
    v1.verify(b"")


@pytest.mark.parametrize("text", ["", "hello", "Qm123", "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcG",
                                  "bafy!!!", "zzzz"])
def test_invalid_cids(text: str) -> None:
    with pytest.raises(InvalidCid, match="invalid CID") as info:
        BlockCid.parse(text)
    assert isinstance(info.value, InvalidArgument)


def test_unsupported_codec_and_hash() -> None:
    cbor = str(CID("base32", 1, "dag-cbor", multihash.digest(b"x", "sha2-256")))
    with pytest.raises(UnsupportedCid, match=r"dag-cbor \(0x71\).*only dag-pb"):
        BlockCid.parse(cbor).require_supported()
    md5 = str(CID("base32", 1, "raw", multihash.digest(b"x", "md5")))
    with pytest.raises(UnsupportedCid, match="0xd5/16 bytes; supported: identity, sha2-256"):
        BlockCid.parse(md5).require_supported()
    short = BlockCid.of_multihash(1, 0x55, b"\x12\x10" + bytes(16))  # truncated sha2-256
    with pytest.raises(UnsupportedCid, match="0x12/16 bytes"):
        short.require_supported()
    # Kubo's other hash functions are read and verified
    for name in ("sha2-512", "sha3-256", "blake2b-256"):
        good = BlockCid.parse(str(CID("base32", 1, "raw", multihash.digest(b"x", name))))
        good.require_supported().verify(b"x")
        with pytest.raises(CorruptBlock):
            good.verify(b"y")
    # block_key works for any CID: Kubo stores every codec under /blocks/
    assert block_key(cbor).startswith("/blocks/CIQ")


def test_verify_names_the_cid() -> None:
    block, cid = FILE_A
    parsed = BlockCid.parse(cid)
    parsed.verify(block)
    with pytest.raises(CorruptBlock, match=cid) as info:
        parsed.verify(block[:-1] + b"\x02")
    assert isinstance(info.value, StoreError)
    identity = BlockCid.parse(str(CID("base32", 1, "raw", multihash.digest(b"hi", "identity"))))
    assert identity.is_identity
    identity.verify(b"hi")
    with pytest.raises(CorruptBlock):
        identity.verify(b"ho")
    assert not isinstance(info.value, NotFound)

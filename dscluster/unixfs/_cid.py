"""CIDs of blocks: parsing, formatting, the datastore key, hashing and verification.

Text CIDs are parsed and formatted by ``multiformats`` (multibase, base58btc for CIDv0,
base32 for CIDv1, as Kubo prints them). Binary CIDs inside dag-pb links are split here
with one varint reader: every link of every node is parsed while reading a file, and
``multiformats.CID.decode`` costs about 0.2 ms each, more than hashing the block.

The key is Kubo's: ``/blocks/`` + upper-case unpadded RFC 4648 base32 of the multihash
(go-ipfs's dshelp.MultihashToDsKey), so the CID version and codec do not change where a
block lives. Standard-library base64 is that exact alphabet.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from multiformats import CID, multicodec

from ._dagpb import read_uvarint, uvarint
from ._errors import CorruptBlock, InvalidCid, UnsupportedCid

DAG_PB = 0x70
RAW = 0x55
SHA2_256 = 0x12
IDENTITY = 0x00

CODEC_NAMES = {DAG_PB: "dag-pb", RAW: "raw"}
HASH_NAMES = {SHA2_256: "sha2-256", IDENTITY: "identity"}
BLOCKS_PREFIX = "/blocks/"


@dataclass(frozen=True, slots=True)
class BlockCid:
    """A parsed CID: version, codec and multihash (with its function code and digest)."""

    version: int
    codec: int
    multihash: bytes
    hash_code: int
    digest: bytes

    @classmethod
    def of_multihash(cls, version: int, codec: int, multihash: bytes) -> BlockCid:
        try:
            code, pos = read_uvarint(multihash, 0)
            size, pos = read_uvarint(multihash, pos)
        except ValueError as e:
            raise InvalidCid(f"invalid multihash {multihash.hex()}: {e}") from None
        digest = multihash[pos:]
        if len(digest) != size:
            raise InvalidCid(f"invalid multihash {multihash.hex()}: digest length mismatch")
        if version == 0 and (codec != DAG_PB or code != SHA2_256 or size != 32):
            raise InvalidCid("CIDv0 must be dag-pb with a 32-byte sha2-256 multihash")
        return cls(version, codec, multihash, code, digest)

    @classmethod
    def for_block(cls, data: bytes, *, version: int, codec: int) -> BlockCid:
        """The sha2-256 CID of a block we make."""
        digest = hashlib.sha256(data).digest()
        return cls(version, codec, b"\x12\x20" + digest, SHA2_256, digest)

    @classmethod
    def from_bytes(cls, raw: bytes) -> BlockCid:
        """A binary CID, as dag-pb links hold them."""
        if len(raw) == 34 and raw[0] == 0x12 and raw[1] == 0x20:
            return cls(0, DAG_PB, raw, SHA2_256, raw[2:])
        try:
            version, pos = read_uvarint(raw, 0)
            codec, pos = read_uvarint(raw, pos)
        except ValueError as e:
            raise InvalidCid(f"invalid binary CID {raw.hex()}: {e}") from None
        if version != 1:
            raise InvalidCid(f"invalid binary CID {raw.hex()}: version {version}")
        return cls.of_multihash(1, codec, raw[pos:])

    @classmethod
    def parse(cls, value: str | bytes | CID | BlockCid) -> BlockCid:
        """Any valid CID (string, binary or multiformats CID); see ``require_supported``."""
        if isinstance(value, BlockCid):
            return value
        if isinstance(value, bytes):
            return cls.from_bytes(value)
        if isinstance(value, str):
            text = value.strip()
            try:
                value = CID.decode(text)
            except Exception as e:  # multiformats raises a dozen unrelated classes
                # (KeyError subclasses among them, whose str() is a quoted repr)
                detail = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
                raise InvalidCid(f"invalid CID {text!r}: {detail}") from None
        return cls.of_multihash(value.version, value.codec.code, bytes(value.digest))

    def require_supported(self) -> BlockCid:
        """Raise UnsupportedCid unless we can verify and decode this block."""
        if self.codec not in CODEC_NAMES:
            raise UnsupportedCid(
                f"CID {self} has codec {_codec_name(self.codec)} (0x{self.codec:x}); "
                "only dag-pb (0x70) and raw (0x55) are supported"
            )
        if self.hash_code not in HASH_NAMES or (
            self.hash_code == SHA2_256 and len(self.digest) != 32
        ):
            raise UnsupportedCid(
                f"CID {self} uses multihash 0x{self.hash_code:x}/{len(self.digest)} bytes; "
                "only sha2-256 and identity are supported"
            )
        return self

    @property
    def binary(self) -> bytes:
        if self.version == 0:
            return self.multihash
        return uvarint(self.version) + uvarint(self.codec) + self.multihash

    @property
    def key(self) -> str:
        return BLOCKS_PREFIX + base64.b32encode(self.multihash).decode().rstrip("=")

    @property
    def is_identity(self) -> bool:
        return self.hash_code == IDENTITY

    def verify(self, data: bytes) -> None:
        """Raise CorruptBlock unless ``data`` hashes to this CID."""
        if self.hash_code == IDENTITY:
            ok = data == self.digest
        else:
            ok = hashlib.sha256(data).digest() == self.digest
        if not ok:
            raise CorruptBlock(
                f"block {self} is corrupt: its content does not match the CID "
                f"({HASH_NAMES.get(self.hash_code, hex(self.hash_code))}, key {self.key})"
            )

    def __str__(self) -> str:
        base = "base58btc" if self.version == 0 else "base32"
        try:
            return str(CID(base, self.version, self.codec, self.multihash))
        except Exception:  # a codec multiformats does not know: still name it somehow
            return "b" + base64.b32encode(self.binary).decode().rstrip("=").lower()


def _codec_name(code: int) -> str:
    try:
        return multicodec.get(code=code).name
    except Exception:  # unknown to the multicodec table
        return "unknown"


def block_key(cid: str | CID) -> str:
    """The datastore key of a block: ``/blocks/<upper-case base32 of the multihash>``."""
    return BlockCid.parse(cid).key

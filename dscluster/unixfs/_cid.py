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
from collections.abc import Callable
from dataclasses import dataclass

from multiformats import CID, multibase, multicodec

from ._dagpb import read_uvarint, uvarint
from ._errors import CorruptBlock, InvalidCid, UnsupportedCid

DAG_PB = 0x70
RAW = 0x55
SHA2_256 = 0x12
IDENTITY = 0x00
# Kubo's limit on an identity CID's digest (boxo verifcid.DefaultMaxIdentityDigestSize)
MAX_IDENTITY_SIZE = 128

CODEC_NAMES = {DAG_PB: "dag-pb", RAW: "raw"}


def _hashlib(name: str, **params: int) -> Callable[[bytes], bytes]:
    return lambda data: hashlib.new(name, data, **params).digest()


# The multihash functions we hash and verify with: code -> (Kubo's name, function). Those
# of Kubo's allowlist that the standard library has (keccak, shake and blake3 it lacks).
HASHES: dict[int, tuple[str, Callable[[bytes], bytes]]] = {
    SHA2_256: ("sha2-256", _hashlib("sha256")),
    0x13: ("sha2-512", _hashlib("sha512")),
    0x17: ("sha3-224", _hashlib("sha3_224")),
    0x16: ("sha3-256", _hashlib("sha3_256")),
    0x15: ("sha3-384", _hashlib("sha3_384")),
    0x14: ("sha3-512", _hashlib("sha3_512")),
    0xB220: ("blake2b-256", _hashlib("blake2b", digest_size=32)),
    0xB230: ("blake2b-384", _hashlib("blake2b", digest_size=48)),
    0xB240: ("blake2b-512", _hashlib("blake2b", digest_size=64)),
    0xB260: ("blake2s-256", _hashlib("blake2s", digest_size=32)),
}
HASH_CODES = {name: code for code, (name, _) in HASHES.items()}


def hash_functions() -> list[str]:
    """The names ``AddOptions.hash`` (Kubo's ``--hash``) takes."""
    return sorted(HASH_CODES)
HASH_NAMES = {IDENTITY: "identity", **{code: name for code, (name, _) in HASHES.items()}}
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
    def for_block(
        cls, data: bytes, *, version: int, codec: int, hash_code: int = SHA2_256
    ) -> BlockCid:
        """The CID of a block we make (CIDv0 only for sha2-256, as ``CidPrefix`` ensures)."""
        digest = HASHES[hash_code][1](data)
        multihash = uvarint(hash_code) + uvarint(len(digest)) + digest
        return cls(version, codec, multihash, hash_code, digest)

    @classmethod
    def identity(cls, data: bytes, *, codec: int) -> BlockCid:
        """An inline CID: the block itself as an identity multihash (always CIDv1)."""
        return cls(1, codec, b"\x00" + uvarint(len(data)) + data, IDENTITY, data)

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
        if self.is_identity:
            ok = len(self.digest) <= MAX_IDENTITY_SIZE
        else:
            fn = HASHES.get(self.hash_code)
            ok = fn is not None and len(fn[1](b"")) == len(self.digest)
        if not ok:
            raise UnsupportedCid(
                f"CID {self} uses multihash 0x{self.hash_code:x}/{len(self.digest)} bytes; "
                f"supported: {', '.join(HASH_NAMES.values())} (identity of up to "
                f"{MAX_IDENTITY_SIZE} bytes)"
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
            ok = HASHES[self.hash_code][1](data) == self.digest
        if not ok:
            raise CorruptBlock(
                f"block {self} is corrupt: its content does not match the CID "
                f"({HASH_NAMES.get(self.hash_code, hex(self.hash_code))}, key {self.key})"
            )

    def __str__(self) -> str:
        # Kubo's default spellings, written here: multiformats' encoders validate types
        # at every call and cost ~1 ms a CID, which `add` of 10,000 files would feel.
        if self.version == 0:
            return _base58btc(self.multihash)
        return "b" + base64.b32encode(self.binary).decode().rstrip("=").lower()

    def encode(self, base: str | None) -> str:
        """The CID as Kubo prints it with ``--cid-base``: a CIDv0 becomes the CIDv1 of the
        same block in ``base`` (Kubo's default upgrade when a base is given); None keeps
        the default spelling."""
        if base is None:
            return str(self)
        try:
            return str(CID(base, 1, self.codec, self.multihash))
        except Exception:  # a codec multiformats does not know: Kubo's spelling then
            return str(self)


def check_cid_base(name: str) -> str:
    """A multibase name (``base32``, ``base36``, ``base58btc``, …) or prefix character
    (``b``, ``k``, ``z``, …), as Kubo's ``--cid-base`` takes it; returns its name."""
    try:
        return (multibase.get(code=name) if len(name) == 1 else multibase.get(name)).name
    except Exception:  # KeyError and multiformats' own classes, whose str() varies
        raise InvalidCid(f"unknown multibase {name!r}") from None


@dataclass(frozen=True, slots=True)
class CidPrefix:
    """How the importer makes CIDs (boxo's cid.Prefix plus Kubo's InlineBuilder).

    ``inline_limit``: blocks of at most this many bytes get an identity CID (the block
    itself, CIDv1) instead of a hash; None never inlines. A raw block is always CIDv1.
    """

    version: int = 0
    hash_code: int = SHA2_256
    inline_limit: int | None = None

    def cid(self, data: bytes, codec: int) -> BlockCid:
        if self.inline_limit is not None and len(data) <= self.inline_limit:
            return BlockCid.identity(data, codec=codec)
        version = self.version if codec == DAG_PB else 1
        return BlockCid.for_block(data, version=version, codec=codec, hash_code=self.hash_code)


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _base58btc(data: bytes) -> str:
    """Bitcoin base58 (a CIDv0's spelling): leading zero bytes as "1"s, then the rest as
    a big-endian number in base 58."""
    n = int.from_bytes(data, "big")
    digits = []
    while n:
        n, r = divmod(n, 58)
        digits.append(_B58_ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


def _codec_name(code: int) -> str:
    try:
        return multicodec.get(code=code).name
    except Exception:  # unknown to the multicodec table
        return "unknown"


def block_key(cid: str | CID) -> str:
    """The datastore key of a block: ``/blocks/<upper-case base32 of the multihash>``."""
    return BlockCid.parse(cid).key

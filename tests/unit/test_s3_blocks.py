"""Which datastore keys are IPFS block keys, and what an object there must hold."""

from __future__ import annotations

import base64
import hashlib

import pytest
from multiformats import CID, multihash

from dscluster.blocks import block_multihash
from dscluster.s3.blocks import check_block
from dscluster.s3.errors import S3Error
from dscluster.unixfs import block_key

BLOCK = b"hello block"


def key_of(mh: bytes) -> str:
    return "/blocks/" + base64.b32encode(mh).decode().rstrip("=")


def test_kubos_block_keys_are_recognised() -> None:
    digest = hashlib.sha256(BLOCK).digest()
    key = block_key(CID("base58btc", 0, "dag-pb", ("sha2-256", digest)))
    assert block_multihash(key) == (0x12, digest)
    # the CID's version and codec do not change the key
    assert block_key(CID("base32", 1, "raw", ("sha2-256", digest))) == key


@pytest.mark.parametrize("key", [
    "/blocks", "/blocks/", "/other/" + key_of(multihash.digest(BLOCK, "sha2-256"))[8:],
    key_of(multihash.digest(BLOCK, "sha2-256")) + "/x",
    key_of(multihash.digest(BLOCK, "sha2-256")).lower().replace("/BLOCKS/", "/blocks/"),
    key_of(multihash.digest(BLOCK, "sha2-256")) + "=",  # padded
    key_of(multihash.digest(BLOCK, "sha2-256"))[:-1],  # not a whole multihash
    "/blocks/CIQSIZED", "/blocks/%/abc", "/blocks/DZ/CIQX.data",
    key_of(b"\xff\xff\xff\x7f\x01a"),  # a code no multihash has
])
def test_other_keys_are_not_block_keys(key: str) -> None:
    assert block_multihash(key) is None
    check_block(key, b"anything")
    check_block(key, None)


@pytest.mark.parametrize("function", ["sha2-256", "sha2-512", "sha3-256", "blake2b-256",
                                      "blake2s-256", "sha1", "identity"])
def test_a_block_key_takes_only_its_block(function: str) -> None:
    key = key_of(multihash.digest(BLOCK, function))
    check_block(key, BLOCK)
    for wrong in (BLOCK + b"x", b"", None):
        with pytest.raises(S3Error) as e:
            check_block(key, wrong)
        assert e.value.code == "BadDigest"


def test_truncated_digests_are_checked_at_their_length() -> None:
    key = key_of(multihash.digest(BLOCK, "sha2-256", size=20))
    check_block(key, BLOCK)
    with pytest.raises(S3Error):
        check_block(key, BLOCK + b"x")
    # a digest longer than the function makes matches no bytes at all
    with pytest.raises(S3Error):
        check_block(key_of(b"\x12\x21" + b"\0" * 33), BLOCK)


def test_functions_that_can_not_be_computed_here_are_left_to_their_readers() -> None:
    # keccak-256 needs pycryptodome, which the project does not depend on
    key = key_of(b"\x1b\x20" + b"\0" * 32)
    assert block_multihash(key) is not None
    check_block(key, BLOCK)

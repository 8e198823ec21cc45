"""Bucket `blocks` is Kubo's blockstore: an object at a block key must be that block."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from multiformats import multihash

from dscluster.s3 import keymap

from .support import Gateway, OpenDatastore, code_of, gateway_settings, raw, run_gateway

pytestmark = pytest.mark.timeout(30)


def kubo_key(data: bytes, function: str = "sha2-256") -> str:
    """The S3 key, in bucket `blocks`, of the block ``data`` (Kubo's block key)."""
    return base64.b32encode(multihash.digest(data, function)).decode().rstrip("=")


@pytest.fixture(scope="module")
def gw(open_ds: OpenDatastore) -> Iterator[Gateway]:
    """A gateway with bucket `blocks`, adopted over the /blocks that dsclient and large
    objects write to; it is dropped again (its record only: /blocks is shared)."""
    with run_gateway(gateway_settings(adopt_prefixes=["blocks"]), open_ds) as g:
        g.client().create_bucket(Bucket="blocks")
        yield g
        g.call(g.ds.delete, keymap.bucket_key("blocks"))


@pytest.fixture(scope="module")
def s3(gw: Gateway) -> Any:
    return gw.client()


def test_a_block_is_not_replaced_by_other_bytes(gw: Gateway, s3: Any) -> None:
    block = os.urandom(1000)
    key = kubo_key(block)
    gw.call(gw.ds.put, f"/blocks/{key}", block)  # as dsclient add writes it
    r = raw(gw, "PUT", f"/blocks/{key}", body=b"not that block")
    assert r.status == 400 and b"<Code>BadDigest</Code>" in r.body
    assert b"do not hash to its multihash" in r.body
    assert gw.call(gw.ds.get, f"/blocks/{key}") == block
    s3.put_object(Bucket="blocks", Key=key, Body=block)  # the block itself is welcome
    assert s3.get_object(Bucket="blocks", Key=key)["Body"].read() == block


@pytest.mark.parametrize("function", ["sha2-512", "sha3-256", "blake2b-256", "identity"])
def test_every_hash_function_we_can_compute_is_checked(s3: Any, function: str) -> None:
    block = b"a small block " + function.encode()
    key = kubo_key(block, function)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="blocks", Key=key, Body=block + b"!")
    assert code_of(e) == ("BadDigest", 400)
    s3.put_object(Bucket="blocks", Key=key, Body=block)


def test_a_block_key_holds_a_blocks_bytes_not_a_dag(gw: Gateway, s3: Any) -> None:
    big = os.urandom(gw.settings.max_value_size + 1)  # would be stored as a UnixFS file
    key = kubo_key(big)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="blocks", Key=key, Body=big)
    assert code_of(e) == ("BadDigest", 400)
    assert b"multipart" in e.value.response["Error"]["Message"].encode()
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="blocks", Key=key)
    assert code_of(e) == ("404", 404)


def test_a_multipart_upload_can_not_complete_at_a_block_key(s3: Any) -> None:
    part = os.urandom(1000)
    key = kubo_key(part)
    up = s3.create_multipart_upload(Bucket="blocks", Key=key)["UploadId"]
    etag = s3.upload_part(Bucket="blocks", Key=key, UploadId=up, PartNumber=1,
                          Body=part)["ETag"]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket="blocks", Key=key, UploadId=up, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert code_of(e) == ("BadDigest", 400)
    s3.abort_multipart_upload(Bucket="blocks", Key=key, UploadId=up)


def test_a_copy_to_a_block_key_must_be_that_block(s3: Any) -> None:
    block = os.urandom(500)
    key = kubo_key(block)
    s3.put_object(Bucket="blocks", Key=f"staging/{key}", Body=b"other bytes")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket="blocks", Key=key, CopySource=f"blocks/staging/{key}")
    assert code_of(e) == ("BadDigest", 400)
    s3.put_object(Bucket="blocks", Key=f"staging/{key}", Body=block)
    s3.copy_object(Bucket="blocks", Key=key, CopySource=f"blocks/staging/{key}")
    assert s3.get_object(Bucket="blocks", Key=key)["Body"].read() == block


@pytest.mark.parametrize("key", [
    "CIQSIZED",  # too short to be a sha2-256 multihash
    "DZ/CIQHEADFIRSTDZ.data",  # blockstore-s3's sharded keys
    "ciqa" + "a" * 52,  # lower case: not Kubo's spelling
    "CIQ" + hashlib.sha256(b"x").hexdigest().upper()[:52],  # not base32
])
def test_keys_that_are_no_block_key_take_any_bytes(s3: Any, key: str) -> None:
    s3.put_object(Bucket="blocks", Key=key, Body=b"anything")
    assert s3.get_object(Bucket="blocks", Key=key)["Body"].read() == b"anything"
    s3.delete_object(Bucket="blocks", Key=key)


def test_other_buckets_take_any_bytes_at_block_like_keys(s3: Any) -> None:
    key = kubo_key(b"a block")
    s3.create_bucket(Bucket="not-the-blockstore")
    s3.put_object(Bucket="not-the-blockstore", Key=key, Body=b"something else")
    s3.delete_object(Bucket="not-the-blockstore", Key=key)
    s3.delete_bucket(Bucket="not-the-blockstore")

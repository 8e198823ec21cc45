"""Objects through boto3: put, get, head, delete, copy, ranges, conditions, checksums,
and where their bytes and records land in the datastore."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import crc32c
import pytest
import trio
from botocore.exceptions import ClientError

from dscluster.query import Query
from dscluster.store.memory import MemoryStore
from dscluster.unixfs import AddOptions, add_stream, read_file

from .support import Gateway, code_of, etag_of, gateway_settings, key_path, raw, run_gateway

pytestmark = pytest.mark.timeout(30)




def ds_keys(gw: Gateway, prefix: str) -> list[str]:
    async def keys() -> list[str]:
        return [e.key async for e in gw.ds.query(Query(prefix=prefix, keys_only=True))]
    return gw.call(keys)


def ds_get(gw: Gateway, key: str) -> bytes:
    return gw.call(gw.ds.get, key)


def cat(gw: Gateway, cid: str, **kw: Any) -> bytes:
    async def read() -> bytes:
        return b"".join([p async for p in read_file(gw.ds, cid, **kw)])
    return gw.call(read)


def test_small_object_is_its_bytes_at_its_key(gw: Gateway, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="photos/2024/a.jpg", Body=b"jpeg bytes",
                  ContentType="image/jpeg", Metadata={"camera": "x100"})
    got = s3.get_object(Bucket=bucket, Key="photos/2024/a.jpg")
    assert got["Body"].read() == b"jpeg bytes"
    assert got["ContentType"] == "image/jpeg"
    assert got["Metadata"] == {"camera": "x100"}
    assert got["ETag"] == etag_of(b"jpeg bytes")
    assert ds_get(gw, f"/{bucket}/photos/2024/a.jpg") == b"jpeg bytes"
    # metadata lives outside the bucket's namespace: the bucket holds only objects
    assert ds_keys(gw, f"/{bucket}") == [f"/{bucket}/photos/2024/a.jpg"]


def test_head_and_delete(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"12345")
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ContentLength"] == 5 and head["AcceptRanges"] == "bytes"
    s3.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k")
    assert code_of(e) == ("404", 404)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert code_of(e) == ("NoSuchKey", 404)
    s3.delete_object(Bucket=bucket, Key="k")  # deleting a missing key is no error


def test_no_such_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="never-created", Key="k", Body=b"x")
    assert code_of(e) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="never-created", Key="k")
    assert code_of(e) == ("NoSuchBucket", 404)


def test_large_object_is_a_unixfs_file_readable_by_cid(gw: Gateway, s3: Any,
                                                       bucket: str) -> None:
    data = os.urandom(gw.settings.max_value_size * 5 + 123)
    put = s3.put_object(Bucket=bucket, Key="big.iso", Body=data)
    cid = put["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-ipfs-cid"]
    assert put["ResponseMetadata"]["HTTPHeaders"]["x-ipfs-cid"] == cid
    head = s3.head_object(Bucket=bucket, Key="big.iso")
    assert head["Metadata"]["ipfs-cid"] == cid and head["ContentLength"] == len(data)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-ipfs-cid"] == cid
    assert head["ETag"] == etag_of(data)
    assert s3.get_object(Bucket=bucket, Key="big.iso")["Body"].read() == data
    assert cat(gw, cid) == data
    assert ds_get(gw, f"/{bucket}/big.iso") == f"/ipfs/{cid}".encode()

    async def ipfs_add() -> str:
        async def one() -> Any:
            yield data
        return (await add_stream(gw.ds, one(), options=AddOptions())).cid
    assert gw.call(ipfs_add) == cid  # the CID `ipfs add` gives the same bytes


def test_ranges(gw: Gateway, s3: Any, bucket: str) -> None:
    small = bytes(range(100))
    big = os.urandom(gw.settings.max_value_size * 2 + 10)
    s3.put_object(Bucket=bucket, Key="small", Body=small)
    s3.put_object(Bucket=bucket, Key="big", Body=big)
    for key, data in (("small", small), ("big", big)):
        n = len(data)
        for rng, want in (("bytes=0-9", data[:10]), ("bytes=-5", data[-5:]),
                          (f"bytes={n - 7}-", data[-7:]), (f"bytes=5-{n + 100}", data[5:]),
                          (f"bytes={n // 2 - 3}-{n // 2 + 3}", data[n // 2 - 3:n // 2 + 4])):
            got = s3.get_object(Bucket=bucket, Key=key, Range=rng)
            assert got["Body"].read() == want, rng
            assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
            assert got["ContentRange"].endswith(f"/{n}")
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={n}-")
        assert code_of(e) == ("InvalidRange", 416)


def test_conditional_get(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"v1")["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert code_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert code_of(e) == ("304", 304)
    future, past = datetime.now(UTC) + timedelta(days=1), datetime(2000, 1, 1, tzinfo=UTC)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert code_of(e) == ("304", 304)
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=past)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert code_of(e) == ("PreconditionFailed", 412)
    # If-Match that holds wins over If-Unmodified-Since, as in S3
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag,
                         IfUnmodifiedSince=past)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c", IfNoneMatch="*")
    assert code_of(e) == ("304", 304)



def test_content_md5_mismatch_is_bad_digest(s3: Any, bucket: str) -> None:
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="m", Body=b"payload", ContentMD5=wrong)
    assert code_of(e) == ("BadDigest", 400)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="m")  # nothing was stored
    right = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    s3.put_object(Bucket=bucket, Key="m", Body=b"payload", ContentMD5=right)


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA1", "SHA256"])
def test_checksums_are_verified_and_returned(gw: Gateway, s3: Any, bucket: str,
                                            algorithm: str) -> None:
    for size in (10, gw.settings.max_value_size + 1):
        data = os.urandom(size)
        put = s3.put_object(Bucket=bucket, Key="sum", Body=data, ChecksumAlgorithm=algorithm)
        sent = put[f"Checksum{algorithm}"]
        got = s3.get_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
        assert got[f"Checksum{algorithm}"] == sent
        assert got["Body"].read() == data  # botocore checks the body against it


def test_crc32c_checksum(gw: Gateway, bucket: str) -> None:
    # botocore computes CRC32C only with awscrt installed, so this request is built here
    data = os.urandom(1000)
    value = base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()
    put = raw(gw, "PUT", key_path(bucket, "c"), body=data,
              headers={"x-amz-checksum-crc32c": value})
    assert put.status == 200 and put.headers["x-amz-checksum-crc32c"] == value
    got = raw(gw, "GET", key_path(bucket, "c"), headers={"x-amz-checksum-mode": "ENABLED"})
    assert got.body == data and got.headers["x-amz-checksum-crc32c"] == value
    plain = raw(gw, "GET", key_path(bucket, "c"))
    assert "x-amz-checksum-crc32c" not in plain.headers


def test_wrong_checksum_header_is_bad_digest(gw: Gateway, bucket: str) -> None:
    body = b"hello"
    r = raw(gw, "PUT", key_path(bucket, "x"), body=body,
            headers={"x-amz-checksum-crc32": base64.b64encode(b"\0\0\0\0").decode()})
    assert r.status == 400 and b"<Code>BadDigest</Code>" in r.body


def test_copy_object(gw: Gateway, s3: Any, bucket: str) -> None:
    big = os.urandom(gw.settings.max_value_size + 1)
    s3.put_object(Bucket=bucket, Key="src-small", Body=b"small", Metadata={"a": "1"})
    cid = s3.put_object(Bucket=bucket, Key="src-big", Body=big)[
        "ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-ipfs-cid"]
    s3.copy_object(Bucket=bucket, Key="dst-small", CopySource=f"{bucket}/src-small")
    got = s3.get_object(Bucket=bucket, Key="dst-small")
    assert got["Body"].read() == b"small" and got["Metadata"] == {"a": "1"}
    s3.copy_object(Bucket=bucket, Key="dst-big", CopySource={"Bucket": bucket, "Key": "src-big"},
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="text/x")
    head = s3.head_object(Bucket=bucket, Key="dst-big")
    assert head["Metadata"] == {"b": "2", "ipfs-cid": cid} and head["ContentType"] == "text/x"
    assert s3.get_object(Bucket=bucket, Key="dst-big")["Body"].read() == big
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="src-small", CopySource=f"{bucket}/src-small")
    assert code_of(e) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/src-small",
                       CopySourceIfMatch='"nope"')
    assert code_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="d", CopySource=f"{bucket}/missing")
    assert code_of(e) == ("NoSuchKey", 404)


def test_delete_objects(s3: Any, bucket: str) -> None:
    for k in ("a", "b", "c/d"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "a"}, {"Key": "c/d"}, {"Key": "never-was"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["a", "c/d", "never-was"]
    assert "Errors" not in out
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["b"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b"}], "Quiet": True})
    assert "Deleted" not in quiet
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_response_header_overrides(gw: Gateway, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="o", ResponseContentType="application/json",
                        ResponseContentDisposition="attachment")
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "attachment"
    r = raw(gw, "GET", key_path(bucket, "o"), query="response-content-type=a%0D%0AX-Evil%3A%201")
    assert r.status == 400 and "x-evil" not in r.headers


def test_objects_written_around_the_gateway_are_served(gw: Gateway, s3: Any,
                                                      bucket: str) -> None:
    gw.call(gw.ds.put, f"/{bucket}/raw/key", b"written by dsclient")
    got = s3.get_object(Bucket=bucket, Key="raw/key")
    assert got["Body"].read() == b"written by dsclient"
    assert got["ETag"] == etag_of(b"written by dsclient")
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("raw/key", 19)]


def test_a_client_that_goes_away_stops_the_stream() -> None:
    gets = 0

    class SlowStore(MemoryStore):
        async def get(self, key: str) -> bytes:
            nonlocal gets
            gets += 1
            await trio.sleep(0.002)
            return await super().get(key)

    @asynccontextmanager
    async def open_slow() -> AsyncIterator[MemoryStore]:
        yield SlowStore()

    with run_gateway(gateway_settings(), open_slow) as g:
        s3 = g.client()
        s3.create_bucket(Bucket="leaving")
        s3.put_object(Bucket="leaving", Key="big", Body=os.urandom(24 << 20))  # 96 blocks
        gets = 0
        body = s3.get_object(Bucket="leaving", Key="big")["Body"]
        body.read(1000)
        body.close()
        time.sleep(1.5)
        assert gets < 60  # the first window of 32 blocks, not the whole file


def test_copy_sources_are_objects_of_served_buckets() -> None:
    """A copy reads what the caller could GET from a bucket, never a datastore key
    outside every bucket: gateway records, UnixFS blocks, values written around it."""
    with run_gateway(gateway_settings()) as g:
        s3 = g.client()
        s3.create_bucket(Bucket="mine")
        big = os.urandom(g.settings.max_value_size * 2)
        s3.put_object(Bucket="mine", Key="big", Body=big)
        g.call(g.ds.put, "/elsewhere/secret", b"not in any bucket")
        block = next(k for k in ds_keys(g, "/blocks") if k.startswith("/blocks/CIQ"))
        upload_id = s3.create_multipart_upload(Bucket="mine", Key="mp")["UploadId"]
        for source in (block, "/elsewhere/secret", "/.s3/buckets/mine",
                       "/.s3/objects/mine/big", "/%2Es3/objects/mine/big"):
            with pytest.raises(ClientError) as e:
                s3.copy_object(Bucket="mine", Key="stolen", CopySource=source)
            assert code_of(e) == ("NoSuchBucket", 404), source
            with pytest.raises(ClientError) as e:
                s3.upload_part_copy(Bucket="mine", Key="mp", UploadId=upload_id,
                                    PartNumber=1, CopySource=source)
            assert code_of(e) == ("NoSuchBucket", 404), source
        assert ds_keys(g, "/mine") == ["/mine/big"]
        assert s3.list_parts(Bucket="mine", Key="mp", UploadId=upload_id).get("Parts") is None
        # the bucket's own objects may be copied, escaped keys included
        s3.put_object(Bucket="mine", Key="../up", Body=b"escaped")
        s3.copy_object(Bucket="mine", Key="copy", CopySource="/mine/../up")
        assert s3.get_object(Bucket="mine", Key="copy")["Body"].read() == b"escaped"

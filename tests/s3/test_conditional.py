"""Conditional writes (If-None-Match: *, If-Match on PutObject and
CompleteMultipartUpload), reads by partNumber, and CompleteMultipartUpload's retries
and repeated part numbers."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .support import Gateway, code_of, etag_of, key_path, raw

pytestmark = pytest.mark.timeout(30)


def test_put_if_none_match_creates_only(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert code_of(e) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def test_put_if_match_replaces_only_that_version(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="v", Body=b"1", IfMatch=etag_of(b"0"))
    assert code_of(e) == ("NoSuchKey", 404)
    s3.put_object(Bucket=bucket, Key="v", Body=b"1")
    s3.put_object(Bucket=bucket, Key="v", Body=b"2", IfMatch=etag_of(b"1"))
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="v", Body=b"3", IfMatch=etag_of(b"1"))
    assert code_of(e) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"2"


def test_if_none_match_takes_only_a_star(gw: Gateway, bucket: str) -> None:
    r = raw(gw, "PUT", key_path(bucket, "w"), body=b"x", headers={"If-None-Match": '"abc"'})
    assert r.status == 501 and b"<Code>NotImplemented</Code>" in r.body


def upload(s3: Any, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[dict]]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=p)["ETag"]}
        for n, p in enumerate(parts, 1)]
    return upload_id, done


def test_complete_is_conditional(gw: Gateway, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="mp", Body=b"there already")
    upload_id, done = upload(s3, bucket, "mp", [b"p1"])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                     MultipartUpload={"Parts": done}, IfNoneMatch="*")
    assert code_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                     MultipartUpload={"Parts": done}, IfMatch='"other"')
    assert code_of(e) == ("PreconditionFailed", 412)
    # a failed condition leaves the upload to complete
    out = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                       MultipartUpload={"Parts": done},
                                       IfMatch=etag_of(b"there already"))
    assert s3.head_object(Bucket=bucket, Key="mp")["ETag"] == out["ETag"]


def test_a_retried_complete_gets_the_same_answer(s3: Any, bucket: str) -> None:
    upload_id, done = upload(s3, bucket, "r", [b"only part"])
    first = s3.complete_multipart_upload(Bucket=bucket, Key="r", UploadId=upload_id,
                                         MultipartUpload={"Parts": done})
    again = s3.complete_multipart_upload(Bucket=bucket, Key="r", UploadId=upload_id,
                                         MultipartUpload={"Parts": done})
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    for field in ("ETag", "Bucket", "Key", "Location"):
        assert again[field] == first[field]
    assert (again["ResponseMetadata"]["HTTPHeaders"]["x-ipfs-cid"]
            == first["ResponseMetadata"]["HTTPHeaders"]["x-ipfs-cid"])
    # a copy of the object is no completion of that upload
    s3.copy_object(Bucket=bucket, Key="r-copy", CopySource=f"{bucket}/r")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="r-copy", UploadId=upload_id,
                                     MultipartUpload={"Parts": done})
    assert code_of(e) == ("NoSuchUpload", 404)
    # once the object is another one, the upload is gone for good
    s3.put_object(Bucket=bucket, Key="r", Body=b"replaced")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="r", UploadId=upload_id,
                                     MultipartUpload={"Parts": done})
    assert code_of(e) == ("NoSuchUpload", 404)


def test_a_part_named_twice_is_the_last_one_given(gw: Gateway, s3: Any, bucket: str) -> None:
    size = gw.settings.min_part_size
    old, new, tail = os.urandom(size), os.urandom(size), b"tail"
    upload_id, done = upload(s3, bucket, "dup", [old, tail])
    stale = done[0]["ETag"]
    fresh = s3.upload_part(Bucket=bucket, Key="dup", UploadId=upload_id, PartNumber=1,
                           Body=new)["ETag"]
    with pytest.raises(ClientError) as e:  # the last one given is no longer there
        s3.complete_multipart_upload(Bucket=bucket, Key="dup", UploadId=upload_id,
                                     MultipartUpload={"Parts": [
                                         {"PartNumber": 1, "ETag": fresh},
                                         {"PartNumber": 1, "ETag": stale}, done[1]]})
    assert code_of(e) == ("InvalidPart", 400)
    out = s3.complete_multipart_upload(Bucket=bucket, Key="dup", UploadId=upload_id,
                                       MultipartUpload={"Parts": [
                                           {"PartNumber": 1, "ETag": stale},
                                           {"PartNumber": 1, "ETag": fresh}, done[1]]})
    md5s = hashlib.md5(new).digest() + hashlib.md5(tail).digest()
    assert out["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-2"'
    assert s3.get_object(Bucket=bucket, Key="dup")["Body"].read() == new + tail


def test_get_by_part_number(gw: Gateway, s3: Any, bucket: str) -> None:
    size = gw.settings.min_part_size
    parts = [os.urandom(size), os.urandom(size + 3), b"last"]
    upload_id, done = upload(s3, bucket, "parts", parts)
    out = s3.complete_multipart_upload(Bucket=bucket, Key="parts", UploadId=upload_id,
                                       MultipartUpload={"Parts": done})
    total = sum(map(len, parts))
    for number, start in ((1, 0), (2, size), (3, 2 * size + 3)):
        got = s3.get_object(Bucket=bucket, Key="parts", PartNumber=number)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["Body"].read() == parts[number - 1]
        end = start + len(parts[number - 1]) - 1
        assert got["ContentRange"] == f"bytes {start}-{end}/{total}"
        assert got["PartsCount"] == 3 and got["ETag"] == out["ETag"]
        head = s3.head_object(Bucket=bucket, Key="parts", PartNumber=number)
        assert head["ContentLength"] == len(parts[number - 1]) and head["PartsCount"] == 3
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="parts", PartNumber=4)
    assert code_of(e) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="parts", PartNumber=1, Range="bytes=0-1")
    assert code_of(e) == ("InvalidRequest", 400)


def test_part_one_of_a_single_put_object_is_all_of_it(gw: Gateway, s3: Any,
                                                       bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="one", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="one", PartNumber=1)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == b"0123456789" and got["ContentRange"] == "bytes 0-9/10"
    assert "PartsCount" not in got
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="one", PartNumber=2)
    assert code_of(e) == ("400", 400)
    for bad in ("0", "10001", "x"):
        r = raw(gw, "GET", key_path(bucket, "one"), query=f"partNumber={bad}")
        assert r.status == 400 and b"<Code>InvalidArgument</Code>" in r.body

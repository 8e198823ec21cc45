"""Multipart uploads through boto3 (and boto3's managed transfer)."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from dscluster.unixfs import read_file

from .support import Gateway, code_of, etag_of

pytestmark = pytest.mark.timeout(30)




def upload_parts(s3: Any, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[dict]]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key,
                                           ContentType="video/mp4")["UploadId"]
    done = []
    # uploaded last part first: the order parts arrive in does not matter
    for number in reversed(range(1, len(parts) + 1)):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                           Body=parts[number - 1])
        done.append({"PartNumber": number, "ETag": r["ETag"]})
    return upload_id, sorted(done, key=lambda p: p["PartNumber"])


def test_multipart_upload(gw: Gateway, s3: Any, bucket: str) -> None:
    size = gw.settings.min_part_size
    parts = [os.urandom(size), os.urandom(size + 7), os.urandom(1000)]
    upload_id, done = upload_parts(s3, bucket, "movie.mp4", parts)
    listed = s3.list_parts(Bucket=bucket, Key="movie.mp4", UploadId=upload_id)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [
        (1, size), (2, size + 7), (3, 1000)]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("movie.mp4", upload_id)]
    out = s3.complete_multipart_upload(Bucket=bucket, Key="movie.mp4", UploadId=upload_id,
                                       MultipartUpload={"Parts": done})
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    assert out["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    data = b"".join(parts)
    got = s3.get_object(Bucket=bucket, Key="movie.mp4")
    assert got["Body"].read() == data and got["ContentType"] == "video/mp4"
    assert got["ETag"] == out["ETag"]
    # the CID has a header of its own; the user metadata is only what the uploader set
    cid = got["ResponseMetadata"]["HTTPHeaders"]["x-ipfs-cid"]
    assert out["ResponseMetadata"]["HTTPHeaders"]["x-ipfs-cid"] == cid
    assert "ipfs-cid" not in got["Metadata"]

    async def cat() -> bytes:
        return b"".join([p async for p in read_file(gw.ds, cid)])
    assert gw.call(cat) == data
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads") is None
    r = s3.get_object(Bucket=bucket, Key="movie.mp4", Range=f"bytes={size - 5}-{size + 5}")
    assert r["Body"].read() == data[size - 5:size + 6]


def test_parts_out_of_order_are_invalid_part_order(gw: Gateway, s3: Any, bucket: str) -> None:
    parts = [os.urandom(gw.settings.min_part_size), b"tail"]
    upload_id, done = upload_parts(s3, bucket, "k", parts)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id,
                                     MultipartUpload={"Parts": list(reversed(done))})
    assert code_of(e) == ("InvalidPartOrder", 400)


def test_wrong_etag_is_invalid_part(gw: Gateway, s3: Any, bucket: str) -> None:
    upload_id, done = upload_parts(s3, bucket, "k", [os.urandom(gw.settings.min_part_size),
                                                     b"tail"])
    done[1]["ETag"] = '"%s"' % ("0" * 32)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id,
                                     MultipartUpload={"Parts": done})
    assert code_of(e) == ("InvalidPart", 400)
    missing = [done[0], {"PartNumber": 9, "ETag": done[0]["ETag"]}]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id,
                                     MultipartUpload={"Parts": missing})
    assert code_of(e) == ("InvalidPart", 400)


def test_small_parts_are_entity_too_small(s3: Any, bucket: str) -> None:
    upload_id, done = upload_parts(s3, bucket, "k", [b"small", b"tail"])
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id,
                                     MultipartUpload={"Parts": done})
    assert code_of(e) == ("EntityTooSmall", 400)


def test_abort(s3: Any, bucket: str) -> None:
    upload_id, _ = upload_parts(s3, bucket, "k", [b"one"])
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)
    assert code_of(e) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert code_of(e) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:
        s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId="0" * 32)
    assert code_of(e) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as e:  # an upload id belongs to one key
        s3.list_parts(Bucket=bucket, Key="other", UploadId=upload_id)
    assert code_of(e) == ("NoSuchUpload", 404)


def test_list_parts_and_uploads_pages(s3: Any, bucket: str) -> None:
    upload_id, _ = upload_parts(s3, bucket, "k", [b"a", b"b", b"c"])
    first = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id, MaxParts=2)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2] and first["IsTruncated"]
    rest = s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id,
                         PartNumberMarker=first["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in rest["Parts"]] == [3] and not rest["IsTruncated"]
    ids = {key: s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
           for key in ("a/1", "a/2", "b", "/odd//key")}
    ids["k"] = upload_id
    pages = s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2})
    listed = [(u["Key"], u["UploadId"]) for p in pages for u in p.get("Uploads", [])]
    assert listed == sorted(ids.items(), key=lambda kv: kv[0].encode())
    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["/", "a/"]
    assert [u["Key"] for u in rolled["Uploads"]] == ["b", "k"]


def test_upload_part_copy(gw: Gateway, s3: Any, bucket: str) -> None:
    src = os.urandom(gw.settings.min_part_size + gw.settings.max_value_size)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    size = gw.settings.min_part_size
    p1 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
                             CopySource=f"{bucket}/src", CopySourceRange=f"bytes=0-{size - 1}")
    p2 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=2,
                             CopySource=f"{bucket}/src", CopySourceRange=f"bytes={size}-"
                             f"{len(src) - 1}")
    assert p1["CopyPartResult"]["ETag"] == etag_of(src[:size])
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=upload_id,
                                 MultipartUpload={"Parts": [
                                     {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                                     {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == src


def test_managed_transfer(gw: Gateway, s3: Any, bucket: str) -> None:
    """boto3's upload_fileobj / download_fileobj: multipart up, ranged GETs down."""
    data = os.urandom(5 * (5 << 20) // 2)
    cfg = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20,
                         max_concurrency=4)
    s3.upload_fileobj(io.BytesIO(data), bucket, "managed.bin", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="managed.bin")
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-3"')
    out = io.BytesIO()
    s3.download_fileobj(bucket, "managed.bin", out, Config=cfg)
    assert out.getvalue() == data

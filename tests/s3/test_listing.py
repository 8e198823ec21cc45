"""ListObjectsV2 / ListObjects through boto3, and keys that would escape their
namespace if they were used as datastore keys as they are."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from dscluster.query import Query
from dscluster.s3.grants import owner_id

from .support import ACCESS_KEY, Gateway, key_path, raw

pytestmark = pytest.mark.timeout(30)

# keys that are not clean datastore paths, next to plain ones they must not collide with
ESCAPE_KEYS = [
    "/lead", "lead", "trail/", "trail", "a//b", "a/b", "./x", "x", "../../etc/passwd",
    "etc/passwd", "a/./b", "a/../b", "b", "x/..", "%/y", "%", "y", "100%", "dir/",
    "dir/file", "//", "/", ".", "..", "ünïcode/ключ", "sp ace/+plus", "%2F", "a/",
    "a/%/c", "%25",
]


def all_keys(s3: Any, bucket: str, **kw: Any) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kw)
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


def utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode())


def test_escape_keys_round_trip_and_list_in_s3_order(gw: Gateway, s3: Any,
                                                     bucket: str) -> None:
    for i, key in enumerate(ESCAPE_KEYS):
        s3.put_object(Bucket=bucket, Key=key, Body=str(i).encode())
    for i, key in enumerate(ESCAPE_KEYS):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == str(i).encode(), key
    assert all_keys(s3, bucket) == utf8_sorted(ESCAPE_KEYS)
    assert all_keys(s3, bucket, PaginationConfig={"PageSize": 3}) == utf8_sorted(ESCAPE_KEYS)

    async def ds_keys() -> list[str]:
        return [e.key async for e in gw.ds.query(Query(prefix="/", keys_only=True))]
    in_bucket = [k for k in gw.call(ds_keys) if k.startswith(f"/{bucket}/")]
    # one datastore key per S3 key, all inside the bucket's namespace
    assert len(in_bucket) == len(ESCAPE_KEYS)
    assert f"/{bucket}/a/b" in in_bucket and f"/{bucket}/lead" in in_bucket
    for key in ESCAPE_KEYS:
        s3.delete_object(Bucket=bucket, Key=key)
    assert all_keys(s3, bucket) == []


def test_key_length_and_nul(gw: Gateway, s3: Any, bucket: str) -> None:
    longest = "k/" * 511 + "kk"
    assert len(longest.encode()) == 1024
    s3.put_object(Bucket=bucket, Key=longest, Body=b"1")
    s3.put_object(Bucket=bucket, Key="/" * 1024, Body=b"2")
    assert s3.get_object(Bucket=bucket, Key="/" * 1024)["Body"].read() == b"2"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key=longest + "k", Body=b"x")
    assert e.value.response["Error"]["Code"] == "KeyTooLongError"
    r = raw(gw, "PUT", f"/{bucket}/nul%00byte", body=b"x")
    assert r.status == 400 and b"<Code>InvalidArgument</Code>" in r.body
    assert utf8_sorted(all_keys(s3, bucket)) == utf8_sorted([longest, "/" * 1024])


def test_pagination_prefix_delimiter(s3: Any, bucket: str) -> None:
    keys = [f"photos/{y}/{i:02d}.jpg" for y in (2023, 2024) for i in range(5)]
    keys += ["photos/readme.txt", "photos-old/x", "videos/a.mp4", "top.txt", "photos/"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    assert all_keys(s3, bucket, PaginationConfig={"PageSize": 2}) == utf8_sorted(keys)
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["photos-old/", "photos/", "videos/"]
    assert [o["Key"] for o in top["Contents"]] == ["top.txt"]
    assert top["KeyCount"] == 4
    photos = s3.list_objects_v2(Bucket=bucket, Prefix="photos/", Delimiter="/")
    assert [p["Prefix"] for p in photos["CommonPrefixes"]] == ["photos/2023/", "photos/2024/"]
    assert [o["Key"] for o in photos["Contents"]] == ["photos/", "photos/readme.txt"]
    # the same listing one entry per page, prefixes and keys mixed
    seen: list[str] = []
    token = None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, Prefix="photos/", Delimiter="/", MaxKeys=1,
                                  **kw)
        seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == ["photos/", "photos/2023/", "photos/2024/", "photos/readme.txt"]
    assert all_keys(s3, bucket, Prefix="photos/20") == [k for k in utf8_sorted(keys)
                                                       if k.startswith("photos/20")]
    assert all_keys(s3, bucket, StartAfter="photos/2024/02.jpg") == [
        k for k in utf8_sorted(keys) if k.encode() > b"photos/2024/02.jpg"]


def test_many_keys_roll_up_under_one_prefix(s3: Any, bucket: str) -> None:
    keys = [f"dir/{i:03d}" for i in range(80)] + ["dir0", "a"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["dir/"]
    assert [o["Key"] for o in page["Contents"]] == ["a", "dir0"]


def test_list_objects_v1_with_marker(s3: Any, bucket: str) -> None:
    keys = [f"k{i}" for i in range(7)] + ["sub/a", "sub/b"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    pages = s3.get_paginator("list_objects").paginate(Bucket=bucket,
                                                      PaginationConfig={"PageSize": 2})
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == sorted(keys)
    first = s3.list_objects(Bucket=bucket, MaxKeys=3)
    assert first["IsTruncated"] and first["NextMarker"] == "k2"
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket, Marker="k5")["Contents"]] == [
        "k6", "sub/a", "sub/b"]
    rolled = s3.list_objects(Bucket=bucket, Delimiter="/", Marker="k6")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["sub/"]
    assert s3.list_objects(Bucket=bucket, Delimiter="/", Marker="sub/").get("Contents") is None
    assert all("Owner" in o for o in first["Contents"])


def test_listing_fields(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="f", Body=b"abc")["ETag"]
    page = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)
    (obj,) = page["Contents"]
    assert obj["ETag"] == etag and obj["Size"] == 3 and obj["StorageClass"] == "STANDARD"
    # the bucket's owner, the test credential, who sees its own display name
    assert obj["Owner"] == {"ID": owner_id(ACCESS_KEY), "DisplayName": ACCESS_KEY}
    assert "Owner" not in s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    assert s3.list_objects_v2(Bucket=bucket, MaxKeys=0)["KeyCount"] == 0


def test_encoding_type_url(gw: Gateway, s3: Any, bucket: str) -> None:
    key = "a b/c+d&e<f>"
    s3.put_object(Bucket=bucket, Key=key, Body=b"")
    assert all_keys(s3, bucket) == [key]  # boto3 asks for url encoding and decodes it
    r = raw(gw, "GET", f"/{bucket}", query="list-type=2&encoding-type=url")
    assert f"<Key>{quote(key, safe='/')}</Key>".encode() in r.body
    assert b"<EncodingType>url</EncodingType>" in r.body
    r = raw(gw, "GET", key_path(bucket, key))
    assert r.status == 200


def test_bad_listing_arguments(gw: Gateway, bucket: str) -> None:
    for query in ("list-type=2&max-keys=-1", "list-type=2&continuation-token=bm9wZQ",
                  "list-type=2&encoding-type=base64", "list-type=3"):
        r = raw(gw, "GET", f"/{bucket}", query=query)
        assert r.status == 400 and b"<Code>InvalidArgument</Code>" in r.body, query


def test_max_keys_zero_is_an_empty_page_that_is_not_truncated(gw: Gateway, s3: Any,
                                                               bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for listed in (s3.list_objects_v2(Bucket=bucket, MaxKeys=0),
                   s3.list_objects(Bucket=bucket, MaxKeys=0)):
        assert listed["IsTruncated"] is False and "Contents" not in listed
        assert "NextContinuationToken" not in listed and "NextMarker" not in listed
    assert s3.list_objects_v2(Bucket=bucket, MaxKeys=0)["KeyCount"] == 0


def test_an_empty_continuation_token_is_no_token(gw: Gateway, s3: Any, bucket: str) -> None:
    for key in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    r = raw(gw, "GET", f"/{bucket}", query="list-type=2&continuation-token=")
    assert r.status == 200
    assert b"<Key>a</Key>" in r.body and b"<Key>b</Key>" in r.body

"""ListObjectVersions, GetBucketVersioning and VersionId "null" on a bucket that is
never versioned: the calls cleanup code makes (boto3's ``object_versions.delete()``,
``aws s3api list-object-versions``)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .support import ACCESS_KEY, REGION, SECRET_KEY, Gateway, code_of, etag_of, raw

pytestmark = pytest.mark.timeout(30)


def test_versioning_of_a_never_versioned_bucket_is_empty(gw: Gateway, bucket: str) -> None:
    r = raw(gw, "GET", f"/{bucket}", query="versioning")
    assert r.status == 200
    # AWS answers an empty configuration: no Status, no MfaDelete
    assert r.body.endswith(
        b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/" />')


def test_every_object_is_one_null_version(s3: Any, bucket: str) -> None:
    for key in ("a", "b/1", "b/2", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    out = s3.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"], v["ETag"])
            for v in out["Versions"]] == [
        (k, "null", True, len(k), etag_of(k.encode())) for k in ("a", "b/1", "b/2", "c")]
    assert "DeleteMarkers" not in out and out["IsTruncated"] is False
    rolled = s3.list_object_versions(Bucket=bucket, Delimiter="/", Prefix="")
    assert [v["Key"] for v in rolled["Versions"]] == ["a", "c"]
    assert rolled["CommonPrefixes"] == [{"Prefix": "b/"}]


def test_versions_page_by_key_marker(s3: Any, bucket: str) -> None:
    keys = [f"k{i:02d}" for i in range(7)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    first = s3.list_object_versions(Bucket=bucket, MaxKeys=3)
    assert [v["Key"] for v in first["Versions"]] == keys[:3] and first["IsTruncated"]
    assert (first["NextKeyMarker"], first["NextVersionIdMarker"]) == ("k02", "null")
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 3})
    assert [v["Key"] for p in pages for v in p.get("Versions", [])] == keys
    with pytest.raises(ClientError) as e:
        s3.list_object_versions(Bucket=bucket, VersionIdMarker="null")
    assert code_of(e) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as e:
        s3.list_object_versions(Bucket=bucket, KeyMarker="k01", VersionIdMarker="v7")
    assert code_of(e) == ("InvalidArgument", 400)


def test_boto3_deletes_every_version(gw: Gateway, bucket: str) -> None:
    resource = boto3.resource("s3", endpoint_url=gw.url, region_name=REGION,
                              aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                              config=Config(s3={"addressing_style": "path"}))
    s3 = resource.meta.client
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"dir/{i}", Body=b"x")
    # ListObjectVersions, then DeleteObjects naming each VersionId "null"
    resource.Bucket(bucket).object_versions.delete()
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    s3.delete_bucket(Bucket=bucket)


def test_version_id_null_reads_and_deletes_the_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"v"
    assert s3.head_object(Bucket=bucket, Key="k", VersionId="null")["ContentLength"] == 1
    for call in (s3.get_object, s3.head_object, s3.delete_object):
        with pytest.raises(ClientError) as e:
            call(Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ")
        assert code_of(e)[1] == 400
    deleted = s3.delete_object(Bucket=bucket, Key="k", VersionId="null")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert deleted["VersionId"] == "null"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_delete_objects_with_version_ids(s3: Any, bucket: str) -> None:
    for key in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "a", "VersionId": "null"}, {"Key": "b"}, {"Key": "c", "VersionId": "nope"}]})
    assert sorted((d["Key"], d.get("VersionId")) for d in out["Deleted"]) == [
        ("a", "null"), ("b", None)]
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("c", "InvalidArgument")]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["c"]


def test_version_listing_of_a_missing_bucket(gw: Gateway) -> None:
    r = raw(gw, "GET", "/no-such-bucket-v", query="versions")
    assert r.status == 404 and b"<Code>NoSuchBucket</Code>" in r.body

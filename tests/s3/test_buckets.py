"""Bucket operations through boto3, and the error answers S3 clients rely on."""

from __future__ import annotations

import itertools
import socket
from typing import Any

import pytest
import urllib3
from botocore.exceptions import ClientError

from .support import (
    Gateway,
    OpenDatastore,
    code_of,
    gateway_settings,
    key_path,
    raw,
    run_gateway,
    sign,
)

pytestmark = pytest.mark.timeout(30)
_prefixes = itertools.count()


def foreign_prefix(gw: Gateway) -> str:
    """A new top-level datastore prefix holding one key written around the gateway (as
    ``dsclient put /health/dsonly`` would), with no bucket of that name."""
    name = f"dsonly-{next(_prefixes)}"
    gw.call(gw.ds.put, f"/{name}/dsonly", b"not an object of any bucket")
    return name

def test_bucket_life_cycle(gw: Gateway, s3: Any) -> None:
    s3.create_bucket(Bucket="life-cycle")
    assert "life-cycle" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    head = s3.head_bucket(Bucket="life-cycle")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert s3.get_bucket_location(Bucket="life-cycle")["LocationConstraint"] is None
    assert "Status" not in s3.get_bucket_versioning(Bucket="life-cycle")
    # us-east-1 answers a repeated CreateBucket with success (datastore-s3's
    # createIfMissing), and the bucket keeps its objects
    s3.put_object(Bucket="life-cycle", Key="kept", Body=b"k")
    again = s3.create_bucket(Bucket="life-cycle")
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object(Bucket="life-cycle", Key="kept")["Body"].read() == b"k"
    s3.delete_object(Bucket="life-cycle", Key="kept")
    s3.put_object(Bucket="life-cycle", Key="x", Body=b"1")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket="life-cycle")
    assert code_of(e) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket="life-cycle", Key="x")
    s3.delete_bucket(Bucket="life-cycle")
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket="life-cycle")
    assert code_of(e) == ("404", 404)
    assert "life-cycle" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_bucket_with_a_multipart_upload_is_not_empty(s3: Any, bucket: str) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="k")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert code_of(e) == ("BucketNotEmpty", 409)
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=up["UploadId"])
    s3.delete_bucket(Bucket=bucket)


@pytest.mark.parametrize("name", ["ab", "UPPER", "-dash", "dots..dots", "192.168.0.1",
                                  "under_score", "x" * 64])
def test_invalid_bucket_names(gw: Gateway, name: str) -> None:
    r = raw(gw, "PUT", f"/{name}")
    assert r.status == 400 and b"<Code>InvalidBucketName</Code>" in r.body


def test_errors_are_s3_xml_with_a_request_id(gw: Gateway) -> None:
    r = raw(gw, "GET", "/no-such-bucket-here/key")
    assert r.status == 404
    assert r.headers["content-type"] == "application/xml"
    request_id = r.headers["x-amz-request-id"]
    assert b"<Code>NoSuchBucket</Code>" in r.body
    assert f"<RequestId>{request_id}</RequestId>".encode() in r.body


def test_method_not_allowed_and_not_implemented(gw: Gateway, bucket: str) -> None:
    r = raw(gw, "POST", "/")
    assert r.status == 405 and b"<Code>MethodNotAllowed</Code>" in r.body
    r = raw(gw, "GET", f"/{bucket}", query="cors=")
    assert r.status == 501 and b"<Code>NotImplemented</Code>" in r.body


def test_keep_alive(gw: Gateway, bucket: str) -> None:
    r = raw(gw, "GET", f"/{bucket}", query="list-type=2")
    assert r.status == 200 and r.headers.get("connection", "").lower() != "close"


def test_keys_outside_every_bucket_are_not_served(gw: Gateway, s3: Any, bucket: str) -> None:
    prefix = foreign_prefix(gw)
    for method in ("GET", "HEAD", "DELETE"):
        r = raw(gw, method, key_path(prefix, "dsonly"))
        assert r.status == 404, method
        assert method == "HEAD" or b"<Code>NoSuchBucket</Code>" in r.body
    r = raw(gw, "GET", f"/{prefix}", query="list-type=2")
    assert r.status == 404 and b"<Code>NoSuchBucket</Code>" in r.body
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{prefix}/dsonly")
    assert code_of(e) == ("NoSuchBucket", 404)
    assert gw.call(gw.ds.get, f"/{prefix}/dsonly") == b"not an object of any bucket"


def test_a_bucket_is_not_created_over_keys_written_around_the_gateway(gw: Gateway,
                                                                     s3: Any) -> None:
    prefix = foreign_prefix(gw)
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=prefix)
    assert code_of(e) == ("BucketAlreadyExists", 409)
    message = e.value.response["Error"]["Message"]
    assert f"/{prefix}" in message and "adopt_prefixes" in message
    assert prefix not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    r = raw(gw, "GET", key_path(prefix, "dsonly"))
    assert r.status == 404 and b"<Code>NoSuchBucket</Code>" in r.body


def test_an_operator_adopts_a_prefix_as_a_bucket(open_ds: OpenDatastore) -> None:
    with run_gateway(gateway_settings(adopt_prefixes=["adopted"]), open_ds) as g:
        s3 = g.client()
        g.call(g.ds.put, "/adopted/dsonly", b"kept by dsclient")
        s3.create_bucket(Bucket="adopted")
        assert s3.get_object(Bucket="adopted", Key="dsonly")["Body"].read() == (
            b"kept by dsclient")
        s3.delete_object(Bucket="adopted", Key="dsonly")
        s3.delete_bucket(Bucket="adopted")


def test_create_existing_bucket_elsewhere_than_us_east_1_is_409() -> None:
    with run_gateway(gateway_settings(region="eu-west-1")) as g:
        s3 = g.client()
        s3.create_bucket(Bucket="regional",
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        with pytest.raises(ClientError) as e:
            s3.create_bucket(Bucket="regional",
                             CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        assert code_of(e) == ("BucketAlreadyOwnedByYou", 409)


def test_list_buckets_pages(gw: Gateway, s3: Any) -> None:
    prefix = f"pages-{next(_prefixes)}-"
    names = [f"{prefix}{i}" for i in range(5)]
    for name in names:
        s3.create_bucket(Bucket=name)
    first = s3.list_buckets(Prefix=prefix, MaxBuckets=2)
    assert [b["Name"] for b in first["Buckets"]] == names[:2] and first["Prefix"] == prefix
    listed = [b["Name"] for b in first["Buckets"]]
    token = first["ContinuationToken"]
    while token:
        page = s3.list_buckets(Prefix=prefix, MaxBuckets=2, ContinuationToken=token)
        listed += [b["Name"] for b in page["Buckets"]]
        token = page.get("ContinuationToken")
    assert listed == names
    # every bucket, one at a time
    everything = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    paged = [b["Name"] for p in s3.get_paginator("list_buckets").paginate(
        PaginationConfig={"PageSize": 1}) for b in p["Buckets"]]
    assert paged == everything and "ContinuationToken" not in s3.list_buckets()
    for bad in ("0", "10001", "x"):
        r = raw(gw, "GET", "/", query=f"max-buckets={bad}")
        assert r.status == 400 and b"<Code>InvalidArgument</Code>" in r.body
    r = raw(gw, "GET", "/", query="continuation-token=%21%21")
    assert r.status == 400 and b"<Code>InvalidArgument</Code>" in r.body
    for name in names:
        s3.delete_bucket(Bucket=name)


def test_status_lines_carry_a_reason_phrase(gw: Gateway, bucket: str) -> None:
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /{bucket} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        # unsigned: AccessDenied
        assert sock.recv(65536).startswith(b"HTTP/1.1 403 Forbidden\r\n")
    with urllib3.PoolManager() as pool:
        resp = pool.request("GET", gw.url + f"/{bucket}/nope",
                            headers=sign("GET", gw.url + f"/{bucket}/nope", {}))
        assert (resp.status, resp.reason) == (404, "Not Found")
        resp = pool.request("GET", gw.url + "/", headers=sign("GET", gw.url + "/", {}))
        assert (resp.status, resp.reason) == (200, "OK")

"""Signature Version 2: AWS's documented examples, then requests and presigned URLs
signed by botocore's own V2 signers (HmacV1Auth, HmacV1QueryAuth, boto3 with
``signature_version='s3'``), so that a canonicalisation of ours that differs from
theirs fails here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import pytest
import urllib3
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.handlers import validate_ascii_metadata

from dscluster.s3.errors import S3Error
from dscluster.s3.sigv4 import authenticate

from .support import ACCESS_KEY, SECRET_KEY, Gateway, Reply, code_of, key_path

pytestmark = pytest.mark.timeout(30)

# the credential of AWS's RESTAuthentication examples
DOC_KEY, DOC_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
_pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))


def doc_auth(method: str, raw_path: str, query: list[tuple[str, str]],
             headers: list[tuple[str, str]], now: str) -> str | None:
    """The access key authenticate() accepts the request as (path style: the examples'
    virtual-host bucket is the path's first segment)."""
    return authenticate(method, raw_path.partition("?")[0], query, headers,
                        secret_for={DOC_KEY: DOC_SECRET}.get, allow_anonymous=False,
                        now=datetime.strptime(now, "%a, %d %b %Y %H:%M:%S %z"),
                        raw_path=raw_path).access_key


@pytest.mark.parametrize(("method", "path", "query", "headers"), [
    ("GET", "/johnsmith/photos/puppy.jpg", [], [
        ("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
        ("authorization", f"AWS {DOC_KEY}:bWq2s1WEIj+Ydj0vQ697zp+IXMU=")]),
    ("PUT", "/johnsmith/photos/puppy.jpg", [], [
        ("content-type", "image/jpeg"), ("content-length", "94328"),
        ("date", "Tue, 27 Mar 2007 21:15:45 +0000"),
        ("authorization", f"AWS {DOC_KEY}:MyyxeRY7whkBe+bq8fHCL/2kKUg=")]),
    ("GET", "/johnsmith/", [("prefix", "photos"), ("max-keys", "50"), ("marker", "puppy")], [
        ("user-agent", "Mozilla/5.0"), ("date", "Tue, 27 Mar 2007 19:42:41 +0000"),
        ("authorization", f"AWS {DOC_KEY}:htDYFYduRNen8P9ZfE/s9SuKy0U=")]),
    ("GET", "/johnsmith/", [("acl", "")], [
        ("date", "Tue, 27 Mar 2007 19:44:46 +0000"),
        ("authorization", f"AWS {DOC_KEY}:c2WLPFtWHVgbEmeEG93a4cG37dM=")]),
    # x-amz-* headers sorted, lower-cased, a repeated one joined with ","; headers that
    # are neither x-amz-* nor Content-MD5/-Type are not signed
    ("PUT", "/static.johnsmith.net/db-backup.dat.gz", [], [
        ("user-agent", "curl/7.15.5"), ("date", "Tue, 27 Mar 2007 21:06:08 +0000"),
        ("x-amz-acl", "public-read"), ("content-type", "application/x-download"),
        ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
        ("x-amz-meta-reviewedby", "joe@johnsmith.net"),
        ("x-amz-meta-reviewedby", "jane@johnsmith.net"),
        ("x-amz-meta-filechecksum", "0x02661779"),
        ("x-amz-meta-checksumalgorithm", "crc32"),
        ("content-disposition", "attachment; filename=database.dat"),
        ("content-encoding", "gzip"), ("content-length", "5913339"),
        ("authorization", f"AWS {DOC_KEY}:ilyl83RwaSoYIEdixDQcA4OnAnc=")]),
    ("GET", "/johnsmith/photos/puppy.jpg", [
        ("AWSAccessKeyId", DOC_KEY), ("Expires", "1175139620"),
        ("Signature", "NpgCjnDzrM+WFzoENXmpNDUsSn8=")], []),
])
def test_aws_documented_examples(method: str, path: str, query: list[tuple[str, str]],
                                 headers: list[tuple[str, str]]) -> None:
    now = next((v for n, v in headers if n == "date"), "Tue, 27 Mar 2007 19:36:42 +0000")
    assert doc_auth(method, path, query, headers, now) == DOC_KEY
    # another resource, or any signed header changed, and it is refused
    changed = [[(n, v.upper() if n in ("content-type", "x-amz-acl") else v)
                for n, v in headers]] if any(n == "content-type" for n, _ in headers) else []
    for p, h in [(path + "x", headers), *((path, c) for c in changed)]:
        with pytest.raises(S3Error) as e:
            doc_auth(method, p, query, h, now)
        assert e.value.code == "SignatureDoesNotMatch"


def send(gw: Gateway, method: str, path: str, *, query: str = "", body: bytes = b"",
         headers: dict[str, str] | None = None, secret: str = SECRET_KEY,
         access_key: str = ACCESS_KEY, date: str | None = None) -> Reply:
    """A request signed by botocore's HmacV1Auth (``date``: the Date it signs)."""
    url = gw.url + path + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    signer = HmacV1Auth(Credentials(access_key, secret))
    if date is not None:
        signer._get_date = lambda: date  # type: ignore[method-assign]
    signer.add_auth(req)
    # as botocore sends them: UTF-8
    sent = {k: v.encode() for k, v in req.headers.items()}
    r = _pool.request(method, url, body=body or None, headers=sent)
    return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.data)


def test_boto3_with_signature_v2(gw: Gateway, bucket: str) -> None:
    s3 = gw.client(signature_version="s3")
    key = "dir/ü space+plus (1).txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"v2 body", ContentType="text/plain",
                  Metadata={"color": "blue"})
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == b"v2 body" and got["Metadata"] == {"color": "blue"}
    assert got["ContentType"] == "text/plain"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    # sub-resources are part of what is signed: ?uploads, ?uploadId&partNumber, ?delete
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"p")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3.head_object(Bucket=bucket, Key="mp", PartNumber=1)["ContentLength"] == 1
    assert [v["Key"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == [key, "mp"]
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}, {"Key": "mp"}]})
    assert len(out["Deleted"]) == 2


def test_v2_presigned_urls(gw: Gateway, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a b/ü.txt", Body=b"shared")
    v2 = gw.client(signature_version="s3")
    url = v2.generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": "a b/ü.txt",
        "ResponseContentDisposition": 'attachment; filename="x y.txt"'}, ExpiresIn=300)
    assert "AWSAccessKeyId=" in url and "Signature=" in url
    r = _pool.request("GET", url)
    assert r.status == 200 and r.data == b"shared"
    assert r.headers["content-disposition"] == 'attachment; filename="x y.txt"'
    # the response-* override is signed: changing it breaks the signature
    r = _pool.request("GET", url.replace("x%20y", "z"))
    assert r.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in r.data
    # a PUT URL: the x-amz-meta-* botocore moves into the query are stored
    put = v2.generate_presigned_url("put_object", Params={
        "Bucket": bucket, "Key": "up", "Metadata": {"color": "blue"}}, ExpiresIn=300)
    assert "x-amz-meta-color=blue" in put
    assert _pool.request("PUT", put, body=b"uploaded").status == 200
    head = s3.head_object(Bucket=bucket, Key="up")
    assert head["Metadata"] == {"color": "blue"} and head["ContentLength"] == 8
    # the metadata is signed: another value breaks the signature
    r = _pool.request("PUT", put.replace("color=blue", "color=red"), body=b"x")
    assert r.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in r.data


def test_expired_v2_url(gw: Gateway, bucket: str) -> None:
    req = AWSRequest(method="GET", url=f"{gw.url}/{bucket}/k")
    HmacV1QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), expires=-60).add_auth(req)
    r = _pool.request("GET", req.url)
    assert r.status == 403 and b"<Message>Request has expired</Message>" in r.data


def test_v2_header_refusals(gw: Gateway, bucket: str) -> None:
    assert send(gw, "GET", f"/{bucket}").status == 200
    r = send(gw, "GET", f"/{bucket}", secret="wrong")
    assert r.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in r.body
    assert b"<StringToSign>GET\n\n\n" in r.body
    r = send(gw, "GET", f"/{bucket}", access_key="AKNOBODY")
    assert r.status == 403 and b"<Code>InvalidAccessKeyId</Code>" in r.body
    old = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    r = send(gw, "GET", f"/{bucket}", date=old)
    assert r.status == 403 and b"<Code>RequestTimeTooSkewed</Code>" in r.body
    for value in ("AWS no-colon", "AWS :sig", "AWS key:"):
        r = raw_v2(gw, f"/{bucket}", {"Authorization": value, "Date": now_http()})
        assert r.status == 400 and b"<Code>InvalidArgument</Code>" in r.body
    r = raw_v2(gw, f"/{bucket}", {"Authorization": f"AWS {ACCESS_KEY}:c2ln"})
    assert r.status == 403 and b"<Code>AccessDenied</Code>" in r.body  # no date
    # V2 signs no body, and can't start the chunk-signature chain of V4
    r = send(gw, "PUT", key_path(bucket, "s"), body=b"x",
             headers={"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
    assert r.status == 400 and b"<Code>InvalidRequest</Code>" in r.body
    # a SHA-256 the client sends is still checked
    r = send(gw, "PUT", key_path(bucket, "s"), body=b"x",
             headers={"x-amz-content-sha256": hashlib.sha256(b"y").hexdigest()})
    assert r.status == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in r.body


def test_v2_query_refusals(gw: Gateway, bucket: str) -> None:
    for query in (f"AWSAccessKeyId={ACCESS_KEY}&Signature=c2ln",
                  f"AWSAccessKeyId={ACCESS_KEY}&Signature=c2ln&Expires=soon"):
        r = raw_v2(gw, f"/{bucket}", {}, query)
        assert r.status == 403 and b"<Code>AccessDenied</Code>" in r.body
    req = AWSRequest(method="GET", url=f"{gw.url}/{bucket}")
    HmacV1QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), expires=60).add_auth(req)
    r = _pool.request("GET", req.url, headers={"Authorization": f"AWS {ACCESS_KEY}:c2ln"})
    assert r.status == 400 and b"<Code>InvalidArgument</Code>" in r.data


def now_http() -> str:
    return format_datetime(datetime.now(UTC), usegmt=True)


def raw_v2(gw: Gateway, path: str, headers: dict[str, str], query: str = "",
           method: str = "GET") -> Reply:
    url = gw.url + path + (f"?{query}" if query else "")
    r = _pool.request(method, url, headers=headers)
    return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.data)


def test_x_amz_date_stands_for_date(gw: Gateway, bucket: str) -> None:
    """AWS: with x-amz-date, the Date line of the string to sign is empty (s3cmd signs
    so); the x-amz-date is among the x-amz-* headers."""
    when = now_http()
    sts = f"GET\n\n\n\nx-amz-date:{when}\n/{bucket}"
    sig = base64.b64encode(hmac.new(SECRET_KEY.encode(), sts.encode(), "sha1").digest())
    headers = {"x-amz-date": when, "Authorization": f"AWS {ACCESS_KEY}:{sig.decode()}"}
    assert raw_v2(gw, f"/{bucket}", headers).status == 200
    # signing the Date line as well is another string
    sts = f"GET\n\n\n{when}\nx-amz-date:{when}\n/{bucket}"
    sig = base64.b64encode(hmac.new(SECRET_KEY.encode(), sts.encode(), "sha1").digest())
    headers["Authorization"] = f"AWS {ACCESS_KEY}:{sig.decode()}"
    assert raw_v2(gw, f"/{bucket}", headers).status == 403


def test_v2_utf8_metadata_and_path(gw: Gateway, bucket: str) -> None:
    """What is signed is the bytes sent: UTF-8 metadata, a percent-encoded path."""
    path = f"/{bucket}/{quote('ключ/ü')}"
    r = send(gw, "PUT", path, body=b"u", headers={"x-amz-meta-name": "café ☕"})
    assert r.status == 200, r.body
    r = send(gw, "HEAD", path)
    assert r.headers["x-amz-meta-name"].encode("latin-1").decode() == "café ☕"
    # in a presigned URL's query (where botocore puts x-amz-meta-*) as well
    v2 = gw.client(signature_version="s3")
    v2.meta.events.unregister("before-parameter-build.s3.PutObject", validate_ascii_metadata)
    url = v2.generate_presigned_url("put_object", Params={
        "Bucket": bucket, "Key": "q", "Metadata": {"name": "café ☕"}}, ExpiresIn=60)
    assert _pool.request("PUT", url, body=b"q").status == 200
    r = send(gw, "HEAD", key_path(bucket, "q"))
    assert r.status == 200
    assert r.headers["x-amz-meta-name"].encode("latin-1").decode() == "café ☕"


def test_v2_leaves_stored_representation_headers_unsigned(gw: Gateway, bucket: str) -> None:
    """V2 covers Content-MD5, Content-Type, the date and x-amz-*, not the other headers
    an upload stores, which a signed request must sign (doc/s3.md)."""
    r = send(gw, "PUT", key_path(bucket, "d"), body=b"d",
             headers={"Content-Disposition": "attachment"})
    assert r.status == 403 and b"<HeadersNotSigned>content-disposition" in r.body
    md5 = base64.b64encode(hashlib.md5(b"d").digest()).decode()
    assert send(gw, "PUT", key_path(bucket, "d"), body=b"d",
                headers={"Content-MD5": md5, "Content-Type": "text/x"}).status == 200
    r = send(gw, "PUT", key_path(bucket, "d"), body=os.urandom(4),
             headers={"Content-MD5": md5})
    assert r.status == 400 and b"<Code>BadDigest</Code>" in r.body


def test_v2_client_errors_are_s3_errors(gw: Gateway) -> None:
    s3 = gw.client(signature_version="s3", secret_key="nope")
    with pytest.raises(ClientError) as e:
        s3.list_buckets()
    assert code_of(e) == ("SignatureDoesNotMatch", 403)

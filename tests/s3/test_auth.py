"""Signature V4 against the running gateway: header and presigned forms, refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore
import pytest
import urllib3
from botocore import UNSIGNED
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.handlers import validate_ascii_metadata

from dscluster.s3 import sigv4

from .support import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    Gateway,
    code_of,
    gateway_settings,
    key_path,
    run_gateway,
    sign,
)

pytestmark = pytest.mark.timeout(30)



def test_bad_secret_is_signature_does_not_match(gw: Gateway, bucket: str) -> None:
    bad = gw.client(secret_key="not-the-secret")
    with pytest.raises(ClientError) as e:
        bad.list_objects_v2(Bucket=bucket)
    assert code_of(e) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as e:
        bad.put_object(Bucket=bucket, Key="k", Body=b"x" * 100_000)
    assert code_of(e) == ("SignatureDoesNotMatch", 403)


def test_unknown_access_key(gw: Gateway, bucket: str) -> None:
    with pytest.raises(ClientError) as e:
        gw.client(access_key="AKNOBODY").list_objects_v2(Bucket=bucket)
    assert code_of(e) == ("InvalidAccessKeyId", 403)


def test_anonymous_refused(gw: Gateway, bucket: str) -> None:
    anon = gw.client(signature_version=UNSIGNED)
    with pytest.raises(ClientError) as e:
        anon.list_objects_v2(Bucket=bucket)
    assert code_of(e) == ("AccessDenied", 403)


def test_anonymous_allowed_when_configured() -> None:
    with run_gateway(gateway_settings(allow_anonymous=True)) as g:
        anon = g.client(signature_version=UNSIGNED)
        anon.create_bucket(Bucket="public")
        anon.put_object(Bucket="public", Key="k", Body=b"open")
        assert anon.get_object(Bucket="public", Key="k")["Body"].read() == b"open"
        # signed requests are still checked
        with pytest.raises(ClientError) as e:
            g.client(secret_key="wrong").get_object(Bucket="public", Key="k")
        assert code_of(e) == ("SignatureDoesNotMatch", 403)


def test_presigned_urls(gw: Gateway, bucket: str) -> None:
    http = urllib3.PoolManager(retries=False)
    s3 = gw.client(signature_version="s3v4")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p"},
                                        ExpiresIn=60)
    assert http.request("PUT", put_url, body=b"via url").status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"},
                                        ExpiresIn=60)
    r = http.request("GET", get_url)
    assert r.status == 200 and r.data == b"via url"
    tampered = get_url.replace(f"/{bucket}/p?", f"/{bucket}/q?")
    assert http.request("GET", tampered).status == 403
    short = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"},
                                      ExpiresIn=1)
    time.sleep(2.1)
    r = http.request("GET", short)
    assert r.status == 403 and b"<Code>AccessDenied</Code>" in r.data
    assert b"expired" in r.data


def test_request_time_too_skewed(gw: Gateway, bucket: str) -> None:
    # signed in full at the old time, credential date included: botocore would sign
    # with today's date, which differs from the old one for 16 minutes after midnight
    old = (datetime.now(UTC) - timedelta(minutes=16)).strftime(sigv4.AMZ_DATE_FORMAT)
    url = f"{gw.url}/{bucket}"
    headers = {"host": url.removeprefix("http://"), "x-amz-date": old,
               "x-amz-content-sha256": sigv4.EMPTY_SHA256}
    names = sorted(headers)
    creq = sigv4.canonical_request("GET", f"/{bucket}", [], list(headers.items()), names,
                                   sigv4.EMPTY_SHA256)
    scope = sigv4.credential_scope(old[:8], REGION)
    signature = sigv4.sign(sigv4.signing_key(SECRET_KEY, old[:8], REGION),
                           sigv4.string_to_sign(old, scope, creq))
    headers["authorization"] = (f"{sigv4.ALGORITHM} Credential={ACCESS_KEY}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    r = urllib3.PoolManager(retries=False).request("GET", url, headers=headers)
    assert r.status == 403 and b"<Code>RequestTimeTooSkewed</Code>" in r.data


def test_unsigned_payload_header_must_be_signed(gw: Gateway, bucket: str) -> None:
    url = f"{gw.url}{key_path(bucket, 'k')}"
    headers = sign("PUT", url, {}, b"abc")
    signed = headers["Authorization"]
    headers["Authorization"] = signed.replace("x-amz-content-sha256;", "")
    r = urllib3.PoolManager(retries=False).request("PUT", url, body=b"abc", headers=headers)
    assert r.status == 403


def test_payload_hash_mismatch(gw: Gateway, bucket: str) -> None:
    url = f"{gw.url}{key_path(bucket, 'k')}"
    headers = sign("PUT", url, {}, b"abc")
    r = urllib3.PoolManager(retries=False).request("PUT", url, body=b"abd", headers=headers)
    assert r.status == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in r.data


@pytest.fixture(scope="module")
def tls_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    settings = gateway_settings(tls_cert=str(d / "cert.pem"), tls_key=str(d / "key.pem"))
    with run_gateway(settings, scheme="https") as g:
        yield g


@pytest.mark.skipif(tuple(int(x) for x in botocore.__version__.split(".")[:2]) < (1, 36),
                    reason="botocore sends flexible checksums by default from 1.36 on")
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_boto3_default_checksums_over_tls_use_aws_chunked_trailers(tls_gw: Gateway) -> None:
    """Over HTTPS boto3 sends STREAMING-UNSIGNED-PAYLOAD-TRAILER bodies with a CRC32
    trailer by default (flexible checksums)."""
    s3 = tls_gw.client()
    seen: list[str] = []
    s3.meta.events.register("before-send.s3.PutObject", lambda request, **_: seen.append(
        request.headers.get("x-amz-content-sha256", b"").decode()))
    s3.create_bucket(Bucket="chunked")
    data = b"streamed " * 20_000
    for key, body in (("small", b"tiny"), ("big", data)):
        s3.put_object(Bucket="chunked", Key=key, Body=body)
        got = s3.get_object(Bucket="chunked", Key=key, ChecksumMode="ENABLED")
        assert got["Body"].read() == body and "ChecksumCRC32" in got
    assert seen == ["STREAMING-UNSIGNED-PAYLOAD-TRAILER"] * 2


# --- what a signature covers ------------------------------------------------------------
# A signed request may carry only signed x-amz-* headers, and an upload only signed
# representation headers: otherwise whoever holds a presigned URL, or captured a signed
# request, could turn it into another operation (x-amz-copy-source) or change what is
# stored (x-amz-meta-*, Content-Type).

_http = urllib3.PoolManager(retries=False)


def presign(method: str, url: str, headers: dict[str, str] | None = None) -> str:
    """A presigned URL for exactly this URL (its query is signed too) and headers, as
    botocore presigns."""
    req = AWSRequest(method=method, url=url, headers=headers or {})
    S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION, expires=60).add_auth(req)
    return str(req.url)


def refused_as_unsigned(r: urllib3.BaseHTTPResponse, *names: str) -> None:
    assert r.status == 403, r.data
    assert b"<Code>AccessDenied</Code>" in r.data
    assert b"were headers present in the request which were not signed" in r.data
    assert f"<HeadersNotSigned>{', '.join(names)}</HeadersNotSigned>".encode() in r.data


def missing(s3: Any, bucket: str, key: str) -> bool:
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    return code_of(e) == ("404", 404)


def test_presigned_put_is_not_turned_into_a_copy(gw: Gateway, s3: Any, bucket: str) -> None:
    other = gw.bucket(s3)
    s3.put_object(Bucket=other, Key="secret.txt", Body=b"the other bucket's secret")
    url = gw.client(signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "upload-here.txt"}, ExpiresIn=60)
    r = _http.request("PUT", url, body=b"", headers={"x-amz-copy-source": f"/{other}/secret.txt"})
    refused_as_unsigned(r, "x-amz-copy-source")
    assert missing(s3, bucket, "upload-here.txt")


def test_signed_put_is_not_rerouted_by_an_added_copy_source(gw: Gateway, s3: Any,
                                                           bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="secret.txt", Body=b"secret")
    url = f"{gw.url}{key_path(bucket, 'target')}"
    headers = sign("PUT", url, {}, b"")
    headers["x-amz-copy-source"] = f"/{bucket}/secret.txt"
    refused_as_unsigned(_http.request("PUT", url, body=b"", headers=headers),
                        "x-amz-copy-source")
    assert missing(s3, bucket, "target")


@pytest.mark.parametrize(("added", "name"), [
    ({"x-amz-meta-owner": "mallory"}, "x-amz-meta-owner"),
    ({"Content-Type": "text/html"}, "content-type"),
    ({"Content-Disposition": "attachment; filename=evil.exe"}, "content-disposition"),
    ({"x-amz-checksum-crc32": "AAAAAA=="}, "x-amz-checksum-crc32"),
])
def test_unsigned_headers_do_not_change_what_is_stored(gw: Gateway, s3: Any, bucket: str,
                                                       added: dict[str, str],
                                                       name: str) -> None:
    url = f"{gw.url}{key_path(bucket, 'signed')}"
    headers = {**sign("PUT", url, {}, b"data"), **added}
    refused_as_unsigned(_http.request("PUT", url, body=b"data", headers=headers), name)
    presigned = presign("PUT", f"{gw.url}{key_path(bucket, 'presigned')}")
    refused_as_unsigned(_http.request("PUT", presigned, body=b"data", headers=added), name)
    assert missing(s3, bucket, "signed") and missing(s3, bucket, "presigned")


def test_an_unsigned_cache_control_is_stored_as_the_js_sdk_sends_it(
        gw: Gateway, s3: Any, bucket: str) -> None:
    url = f"{gw.url}{key_path(bucket, 'cached')}"
    headers = {**sign("PUT", url, {}, b"data"), "Cache-Control": "max-age=60"}
    assert _http.request("PUT", url, body=b"data", headers=headers).status == 200
    assert s3.head_object(Bucket=bucket, Key="cached")["CacheControl"] == "max-age=60"


def test_boto3_presigned_put_with_metadata_and_content_type(gw: Gateway, s3: Any,
                                                           bucket: str) -> None:
    """boto3 signs the headers a presigned URL is made with; the client sends them."""
    url = gw.client(signature_version="s3v4").generate_presigned_url("put_object", Params={
        "Bucket": bucket, "Key": "k", "Metadata": {"camera": "x100"},
        "ContentType": "image/jpeg", "CacheControl": "max-age=60"}, ExpiresIn=60)
    sent = {"x-amz-meta-camera": "x100", "Content-Type": "image/jpeg",
            "Cache-Control": "max-age=60"}
    assert _http.request("PUT", url, body=b"jpeg", headers=sent).status == 200
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["Metadata"] == {"camera": "x100"} and head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == "max-age=60"
    # the signed values, and only them
    r = _http.request("PUT", url, body=b"jpeg", headers={**sent, "Content-Type": "text/html"})
    assert r.status == 403 and b"SignatureDoesNotMatch" in r.data


def test_presigned_url_may_carry_amz_values_in_its_signed_query(gw: Gateway, s3: Any,
                                                               bucket: str) -> None:
    """The AWS SDK for JavaScript moves x-amz-* values into a presigned URL's query;
    they are signed there, and count as the headers they stand for."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"copied", Metadata={"a": "1"})
    base = f"{gw.url}{key_path(bucket, 'meta')}"
    url = presign("PUT", base + "?x-id=PutObject&x-amz-meta-color=blue")
    assert _http.request("PUT", url, body=b"data").status == 200
    assert s3.head_object(Bucket=bucket, Key="meta")["Metadata"] == {"color": "blue"}
    # the query is signed: nothing can be added to it
    r = _http.request("PUT", url + "&x-amz-meta-size=xl", body=b"data")
    assert r.status == 403 and b"SignatureDoesNotMatch" in r.data
    # a value both in the query and in a header is ambiguous
    r = _http.request("PUT", presign("PUT", base + "?x-amz-meta-color=blue",
                                     {"x-amz-meta-color": "red"}),
                      body=b"data", headers={"x-amz-meta-color": "red"})
    assert r.status == 400 and b"<Code>InvalidArgument</Code>" in r.data
    copy = presign("PUT", f"{gw.url}{key_path(bucket, 'copy')}?x-amz-copy-source="
                   f"{bucket}%2Fsrc")
    r = _http.request("PUT", copy)
    assert r.status == 200 and b"<CopyObjectResult" in r.data
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"copied"


def test_anonymous_requests_may_not_copy() -> None:
    with run_gateway(gateway_settings(allow_anonymous=True)) as g:
        anon = g.client(signature_version=UNSIGNED)
        anon.create_bucket(Bucket="public")  # no owner: anyone's
        anon.put_object(Bucket="public", Key="k", Body=b"open", Metadata={"a": "1"})
        assert anon.head_object(Bucket="public", Key="k")["Metadata"] == {"a": "1"}
        with pytest.raises(ClientError) as e:
            anon.copy_object(Bucket="public", Key="copy", CopySource="public/k")
        assert code_of(e) == ("AccessDenied", 403)
        upload_id = anon.create_multipart_upload(Bucket="public", Key="mp")["UploadId"]
        with pytest.raises(ClientError) as e:
            anon.upload_part_copy(Bucket="public", Key="mp", UploadId=upload_id,
                                  PartNumber=1, CopySource="public/k")
        assert code_of(e) == ("AccessDenied", 403)
        with pytest.raises(ClientError):
            anon.head_object(Bucket="public", Key="copy")


def test_sigv4_signs_the_bytes_of_utf8_header_values(gw: Gateway, bucket: str) -> None:
    """botocore signs the UTF-8 of a header value and sends those bytes; the gateway
    must canonicalise the same bytes (not re-encode its latin-1 view of them)."""
    s3 = gw.client()
    # boto3 refuses non-ASCII metadata itself unless told not to (S3's REST rule)
    s3.meta.events.unregister("before-parameter-build.s3.PutObject", validate_ascii_metadata)
    s3.put_object(Bucket=bucket, Key="utf8", Body=b"x", Metadata={"name": "café ☕"})
    # returned as the bytes that were sent; http.client reads header bytes as latin-1
    for got in (s3.head_object(Bucket=bucket, Key="utf8"),
                s3.get_object(Bucket=bucket, Key="utf8")):
        assert got["Metadata"]["name"].encode("latin-1").decode() == "café ☕"

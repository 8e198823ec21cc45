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
from botocore.exceptions import ClientError

from .support import Gateway, code_of, gateway_settings, key_path, raw, run_gateway, sign

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
    old = (datetime.now(UTC) - timedelta(minutes=16)).strftime("%Y%m%dT%H%M%SZ")
    url = f"{gw.url}/{bucket}"
    headers = sign("GET", url, {"x-amz-date": old})
    headers["X-Amz-Date"] = old
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


def test_sigv2_is_refused(gw: Gateway, s3: Any, bucket: str) -> None:
    r = raw(gw, "GET", f"/{bucket}", signed=False,
            headers={"Authorization": "AWS AKTESTGATEWAY0000001:c2lnbmF0dXJl"})
    assert r.status == 400 and b"AWS4-HMAC-SHA256" in r.body
    # boto3's default presigner still makes Signature Version 2 URLs
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    r = urllib3.PoolManager(retries=False).request("GET", url)
    assert r.status == 400 and b"s3v4" in r.data


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

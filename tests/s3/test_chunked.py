"""aws-chunked request bodies: signed chunks (what mc and the Java/JS SDKs send), signed
and unsigned trailers. The requests are signed here from first principles, independently
of the gateway's sigv4 module (whose math the unit tests pin to AWS's vectors)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import zlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3

from .support import ACCESS_KEY, REGION, SECRET_KEY, Gateway

pytestmark = pytest.mark.timeout(30)
EMPTY = hashlib.sha256(b"").hexdigest()
_http = urllib3.PoolManager(retries=False)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def chunked_put(gw: Gateway, bucket: str, key: str, data: bytes, *, mode: str,
                chunk: int = 8192, trailer: str | None = None, tamper: bool = False,
                decoded_length: int | None = None) -> urllib3.BaseHTTPResponse:
    amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    signing_key = ("AWS4" + SECRET_KEY).encode()
    for part in (amz_date[:8], REGION, "s3", "aws4_request"):
        signing_key = _hmac(signing_key, part)
    path = f"/{bucket}/{key}"
    headers = {"host": urlsplit(gw.url).netloc, "x-amz-date": amz_date,
               "x-amz-content-sha256": mode, "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(
                   len(data) if decoded_length is None else decoded_length)}
    if trailer is not None:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    names = sorted(headers)
    creq = "\n".join(["PUT", path, "", "".join(f"{n}:{headers[n]}\n" for n in names),
                      ";".join(names), mode])
    sts = (f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
           f"{hashlib.sha256(creq.encode()).hexdigest()}")
    previous = hmac.new(signing_key, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={previous}")
    signed = mode.startswith("STREAMING-AWS4")
    body = bytearray()
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for piece in pieces:
        ext = ""
        if signed:
            chunk_sts = (f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY}\n"
                         f"{hashlib.sha256(piece).hexdigest()}")
            previous = hmac.new(signing_key, chunk_sts.encode(), hashlib.sha256).hexdigest()
            ext = f";chunk-signature={previous}"
        if tamper and piece:
            piece = piece[:-1] + bytes([piece[-1] ^ 1])
        body += f"{len(piece):x}{ext}\r\n".encode() + piece
        body += b"\r\n" if piece else b""
    if trailer is not None:
        line = f"x-amz-checksum-crc32:{trailer}\n"
        body += line.replace("\n", "\r\n").encode()
        if signed:
            trailer_sts = (f"AWS4-HMAC-SHA256-TRAILER\n{amz_date}\n{scope}\n{previous}\n"
                           f"{hashlib.sha256(line.encode()).hexdigest()}")
            sig = hmac.new(signing_key, trailer_sts.encode(), hashlib.sha256).hexdigest()
            body += f"x-amz-trailer-signature:{sig}\r\n".encode()
    body += b"\r\n"
    del headers["host"]
    return _http.request("PUT", gw.url + path, body=bytes(body), headers=headers)


def test_signed_chunks(gw: Gateway, s3: Any, bucket: str) -> None:
    for size in (0, 100, 8192, gw.settings.max_value_size * 2 + 5):
        data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        r = chunked_put(gw, bucket, f"s{size}", data, mode="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        assert r.status == 200, r.data
        got = s3.get_object(Bucket=bucket, Key=f"s{size}")
        assert got["Body"].read() == data
        assert "ContentEncoding" not in got  # aws-chunked framed the request, not the object


def test_tampered_chunk_is_refused(gw: Gateway, s3: Any, bucket: str) -> None:
    r = chunked_put(gw, bucket, "t", b"a" * 20000, mode="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                    tamper=True)
    assert r.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in r.data
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_signed_chunks_with_signed_trailer(gw: Gateway, s3: Any, bucket: str) -> None:
    data = b"trailer " * 5000
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    r = chunked_put(gw, bucket, "st", data, mode=mode, trailer=crc32_b64(data))
    assert r.status == 200, r.data
    got = s3.get_object(Bucket=bucket, Key="st", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == crc32_b64(data) and got["Body"].read() == data
    r = chunked_put(gw, bucket, "bad", data, mode=mode, trailer=crc32_b64(b"other"))
    assert r.status == 400 and b"<Code>BadDigest</Code>" in r.data


def test_unsigned_chunks_with_trailer(gw: Gateway, s3: Any, bucket: str) -> None:
    data = b"unsigned " * 3000
    mode = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    r = chunked_put(gw, bucket, "ut", data, mode=mode, trailer=crc32_b64(data))
    assert r.status == 200, r.data
    assert s3.get_object(Bucket=bucket, Key="ut")["Body"].read() == data
    r = chunked_put(gw, bucket, "ut2", data, mode=mode, trailer=crc32_b64(b"nope"))
    assert r.status == 400 and b"<Code>BadDigest</Code>" in r.data


def test_decoded_length_must_match(gw: Gateway, bucket: str) -> None:
    r = chunked_put(gw, bucket, "short", b"abc", mode="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                    decoded_length=10)
    assert r.status == 400 and b"<Code>IncompleteBody</Code>" in r.data

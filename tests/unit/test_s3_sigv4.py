"""SigV4 without sockets: AWS's published test vectors (aws-sig-v4-test-suite, and the
S3 documentation's GetObject and chunked-upload examples), then authenticate() on
requests built here."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dscluster.s3 import sigv4
from dscluster.s3.chunked import AwsChunkedDecoder
from dscluster.s3.errors import S3Error

SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_DATE = "20150830T123600Z"
SUITE_SCOPE = "20150830/us-east-1/service/aws4_request"
HOST = ("host", "example.amazonaws.com")
DATE = ("x-amz-date", SUITE_DATE)

# (name, method, path, query pairs, headers, canonical request, signature): aws-sig-v4-
# test-suite, service "service"; the *-unnormalized forms are the S3 ones (no path
# normalisation, single encoding)
SUITE = [
    ("get-vanilla", "GET", "/", [], [HOST, DATE],
     "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
     + sigv4.EMPTY_SHA256,
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("get-vanilla-query-order-key-case", "GET", "/", [("Param2", "value2"),
                                                      ("Param1", "value1")], [HOST, DATE],
     "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" + sigv4.EMPTY_SHA256,
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("get-vanilla-utf8-query", "GET", "/", [("ሴ", "bar")], [HOST, DATE], None,
     "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
    ("get-header-key-duplicate", "GET", "/", [],
     [HOST, ("my-header1", "value2"), ("my-header1", "value2"), ("my-header1", "value1"),
      DATE], None, "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"),
    ("get-header-value-order", "GET", "/", [],
     [HOST, ("my-header1", "value4"), ("my-header1", "value1"), ("my-header1", "value3"),
      ("my-header1", "value2"), DATE], None,
     "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"),
    ("get-header-value-trim", "GET", "/", [],
     [HOST, ("my-header1", " value1"), ("my-header2", ' "a   b   c"'), DATE],
     'GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:"a b c"\n'
     "x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n"
     + sigv4.EMPTY_SHA256,
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
    ("get-unreserved", "GET",
     "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", [], [HOST, DATE],
     None, "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
    ("get-utf8", "GET", "/ሴ", [], [HOST, DATE], None,
     "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
    ("get-space-unnormalized", "GET", "/example space/", [], [HOST, DATE], None,
     "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"),
    ("get-slashes-unnormalized", "GET", "//example//", [], [HOST, DATE], None,
     "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5"),
    ("post-vanilla", "POST", "/", [], [HOST, DATE], None,
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ("post-vanilla-query", "POST", "/", [("Param1", "value1")], [HOST, DATE], None,
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
]


@pytest.mark.parametrize(("name", "method", "path", "query", "headers", "creq", "signature"),
                         SUITE, ids=[c[0] for c in SUITE])
def test_aws_sig_v4_test_suite(name: str, method: str, path: str,
                               query: list[tuple[str, str]], headers: list[tuple[str, str]],
                               creq: str | None, signature: str) -> None:
    signed = sorted({n for n, _ in headers})
    got = sigv4.canonical_request(method, path, query, headers, signed, sigv4.EMPTY_SHA256)
    if creq is not None:
        assert got == creq
    key = sigv4.signing_key(SUITE_SECRET, "20150830", "us-east-1", "service")
    assert sigv4.sign(key, sigv4.string_to_sign(SUITE_DATE, SUITE_SCOPE, got)) == signature


def test_aws_sig_v4_test_suite_presigned_get_vanilla() -> None:
    query = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
             ("X-Amz-Credential", "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"),
             ("X-Amz-Date", SUITE_DATE), ("X-Amz-Expires", "3600"),
             ("X-Amz-SignedHeaders", "host")]
    creq = sigv4.canonical_request("GET", "/", query, [HOST], ["host"], sigv4.EMPTY_SHA256)
    assert creq.split("\n")[2] == (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2F"
        "us-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires=3600"
        "&X-Amz-SignedHeaders=host")
    key = sigv4.signing_key(SUITE_SECRET, "20150830", "us-east-1", "service")
    assert sigv4.sign(key, sigv4.string_to_sign(SUITE_DATE, SUITE_SCOPE, creq)) == (
        "e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d")


# the S3 documentation's examples (examplebucket, AKIAIOSFODNN7EXAMPLE, 2013-05-24)
S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
S3_NOW = datetime(2013, 5, 24, 0, 5, tzinfo=UTC)


def test_s3_get_object_example() -> None:
    headers = [("host", "examplebucket.s3.amazonaws.com"), ("range", "bytes=0-9"),
               ("x-amz-content-sha256", sigv4.EMPTY_SHA256), ("x-amz-date", "20130524T000000Z"),
               ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
                "us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;"
                "x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c"
                "6036bdb41")]
    auth = sigv4.authenticate("GET", "/test.txt", [], headers, secret_for={
        "AKIAIOSFODNN7EXAMPLE": S3_SECRET}.get, allow_anonymous=False, now=S3_NOW)
    assert auth.access_key == "AKIAIOSFODNN7EXAMPLE" and auth.signing is None


CHUNKED_HEADERS = [
    ("host", "s3.amazonaws.com"), ("x-amz-date", "20130524T000000Z"),
    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/"
     "s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;"
     "x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef73"
     "5655705268965c44a0e4690baa4adea153f7db9fa80a0a9"),
    ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
    ("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", "66560"),
    ("content-length", "66824"),
]
CHUNKED_BODY = (
    b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    b"\r\n" + b"a" * 65536 + b"\r\n"
    b"400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    b"\r\n" + b"a" * 1024 + b"\r\n"
    b"0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
    b"\r\n\r\n")


def _chunked_auth() -> sigv4.Authorized:
    return sigv4.authenticate("PUT", "/examplebucket/chunkObject.txt", [], CHUNKED_HEADERS,
                              secret_for={"AKIAIOSFODNN7EXAMPLE": S3_SECRET}.get,
                              allow_anonymous=False, now=S3_NOW)


@pytest.mark.parametrize("step", [1, 7, 4096, len(CHUNKED_BODY)])
def test_s3_chunked_upload_example(step: int) -> None:
    auth = _chunked_auth()
    assert auth.payload_hash == sigv4.STREAMING_SIGNED and auth.signing is not None
    assert auth.signing.seed_signature.startswith("4f232c43")
    decoder = AwsChunkedDecoder(sigv4.ChunkChain(auth.signing))
    out = b"".join(b"".join(decoder.feed(CHUNKED_BODY[i:i + step]))
                   for i in range(0, len(CHUNKED_BODY), step))
    decoder.close()
    assert out == b"a" * 66560


@pytest.mark.parametrize("where", [200, 65600, len(CHUNKED_BODY) - 10])
def test_s3_chunked_upload_example_tampered(where: int) -> None:
    body = bytearray(CHUNKED_BODY)
    body[where] ^= 1
    decoder = AwsChunkedDecoder(sigv4.ChunkChain(_chunked_auth().signing))  # type: ignore[arg-type]
    with pytest.raises(S3Error) as e:
        decoder.feed(bytes(body))
        decoder.close()
    assert e.value.code in ("SignatureDoesNotMatch", "InvalidRequest")


def test_chunked_body_cut_short() -> None:
    decoder = AwsChunkedDecoder(sigv4.ChunkChain(_chunked_auth().signing))  # type: ignore[arg-type]
    decoder.feed(CHUNKED_BODY[:-30])
    with pytest.raises(S3Error) as e:
        decoder.close()
    assert e.value.code == "IncompleteBody"


def test_unsigned_chunks_with_trailer() -> None:
    decoder = AwsChunkedDecoder(None)
    out = decoder.feed(b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n")
    decoder.close()
    assert out == [b"hello"] and decoder.trailers == {"x-amz-checksum-crc32": "NhCmhg=="}
    for bad in (b"zz\r\n", b"5\r\nhelloXX\r\n", b"5\nhello", b"1" * 5000):
        with pytest.raises(S3Error):
            AwsChunkedDecoder(None).feed(bad)


# --- authenticate() -------------------------------------------------------------------

KEYS = {"AKID": "secret"}.get
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
AMZ_NOW = NOW.strftime(sigv4.AMZ_DATE_FORMAT)


def signed_headers(secret: str = "secret", *, amz_date: str = AMZ_NOW,
                   payload: str = sigv4.EMPTY_SHA256) -> list[tuple[str, str]]:
    headers = [("host", "gw:9000"), ("x-amz-content-sha256", payload),
               ("x-amz-date", amz_date)]
    names = [n for n, _ in headers]
    creq = sigv4.canonical_request("GET", "/b/k", [], headers, names, payload)
    scope = sigv4.credential_scope(amz_date[:8], "us-east-1")
    sig = sigv4.sign(sigv4.signing_key(secret, amz_date[:8], "us-east-1"),
                     sigv4.string_to_sign(amz_date, scope, creq))
    return [*headers, ("authorization", f"AWS4-HMAC-SHA256 Credential=AKID/{scope}, "
                                        f"SignedHeaders={';'.join(names)}, Signature={sig}")]


def authenticate(headers: list[tuple[str, str]], query: list[tuple[str, str]] | None = None,
                 *, anonymous: bool = False, now: datetime = NOW) -> sigv4.Authorized:
    return sigv4.authenticate("GET", "/b/k", query or [], headers, secret_for=KEYS,
                              allow_anonymous=anonymous, now=now)


def code(headers: list[tuple[str, str]], **kw: object) -> str:
    with pytest.raises(S3Error) as e:
        authenticate(headers, **kw)  # type: ignore[arg-type]
    return e.value.code


def test_authenticate() -> None:
    assert authenticate(signed_headers()).access_key == "AKID"
    assert code(signed_headers("wrong")) == "SignatureDoesNotMatch"
    other = [(n, v.replace("Credential=AKID", "Credential=NOBODY")) for n, v in signed_headers()]
    assert code(other) == "InvalidAccessKeyId"
    assert code([("host", "gw:9000")]) == "AccessDenied"
    assert authenticate([("host", "gw:9000")], anonymous=True).access_key is None
    old = "20240501T114400Z"  # 16 minutes before NOW
    assert code(signed_headers(amz_date=old)) == "RequestTimeTooSkewed"
    assert authenticate(signed_headers(amz_date="20240501T114600Z")).access_key == "AKID"
    assert code(signed_headers(payload="not-a-hash")) == "InvalidArgument"


def presigned_query(amz_date: str, expires: int) -> list[tuple[str, str]]:
    query = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
             ("X-Amz-Credential", f"AKID/{amz_date[:8]}/us-east-1/s3/aws4_request"),
             ("X-Amz-Date", amz_date), ("X-Amz-Expires", str(expires)),
             ("X-Amz-SignedHeaders", "host")]
    creq = sigv4.canonical_request("GET", "/b/k", query, [("host", "gw:9000")], ["host"],
                                   sigv4.UNSIGNED_PAYLOAD)
    sts = sigv4.string_to_sign(amz_date, f"{amz_date[:8]}/us-east-1/s3/aws4_request", creq)
    return [*query, ("X-Amz-Signature",
                     sigv4.sign(sigv4.signing_key("secret", amz_date[:8], "us-east-1"), sts))]


def test_presigned_urls() -> None:
    headers = [("host", "gw:9000")]
    signed = presigned_query(AMZ_NOW, 60)
    assert authenticate(headers, signed).payload_hash == sigv4.UNSIGNED_PAYLOAD
    later = datetime(2024, 5, 1, 12, 1, 1, tzinfo=UTC)
    assert code(headers, query=signed, now=later) == "AccessDenied"  # expired
    # a URL signed a day ago for a week is still good: no clock-skew limit on it
    assert authenticate(headers, presigned_query("20240430T120000Z", 7 * 86400)).access_key
    assert code(headers, query=presigned_query("20240501T130000Z", 60)) == "AccessDenied"
    forged = [*signed[:-1], ("X-Amz-Signature", "0" * 64)]
    assert code(headers, query=forged) == "SignatureDoesNotMatch"
    assert code(signed_headers(), query=signed) == "InvalidArgument"  # two signatures


# --- what must be signed ------------------------------------------------------------------


def sign_header_auth(headers: list[tuple[str, str]], names: list[str] | None = None,
                     method: str = "GET",
                     query: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """``headers`` and an Authorization signing ``names`` (default: all of them)."""
    names = names if names is not None else sorted({n for n, _ in headers})
    payload = dict(headers).get("x-amz-content-sha256", sigv4.EMPTY_SHA256)
    amz_date = dict(headers).get("x-amz-date", AMZ_NOW)  # a Date header must say NOW
    date = amz_date[:8]
    creq = sigv4.canonical_request(method, "/b/k", query or [], headers, names, payload)
    scope = sigv4.credential_scope(date, "us-east-1")
    sig = sigv4.sign(sigv4.signing_key("secret", date, "us-east-1"),
                     sigv4.string_to_sign(amz_date, scope, creq))
    return [*headers, ("authorization", f"AWS4-HMAC-SHA256 Credential=AKID/{scope}, "
                                        f"SignedHeaders={';'.join(names)}, Signature={sig}")]


def refusal(headers: list[tuple[str, str]], query: list[tuple[str, str]] | None = None,
            method: str = "GET") -> S3Error:
    with pytest.raises(S3Error) as e:
        sigv4.authenticate(method, "/b/k", query or [], headers, secret_for=KEYS,
                           allow_anonymous=False, now=NOW)
    return e.value


BASE = [("host", "gw:9000"), ("x-amz-content-sha256", sigv4.EMPTY_SHA256),
        ("x-amz-date", AMZ_NOW)]


@pytest.mark.parametrize("added", [
    ("x-amz-copy-source", "/other/secret.txt"), ("x-amz-meta-owner", "mallory"),
    ("x-amz-metadata-directive", "REPLACE"), ("x-amz-checksum-crc32", "AAAAAA=="),
    ("x-amz-copy-source-range", "bytes=0-9"), ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
])
def test_every_amz_header_and_content_md5_must_be_signed(added: tuple[str, str]) -> None:
    headers = sign_header_auth(BASE)
    assert authenticate(headers).signed == {"host", "x-amz-content-sha256", "x-amz-date"}
    e = refusal([*headers, added])
    assert e.code == "AccessDenied" and e.fields == {"HeadersNotSigned": added[0]}
    assert authenticate(sign_header_auth([*BASE, added])).access_key == "AKID"
    e = refusal([("host", "gw:9000"), added], presigned_query(AMZ_NOW, 60))
    assert e.code == "AccessDenied" and e.fields == {"HeadersNotSigned": added[0]}


def test_the_date_header_must_be_signed_when_it_is_the_date() -> None:
    date = [("host", "gw:9000"), ("date", "Wed, 01 May 2024 12:00:00 GMT")]
    assert authenticate(sign_header_auth(date)).access_key == "AKID"
    e = refusal(sign_header_auth(date, ["host"]))
    assert e.code == "AccessDenied" and e.fields == {"HeadersNotSigned": "date"}
    # with x-amz-date it is just a header
    assert authenticate(sign_header_auth([*BASE, ("date", "whenever")],
                                         sorted(n for n, _ in BASE))).access_key


@pytest.mark.parametrize("names", ["x-amz-date;host;x-amz-content-sha256",
                                   "host;host;x-amz-content-sha256;x-amz-date",
                                   "Host;x-amz-content-sha256;x-amz-date", ""])
def test_signed_headers_are_sorted_distinct_lower_case_names(names: str) -> None:
    """A repeated name would repeat its header's value in the canonical request: a
    short SignedHeaders could make it huge."""
    headers = sign_header_auth(BASE, names.split(";"))
    assert refusal(headers).code == "AuthorizationHeaderMalformed"


def test_presigned_expiry_digits_are_ascii() -> None:
    query = [(k, "\u00b2" if k == "X-Amz-Expires" else v)
             for k, v in presigned_query(AMZ_NOW, 60)]
    assert refusal([("host", "gw:9000")], query).code == "AuthorizationQueryParametersError"


def presign_query(extra: list[tuple[str, str]], headers: list[tuple[str, str]],
                  method: str = "PUT") -> list[tuple[str, str]]:
    names = sorted({n for n, _ in headers})
    query = [*extra, ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
             ("X-Amz-Credential", f"AKID/{AMZ_NOW[:8]}/us-east-1/s3/aws4_request"),
             ("X-Amz-Date", AMZ_NOW), ("X-Amz-Expires", "60"),
             ("X-Amz-SignedHeaders", ";".join(names))]
    creq = sigv4.canonical_request(method, "/b/k", query, headers, names,
                                   sigv4.UNSIGNED_PAYLOAD)
    sts = sigv4.string_to_sign(AMZ_NOW, f"{AMZ_NOW[:8]}/us-east-1/s3/aws4_request", creq)
    return [*query, ("X-Amz-Signature",
                     sigv4.sign(sigv4.signing_key("secret", AMZ_NOW[:8], "us-east-1"), sts))]


def test_presigned_query_values_are_read_as_headers() -> None:
    host = [("host", "gw:9000")]
    query = presign_query([("x-id", "PutObject"), ("X-Amz-Meta-Color", "blue"),
                           ("x-amz-copy-source", "/b/src")], host)
    auth = sigv4.authenticate("PUT", "/b/k", query, host, secret_for=KEYS,
                              allow_anonymous=False, now=NOW)
    assert auth.query_headers == (("x-amz-meta-color", "blue"),
                                  ("x-amz-copy-source", "/b/src"))
    assert {"x-amz-meta-color", "x-amz-copy-source", "host"} <= auth.signed
    twice = presign_query([("x-amz-meta-a", "1"), ("X-Amz-Meta-A", "2")], host)
    assert refusal(host, twice, "PUT").code == "InvalidArgument"
    both = [*host, ("x-amz-meta-a", "1")]
    assert refusal(both, presign_query([("x-amz-meta-a", "1")], both), "PUT").code == (
        "InvalidArgument")
    # a header-signed request's query is not read as headers
    meta = [("x-amz-meta-a", "1")]
    signed = sigv4.authenticate("GET", "/b/k", meta, sign_header_auth(BASE, query=meta),
                                secret_for=KEYS, allow_anonymous=False, now=NOW)
    assert signed.access_key == "AKID" and signed.query_headers == ()


def test_require_signed() -> None:
    auth = authenticate(sign_header_auth([*BASE, ("content-type", "text/plain")]))
    stored = ("content-type", "cache-control")
    auth.require_signed([*BASE, ("content-type", "text/plain")], stored)
    with pytest.raises(S3Error) as e:
        auth.require_signed([*BASE, ("cache-control", "no-cache")], stored)
    assert e.value.fields == {"HeadersNotSigned": "cache-control"}
    anonymous = authenticate([("host", "gw:9000")], anonymous=True)
    anonymous.require_signed([("cache-control", "no-cache")], stored)

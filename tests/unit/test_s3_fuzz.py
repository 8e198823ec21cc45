"""Fuzzing the S3 gateway's request parsers with hypothesis: Signature V4
(``sigv4.authenticate``), the router, request parsing (http.py), the XML of request
bodies, the aws-chunked decoder and the Range header.

Every parser meets hostile input: it may refuse it only with an ``S3Error`` (which the
app answers as S3 does); any other exception would be a 500 InternalError, and a parse
that grows faster than its input a denial of service. So each property asserts "no
exception but S3Error", and ``test_*_is_linear`` compares one input with one 8 times as
large, of the shapes that made parsers quadratic before (runs of spaces in a regex,
repeated names in SignedHeaders).

Each property runs a few hundred examples in the default test run and many more under
the ``soak`` marker (``make soak``); the soak run also drives an atheris (libFuzzer)
worker when atheris is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dscluster.s3 import sigv4
from dscluster.s3.chunked import AwsChunkedDecoder
from dscluster.s3.errors import S3Error
from dscluster.s3.http import Request, parse_request
from dscluster.s3.multipart import _part_number
from dscluster.s3.objects import parse_range
from dscluster.s3.router import ROUTING_KEYS, UNSUPPORTED_KEYS, route
from dscluster.s3.xml import parse

T = TypeVar("T")
QUICK = settings(max_examples=300, deadline=timedelta(seconds=2),
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SOAK = settings(QUICK, max_examples=20_000)
RUNS = [pytest.param(QUICK, id="quick"),
        pytest.param(SOAK, id="soak", marks=[pytest.mark.soak, pytest.mark.timeout(3600)])]

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
AMZ_NOW = NOW.strftime(sigv4.AMZ_DATE_FORMAT)
SCOPE = f"{AMZ_NOW[:8]}/us-east-1/s3/aws4_request"
KEY = sigv4.signing_key("secret", AMZ_NOW[:8], "us-east-1")


def secret_for(access_key: str) -> str | None:
    return "secret" if access_key == "AKID" else None


def refused_or(fn: Callable[[], T]) -> T | None:
    """``fn()``, or None when it refused the input with an S3Error."""
    try:
        return fn()
    except S3Error:
        return None


# --- strategies -----------------------------------------------------------------------

# header values arrive as latin-1, query values percent-decoded as UTF-8
latin1 = st.text(st.characters(max_codepoint=255), max_size=40)
anything = st.text(max_size=40)
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
header_names = st.sampled_from([
    "host", "authorization", "x-amz-date", "date", "x-amz-content-sha256", "content-length",
    "transfer-encoding", "x-amz-copy-source", "x-amz-meta-a", "content-type", "content-md5",
    "x-amz-decoded-content-length", "x-amz-trailer",
]) | st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
signed_lists = st.lists(header_names, max_size=6).map(";".join)
credentials = st.sampled_from([f"AKID/{SCOPE}", f"NOBODY/{SCOPE}", "AKID/20240501/x/s3",
                               "AKID/20240502/us-east-1/s3/aws4_request",
                               "AKID/20240501/us-east-1/iam/aws4_request"]) | latin1
amz_dates = st.sampled_from([AMZ_NOW, "20240501T115000Z", "20240430T120000Z",
                             "Wed, 01 May 2024 12:00:00 GMT"]) | latin1
payloads = st.sampled_from([sigv4.EMPTY_SHA256, sigv4.UNSIGNED_PAYLOAD,
                            *sigv4.STREAMING_MODES]) | hex64 | latin1
authorizations = st.builds(
    lambda prefix, fields, sep: prefix + sep.join(f"{k}={v}" for k, v in fields),
    st.sampled_from(["AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256", "AWS ", ""]),
    st.lists(st.tuples(st.sampled_from(["Credential", "SignedHeaders", "Signature", "X"]),
                       credentials | signed_lists | hex64 | latin1), max_size=5),
    st.sampled_from([",", ", ", ";"]))
header_values = {
    "authorization": authorizations, "x-amz-date": amz_dates, "date": amz_dates,
    "x-amz-content-sha256": payloads, "content-length": st.sampled_from(["0", "5", "x"]),
}
headers = st.lists(header_names.flatmap(
    lambda n: st.tuples(st.just(n), header_values.get(n, latin1))), max_size=8)
query_names = st.sampled_from([
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
    "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Content-Sha256", "x-amz-content-sha256",
    "AWSAccessKeyId", "x-amz-meta-a", "X-Amz-Meta-A", "x-amz-copy-source", *ROUTING_KEYS,
    *sorted(UNSUPPORTED_KEYS)[:4],
]) | anything
query_values = (st.sampled_from(["AWS4-HMAC-SHA256", "60", "604800", "604801", "0", "2",
                                 "\u00b2", "9" * 5000]) | credentials | amz_dates
                | signed_lists | hex64 | payloads | anything)
queries = st.lists(st.tuples(query_names, query_values), max_size=8)
paths = st.sampled_from(["/", "/b", "/b/", "/b/k", "//", "/b//k"]) | anything


# --- sigv4 ------------------------------------------------------------------------------


def sign_request(hdrs: list[tuple[str, str]], names: list[str]) -> list[tuple[str, str]]:
    payload = dict(hdrs)["x-amz-content-sha256"]
    creq = sigv4.canonical_request("PUT", "/b/k", [], hdrs, names, payload)
    sig = sigv4.sign(KEY, sigv4.string_to_sign(AMZ_NOW, SCOPE, creq))
    return [*hdrs, ("authorization", f"{sigv4.ALGORITHM} Credential=AKID/{SCOPE}, "
                                     f"SignedHeaders={';'.join(names)}, Signature={sig}")]


def presign_request(query: list[tuple[str, str]]) -> list[tuple[str, str]]:
    query = [*query, ("X-Amz-Algorithm", sigv4.ALGORITHM), ("X-Amz-Credential", f"AKID/{SCOPE}"),
             ("X-Amz-Date", AMZ_NOW), ("X-Amz-Expires", "60"), ("X-Amz-SignedHeaders", "host")]
    creq = sigv4.canonical_request("PUT", "/b/k", query, [("host", "gw:9000")], ["host"],
                                   sigv4.UNSIGNED_PAYLOAD)
    return [*query, ("X-Amz-Signature",
                     sigv4.sign(KEY, sigv4.string_to_sign(AMZ_NOW, SCOPE, creq)))]


def _mutate(pairs: list[tuple[str, str]], at: int, value: str) -> list[tuple[str, str]]:
    """One value replaced: a signature, a date, a signed header, ..."""
    i = at % len(pairs)
    return [*pairs[:i], (pairs[i][0], value), *pairs[i + 1:]]


# validly signed requests with one value changed, which get past the parsing into the
# date, skew, credential and signature checks
nearly_signed = st.builds(
    lambda extra, at, value: (_mutate(sign_request(
        [("host", "gw:9000"), ("x-amz-content-sha256", sigv4.UNSIGNED_PAYLOAD),
         ("x-amz-date", AMZ_NOW), *extra], sorted({"host", "x-amz-content-sha256",
                                                   "x-amz-date", *(n for n, _ in extra)})),
        at, value), []),
    st.lists(st.tuples(header_names, latin1), max_size=3), st.integers(0, 10),
    latin1 | amz_dates | payloads | authorizations)
nearly_presigned = st.builds(
    lambda extra, at, value: ([("host", "gw:9000")], _mutate(presign_request(extra), at,
                                                             value)),
    queries, st.integers(0, 20), query_values)


@pytest.mark.parametrize("run", RUNS)
def test_authenticate_refuses_only_with_s3_errors(run: settings) -> None:
    @run
    @given(st.sampled_from(["GET", "PUT", "POST", "HEAD", "DELETE", "X"]), paths,
           st.tuples(headers, queries) | nearly_signed | nearly_presigned, st.booleans())
    # compare_digest raises on a non-ASCII signature
    @example("GET", "/", ([("host", "gw:9000")], _mutate(presign_request([]), 5, "\x80")), False)
    def check(method: str, path: str,
              request: tuple[list[tuple[str, str]], list[tuple[str, str]]],
              anonymous: bool) -> None:
        hdrs, query = request
        auth = refused_or(lambda: sigv4.authenticate(
            method, path, query, hdrs, secret_for=secret_for, allow_anonymous=anonymous,
            now=NOW))
        assert auth is None or auth.access_key in (None, "AKID")
    check()


extra_headers = st.dictionaries(
    st.sampled_from(["x-amz-copy-source", "x-amz-meta-a", "x-amz-meta-b", "content-md5",
                     "x-amz-checksum-crc32", "content-type", "cache-control", "range"]),
    latin1, max_size=5)


@pytest.mark.parametrize("run", RUNS)
def test_signed_requests_are_accepted_exactly_when_what_matters_is_signed(
        run: settings) -> None:
    """host, x-amz-* and Content-MD5 must be signed; any other header may be."""
    @run
    @given(extra_headers, st.data())
    def check(extra: dict[str, str], data: st.DataObject) -> None:
        hdrs = [("host", "gw:9000"), ("x-amz-content-sha256", sigv4.UNSIGNED_PAYLOAD),
                ("x-amz-date", AMZ_NOW), *extra.items()]
        names = sorted(data.draw(st.sets(st.sampled_from(sorted({n for n, _ in hdrs})))))
        must = {n for n, _ in hdrs
                if n == "host" or n.startswith("x-amz-") or n == "content-md5"}
        try:
            auth = sigv4.authenticate("PUT", "/b/k", [], sign_request(hdrs, names),
                                      secret_for=secret_for, allow_anonymous=False, now=NOW)
        except S3Error as e:
            assert not must <= set(names) and e.code in ("AccessDenied",
                                                          "AuthorizationHeaderMalformed")
        else:
            assert must <= set(names) and auth.signed == set(names)
    check()


# --- the router and the request ---------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_route_refuses_only_with_s3_errors(run: settings) -> None:
    @run
    @given(st.sampled_from(["GET", "PUT", "POST", "HEAD", "DELETE"]) | anything, paths,
           st.dictionaries(query_names, st.lists(anything, min_size=1, max_size=2),
                           max_size=5), st.booleans())
    def check(method: str, path: str, query: dict[str, list[str]], copy: bool) -> None:
        where = refused_or(lambda: route(method, path, query, copy_source=copy))
        assert where is None or path.startswith("/")
    check()


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


@pytest.mark.parametrize("run", RUNS)
def test_parse_request_refuses_only_with_s3_errors(run: settings) -> None:
    @run
    @given(st.binary(max_size=60), st.binary(max_size=60),
           st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=20)), max_size=4))
    def check(raw_path: bytes, query: bytes, hdrs: list[tuple[bytes, bytes]]) -> None:
        scope = {"method": "get", "path": "/", "raw_path": raw_path, "query_string": query,
                 "headers": hdrs}
        req = refused_or(lambda: parse_request(scope, _no_body, "ID"))
        assert req is None or all(n == n.lower() for n, _ in req.headers)
    check()


def _request(query: list[tuple[str, str]]) -> Request:
    return Request("GET", "/b/k", query, [], _no_body, "ID")


@pytest.mark.parametrize("run", RUNS)
def test_number_parameters_refuse_only_with_s3_errors(run: settings) -> None:
    @run
    @given(st.text("0123456789", max_size=30) | anything)
    @example("9" * 5000)  # int() refuses more than 4300 digits
    @example("\u00b2")  # a digit to str.isdigit(), not to int()
    def check(value: str) -> None:
        req = _request([("max-keys", value), ("partNumber", value)])
        count = refused_or(lambda: req.count_param("max-keys", 1000))
        assert count is None or count >= 0
        number = refused_or(lambda: _part_number(req))
        assert number is None or 1 <= number <= 10000
    check()


# --- XML --------------------------------------------------------------------------------

ENCODINGS = ["utf-8", "utf-16", "utf-16-le", "utf-16-be"]
element_names = st.sampled_from(["Delete", "Object", "Key", "Quiet", "Part", "ETag"])
xml_text = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=20).map(
    lambda t: t.replace("&", "&amp;").replace("<", "&lt;"))
elements = st.recursive(
    st.builds(lambda n, t: f"<{n}>{t}</{n}>", element_names, xml_text),
    lambda inner: st.builds(lambda n, kids: f"<{n}>{''.join(kids)}</{n}>", element_names,
                            st.lists(inner, max_size=4)),
    max_leaves=20)
dtds = st.sampled_from([
    '<!DOCTYPE Delete [<!ENTITY k "victim">]>',
    '<!DOCTYPE Delete [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE Delete SYSTEM "http://127.0.0.1:1/evil.dtd">',
    '<!DOCTYPE Delete [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>',
    "<!DOCTYPE Delete>",
])


@pytest.mark.parametrize("run", RUNS)
def test_xml_parse_refuses_only_with_malformed_xml(run: settings) -> None:
    @run
    @given(st.binary(max_size=200) | elements.map(str.encode))
    def check(body: bytes) -> None:
        try:
            parse(body)
        except S3Error as e:
            assert e.code == "MalformedXML"
    check()


@pytest.mark.parametrize("run", RUNS)
def test_xml_with_a_dtd_is_refused_in_every_encoding(run: settings) -> None:
    @run
    @given(st.sampled_from(ENCODINGS), dtds, elements, st.booleans())
    def check(encoding: str, dtd: str, body: str, declared: bool) -> None:
        name = "UTF-8" if encoding == "utf-8" else "UTF-16"
        head = f'<?xml version="1.0" encoding="{name}"?>' if declared else ""
        with pytest.raises(S3Error) as e:
            parse((head + dtd + body).encode(encoding))
        assert e.value.code == "MalformedXML"
        assert parse((head + body).encode(encoding)) is not None
    check()


# --- aws-chunked ------------------------------------------------------------------------


def chunked_body(chunks: list[bytes], *, signed: bool, trailer: bool) -> bytes:
    """An aws-chunked body, its chunks (and trailer) signed from seed signature 0*64."""
    previous, out = "0" * 64, bytearray()
    for data in [*chunks, b""]:
        ext = b""
        if signed:
            previous = sigv4.sign(KEY, sigv4.chunk_string_to_sign(
                AMZ_NOW, SCOPE, previous, hashlib.sha256(data).hexdigest()))
            ext = f";chunk-signature={previous}".encode()
        out += f"{len(data):x}".encode() + ext + b"\r\n" + data + (b"\r\n" if data else b"")
    if trailer:
        line = "x-amz-checksum-crc32:AAAAAA=="
        out += line.encode() + b"\r\n"
        if signed:
            sig = sigv4.sign(KEY, sigv4.trailer_string_to_sign(
                AMZ_NOW, SCOPE, previous, (line + "\n").encode()))
            out += f"x-amz-trailer-signature:{sig}\r\n".encode()
    return bytes(out + b"\r\n")


def decoder(signed: bool, trailer: bool) -> AwsChunkedDecoder:
    chain = sigv4.ChunkChain(sigv4.SigningContext(KEY, AMZ_NOW, SCOPE, "0" * 64))
    return AwsChunkedDecoder(chain if signed else None, signed_trailer=signed and trailer)


def decode(dec: AwsChunkedDecoder, body: bytes, cuts: list[int]) -> bytes:
    out = bytearray()
    for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True):
        out += b"".join(dec.feed(body[a:b]))
    dec.close()
    return bytes(out)


cut_points = st.lists(st.integers(0, 1 << 12), max_size=6)


@pytest.mark.parametrize("run", RUNS)
def test_chunked_decoder_refuses_only_with_s3_errors(run: settings) -> None:
    @run
    @given(st.lists(st.binary(max_size=60), max_size=4), st.booleans(), st.booleans(),
           st.lists(st.tuples(st.integers(0, 1 << 12), st.binary(max_size=8)), max_size=3),
           cut_points, st.binary(max_size=200))
    def check(chunks: list[bytes], signed: bool, trailer: bool,
              damage: list[tuple[int, bytes]], cuts: list[int], noise: bytes) -> None:
        body = bytearray(chunked_body(chunks, signed=signed, trailer=trailer))
        for at, junk in damage:
            body[at % (len(body) + 1):at % (len(body) + 1) + len(junk)] = junk
        for candidate in (bytes(body), noise):
            refused_or(lambda c=candidate: decode(
                decoder(signed, trailer), c, sorted(x % (len(c) + 1) for x in cuts)))
    check()


@pytest.mark.parametrize("run", RUNS)
def test_chunked_decoder_round_trips(run: settings) -> None:
    @run
    @given(st.lists(st.binary(min_size=1, max_size=300), max_size=5), st.booleans(),
           st.booleans(), cut_points)
    def check(chunks: list[bytes], signed: bool, trailer: bool, cuts: list[int]) -> None:
        body = chunked_body(chunks, signed=signed, trailer=trailer)
        dec = decoder(signed, trailer)
        assert decode(dec, body, sorted(x % (len(body) + 1) for x in cuts)) == b"".join(chunks)
        assert dec.trailers == ({"x-amz-checksum-crc32": "AAAAAA=="} if trailer else {})
    check()


# --- Range ------------------------------------------------------------------------------

ranges = st.builds(
    lambda a, unit, b, first, c, dash, d, last, e: f"{a}{unit}{b}={c}{first}{dash}{d}{last}{e}",
    st.sampled_from(["", " ", "\t"]), st.sampled_from(["bytes", "items", "BYTES"]),
    st.sampled_from(["", " "]), st.sampled_from(["", "0", "5", "99", "1" * 25, "٣"]),
    st.sampled_from(["", " "]), st.sampled_from(["-", "", "--", ","]),
    st.sampled_from(["", " "]), st.sampled_from(["", "0", "7", "100", "9" * 5000]),
    st.sampled_from(["", " ", ",0-1", "x"]))


@pytest.mark.parametrize("run", RUNS)
def test_range_parser(run: settings) -> None:
    @run
    @given(ranges | anything | st.none(), st.integers(0, 200))
    @example("bytes=0-" + "9" * 5000, 100)  # int() refuses more than 4300 digits
    @example("bytes=" + "9" * 5000 + "-", 100)
    def check(value: str | None, size: int) -> None:
        try:
            got = parse_range(value, size)
        except S3Error as e:
            assert e.code == "InvalidRange"
        else:
            assert got is None or 0 <= got[0] <= got[1] < size
    check()


# --- linearity --------------------------------------------------------------------------


def best_seconds(fn: Callable[[], object], repeat: int = 5) -> float:
    """The quickest of ``repeat`` runs: noise on a busy machine only adds time."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def assert_linear(run: Callable[[int], object], n: int) -> None:
    """``run(8n)`` takes well under what a quadratic parse would (64 times ``run(n)``);
    at least a millisecond is assumed of ``run(n)``, so that timer noise can't fail it."""
    small = best_seconds(lambda: run(n))
    large = best_seconds(lambda: run(8 * n))
    assert large < 24 * max(small, 1e-3), (small, large)


def _authenticate(hdrs: list[tuple[str, str]], query: list[tuple[str, str]]) -> None:
    refused_or(lambda: sigv4.authenticate("PUT", "/b/k", query, hdrs, secret_for=secret_for,
                                          allow_anonymous=False, now=NOW))


def signed_many(n: int) -> None:
    hdrs = [("host", "gw:9000"), ("x-amz-content-sha256", sigv4.UNSIGNED_PAYLOAD),
            ("x-amz-date", AMZ_NOW), *((f"x-amz-meta-{i:06d}", "v " * 20) for i in range(n))]
    names = sorted(n for n, _ in hdrs)
    _authenticate([*hdrs, ("authorization", f"{sigv4.ALGORITHM} Credential=AKID/{SCOPE}, "
                           f"SignedHeaders={';'.join(names)}, Signature={'0' * 64}")], [])


def repeated_signed_name(n: int) -> None:
    hdrs = [("host", "gw:9000"), ("x-amz-content-sha256", sigv4.UNSIGNED_PAYLOAD),
            ("x-amz-date", AMZ_NOW), ("x-amz-meta-a", "v" * n)]
    names = ";".join(["host", *["x-amz-meta-a"] * n, "x-amz-content-sha256", "x-amz-date"])
    _authenticate([*hdrs, ("authorization", f"{sigv4.ALGORITHM} Credential=AKID/{SCOPE}, "
                           f"SignedHeaders={names}, Signature={'0' * 64}")], [])


def presigned_many(n: int) -> None:
    query = [(f"x-amz-meta-{i:06d}", "v") for i in range(n)] + [
        ("X-Amz-Algorithm", sigv4.ALGORITHM), ("X-Amz-Credential", f"AKID/{SCOPE}"),
        ("X-Amz-Date", AMZ_NOW), ("X-Amz-Expires", "60"), ("X-Amz-SignedHeaders", "host"),
        ("X-Amz-Signature", "0" * 64)]
    _authenticate([("host", "gw:9000")], query)


@pytest.mark.parametrize(("shape", "n"), [(signed_many, 400), (repeated_signed_name, 800),
                                          (presigned_many, 400)])
def test_authenticate_is_linear(shape: Callable[[int], None], n: int) -> None:
    assert_linear(shape, n)


def test_route_and_parse_request_are_linear() -> None:
    def run(n: int) -> None:
        query = "&".join(f"k{i}=v%20{i}" for i in range(n)).encode()
        scope = {"method": "GET", "path": "/", "raw_path": b"/b/" + b"%2F" * n,
                 "query_string": query, "headers": [(b"x-amz-a", b"v")] * n}
        req = parse_request(scope, _no_body, "ID")
        route(req.method, req.path, req.query)
    assert_linear(run, 2000)


def test_xml_parse_is_linear() -> None:
    def run(n: int) -> None:
        parse(b"<Delete>" + b"<Object><Key>k</Key></Object>" * n + b"</Delete>")
        refused_or(lambda: parse(b"<a>" * n))
    assert_linear(run, 2000)


def test_chunked_decoder_is_linear() -> None:
    def run(n: int) -> None:
        body = chunked_body([b"x"] * n, signed=True, trailer=True)
        dec = decoder(True, True)
        for i in range(0, len(body), 7):
            dec.feed(body[i:i + 7])
        dec.close()
        refused_or(lambda: AwsChunkedDecoder(None).feed(b"1" * n))
    assert_linear(run, 200)


@pytest.mark.parametrize("value", [
    "bytes=" + " " * 100 + "x", "bytes=1" + " " * 100 + "x", " " * 100 + "bytes=0-",
    "bytes=0-" + " " * 100 + "x", "bytes=" + "1" * 100])
def test_range_parser_is_linear(value: str) -> None:
    def run(n: int) -> None:
        for _ in range(20):
            refused_or(lambda: parse_range(value.replace(" " * 100, " " * n)
                                           .replace("1" * 100, "1" * n), 1000))
    assert_linear(run, 1000)


# --- atheris ----------------------------------------------------------------------------

ATHERIS_WORKER = Path(__file__).with_name("s3_atheris_worker.py")


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("target", ["authenticate", "xml", "chunked", "range", "request"])
def test_atheris(target: str, tmp_path: Path) -> None:
    """libFuzzer's coverage-guided search, in a process of its own (it exits when done)."""
    pytest.importorskip("atheris")
    seconds = os.environ.get("DSCLUSTER_ATHERIS_SECONDS", "60")
    done = subprocess.run([sys.executable, str(ATHERIS_WORKER), target,
                           f"-max_total_time={seconds}", f"-artifact_prefix={tmp_path}/"],
                          capture_output=True, text=True, timeout=int(seconds) + 600)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.parametrize("value", ["²", "9" * 5000])
def test_numbers_no_int_can_read_are_refused_as_s3_errors(value: str) -> None:
    from dscluster.s3.multipart import _requested_parts

    body = (f"<CompleteMultipartUpload><Part><PartNumber>{value}</PartNumber>"
            "<ETag>x</ETag></Part></CompleteMultipartUpload>").encode()
    with pytest.raises(S3Error):
        _requested_parts(body)

"""AWS Signature Version 4, sans-IO: the Authorization header, presigned URLs (X-Amz-*
query parameters) and the chunk-signature chain of aws-chunked bodies.

Theory of operation. ``authenticate`` rebuilds the canonical request from what arrived
(method, decoded path, query pairs, headers) the way S3 does it: the path is
URI-encoded once and never normalised, query pairs are sorted after encoding, header
values are trimmed and their inner runs of spaces collapsed. The string to sign is
signed with the key derived from the secret of the claimed access key and compared in
constant time. What the signature says about the body (a SHA-256, UNSIGNED-PAYLOAD or
one of the STREAMING-* modes) is returned, so that the body reader can verify it; for
signed streaming bodies the seed signature starts a ``ChunkChain`` that every chunk
signature (and the trailer signature) must continue.

What must be signed. A valid signature only vouches for the headers it lists, so every
header that could change what a request does must be among them, as AWS requires:
``host``, every ``x-amz-*`` header present (x-amz-copy-source turns a PUT into a copy,
x-amz-meta-* and x-amz-checksum-* are stored, x-amz-date and x-amz-content-sha256 say
when and what was signed), Content-MD5, and the Date header when it is the request's
date. The representation headers an upload stores are required by the handlers that
store them (``Authorized.require_signed``). A presigned URL may carry x-amz-* values in
its query instead, as the AWS SDK for JavaScript puts them; the whole query is
signed, so they are returned as ``query_headers`` for the request to read as headers.

Signature Version 2 requests also come in through ``authenticate``: sigv2.py reads their
claim and builds the string they signed, and the checks both versions share (the
secret of the access key, clock skew and expiry, the constant-time comparison, what
the request may carry unsigned) are made here.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote

from . import sigv2
from .errors import S3Error
from .sigv2 import AMZ_PREFIX, Headers
from .sigv2 import first_header as _first

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
MAX_SKEW_SECONDS = 15 * 60
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
ISO_SECONDS = "%Y-%m-%dT%H:%M:%SZ"  # how AWS shows a V2 URL's expiry

# signed whenever present, on every request (besides host and x-amz-*)
SIGNED_IF_PRESENT = frozenset({"content-md5"})
# the query parameters of presigned-URL authentication itself (lower-cased), which are
# never read as headers
AUTH_PARAMS = frozenset({
    "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
    "x-amz-signedheaders", "x-amz-signature", "x-amz-security-token", "x-amz-content-sha256",
})

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_EXPIRES_RE = re.compile(r"[0-9]{1,6}")  # MAX_PRESIGN_SECONDS has 6 digits
# a header name as SignedHeaders lists it: lower-case HTTP token characters
_HEADER_NAME_RE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_SPACES_RE = re.compile(r"[ \t]+")


def uri_encode(s: str, *, keep_slash: bool = False) -> str:
    """AWS's UriEncode: every byte but A-Z a-z 0-9 - _ . ~ as %XX (upper-case hex)."""
    return quote(s, safe="/" if keep_slash else "")


def canonical_query(pairs: Sequence[tuple[str, str]]) -> str:
    encoded = sorted((uri_encode(k), uri_encode(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_headers(headers: Headers, signed: Sequence[str]) -> str:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(_SPACES_RE.sub(" ", value.strip(" \t")))
    return "".join(f"{name}:{','.join(values.get(name, []))}\n" for name in signed)


def canonical_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Headers,
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    return "\n".join((
        method,
        uri_encode(path, keep_slash=True) or "/",
        canonical_query(query),
        canonical_headers(headers, signed_headers),
        ";".join(signed_headers),
        payload_hash,
    ))


def credential_scope(date: str, region: str, service: str = "s3") -> str:
    return f"{date}/{region}/{service}/aws4_request"


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def string_to_sign(amz_date: str, scope: str, creq: str) -> str:
    # header values are latin-1 decoded (http.py), so latin-1 gives back the bytes the
    # client signed (non-ASCII metadata is UTF-8 on the wire); path and query are
    # URI-encoded, ASCII
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{_sha256_hex(creq.encode('latin-1'))}"


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    k = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def sign(key: bytes, sts: str) -> str:
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


def same_signature(expected: str, provided: str) -> bool:
    """A constant-time comparison; compare_digest raises on a non-ASCII str, which a
    header or trailer decoded as latin-1 may be."""
    return provided.isascii() and hmac.compare_digest(expected, provided)


def chunk_string_to_sign(amz_date: str, scope: str, previous: str, data_sha256: str) -> str:
    return (f"{ALGORITHM}-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY_SHA256}\n"
            f"{data_sha256}")


def trailer_string_to_sign(amz_date: str, scope: str, previous: str, trailers: bytes) -> str:
    return f"{ALGORITHM}-TRAILER\n{amz_date}\n{scope}\n{previous}\n{_sha256_hex(trailers)}"


@dataclass(frozen=True, slots=True)
class SigningContext:
    """What the chunk signatures of a signed streaming body are chained from."""

    key: bytes
    amz_date: str
    scope: str
    seed_signature: str


class ChunkChain:
    """Verifies aws-chunked chunk signatures, each chained from the one before."""

    def __init__(self, ctx: SigningContext) -> None:
        self._ctx = ctx
        self._previous = ctx.seed_signature

    def _check(self, sts: str, provided: str) -> None:
        expected = sign(self._ctx.key, sts)
        if not same_signature(expected, provided):
            raise S3Error("SignatureDoesNotMatch", "A chunk signature does not match.")
        self._previous = expected

    def verify_chunk(self, provided: str, data_sha256: str) -> None:
        ctx = self._ctx
        self._check(chunk_string_to_sign(ctx.amz_date, ctx.scope, self._previous,
                                         data_sha256), provided)

    def verify_trailer(self, provided: str, canonical_trailers: bytes) -> None:
        ctx = self._ctx
        self._check(trailer_string_to_sign(ctx.amz_date, ctx.scope, self._previous,
                                           canonical_trailers), provided)


def not_signed(*names: str) -> S3Error:
    return S3Error("AccessDenied", "There were headers present in the request which were "
                   "not signed", HeadersNotSigned=", ".join(names))


@dataclass(frozen=True, slots=True)
class Authorized:
    """The outcome of authentication."""

    access_key: str | None  # None for an unsigned request (judged by acl.py)
    payload_hash: str  # hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-* mode
    signing: SigningContext | None = None  # for STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]
    # the names of the headers the signature covers, query_headers' included
    signed: frozenset[str] = frozenset()
    # x-amz-* values from a presigned URL's signed query, to be read as headers
    query_headers: tuple[tuple[str, str], ...] = ()

    def require_signed(self, headers: Headers, names: Iterable[str]) -> None:
        """AccessDenied unless each of ``names`` that ``headers`` holds is signed; an
        anonymous request signs nothing and is held to nothing."""
        if self.access_key is None:
            return
        present = {n for n, _ in headers}
        unsigned = sorted(n for n in set(names) & present if n not in self.signed)
        if unsigned:
            raise not_signed(*unsigned)


@dataclass(frozen=True, slots=True)
class _Claim:
    """What a request claims: from the Authorization header or the X-Amz-* query."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str
    amz_date: str
    payload_hash: str
    query: list[tuple[str, str]]  # the query pairs that are signed


def _parse_amz_date(value: str, code: str) -> datetime:
    try:
        return datetime.strptime(value, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise S3Error(code, f"Invalid date {value!r}; expected YYYYMMDD'T'HHMMSS'Z'.") from None


def _split_credential(cred: str, code: str) -> tuple[str, str, str, str]:
    parts = cred.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise S3Error(code, f"Malformed credential {cred!r}; expected "
                            "ACCESS_KEY/YYYYMMDD/REGION/s3/aws4_request.")
    if parts[3] != "s3":
        raise S3Error(code, f"The credential is for service {parts[3]!r}, expected 's3'.")
    return parts[0], parts[1], parts[2], parts[3]


def _check_payload(value: str, name: str) -> str:
    if value in (UNSIGNED_PAYLOAD, *STREAMING_MODES) or _SHA256_RE.fullmatch(value):
        return value
    raise S3Error("InvalidArgument", f"{name} must be UNSIGNED-PAYLOAD, STREAMING-* or a "
                  "SHA-256 in lower-case hex.", ArgumentName=name, ArgumentValue=value)


def _payload_claim(headers: Headers) -> str:
    value = _first(headers, "x-amz-content-sha256")
    if value is not None:
        return _check_payload(value, "x-amz-content-sha256")
    has_body = (_first(headers, "transfer-encoding") is not None
                or _first(headers, "content-length") not in (None, "0"))
    if has_body:
        raise S3Error("MissingSecurityHeader",
                      "Missing required header for this request: x-amz-content-sha256.")
    return EMPTY_SHA256


def _header_claim(auth: str, query: list[tuple[str, str]], headers: Headers) -> _Claim:
    code = "AuthorizationHeaderMalformed"
    if not auth.startswith(ALGORITHM + " "):
        raise S3Error("InvalidRequest", "The authorization mechanism you have provided is "
                      "not supported. Please use AWS4-HMAC-SHA256.")
    fields: dict[str, str] = {}
    for part in auth[len(ALGORITHM) + 1:].split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value
    try:
        cred, signed, signature = (fields["Credential"], fields["SignedHeaders"],
                                   fields["Signature"])
    except KeyError as e:
        raise S3Error(code, f"The authorization header lacks {e.args[0]}.") from None
    access_key, date, region, service = _split_credential(cred, code)
    signed_headers = _signed_list(signed, code)
    amz_date = _first(headers, "x-amz-date")
    # the date that is signed must be a signed header, whichever one it is
    _require_signed(headers, signed_headers, [] if amz_date is not None else ["date"])
    if amz_date is None:
        when = _http_date(_first(headers, "date"))
        if when is None:
            raise S3Error("AccessDenied", "AWS authentication requires a valid Date or "
                          "x-amz-date header.")
        amz_date = when.astimezone(UTC).strftime(AMZ_DATE_FORMAT)
    return _Claim(access_key, date, region, service, signed_headers, signature, amz_date,
                  _payload_claim(headers), query)


def _signed_list(value: str, code: str) -> list[str]:
    """SignedHeaders: lower-case names, sorted, each once (as every signer makes them).
    Duplicates would let a short header line make a huge canonical request."""
    names = value.split(";")
    if not all(_HEADER_NAME_RE.fullmatch(n) for n in names) or any(
            a >= b for a, b in itertools.pairwise(names)):
        raise S3Error(code, "SignedHeaders must be distinct lower-case header names in "
                      "sorted order.")
    return names


def _require_signed(headers: Headers, signed: Sequence[str],
                    extra: Sequence[str] = ()) -> None:
    """AccessDenied unless host, every x-amz-* header, every SIGNED_IF_PRESENT header
    present and ``extra`` are signed."""
    need = {"host", *extra}
    need.update(n for n, _ in headers if n.startswith(AMZ_PREFIX) or n in SIGNED_IF_PRESENT)
    unsigned = sorted(need.difference(signed))
    if unsigned:
        raise not_signed(*unsigned)


def _query_headers(query: Sequence[tuple[str, str]],
                   headers: Headers) -> tuple[tuple[str, str], ...]:
    """The x-amz-* values of a presigned URL's query, named as headers."""
    out = [(k.lower(), sigv2.as_header_value(v)) for k, v in query
           if k.lower().startswith(AMZ_PREFIX) and k.lower() not in AUTH_PARAMS]
    counts = Counter(n for n, _ in out)
    counts.update({n for n, _ in headers} & counts.keys())
    twice = sorted(n for n, c in counts.items() if c > 1)
    if twice:
        raise S3Error("InvalidArgument", f"{twice[0]} is given more than once (in the query "
                      "and as a header, or twice in the query).", ArgumentName=twice[0])
    return tuple(out)


def _query_claim(query: list[tuple[str, str]], headers: Headers, now: datetime) -> _Claim:
    code = "AuthorizationQueryParametersError"
    q = dict(query)
    if q.get("X-Amz-Algorithm") != ALGORITHM:
        raise S3Error(code, "X-Amz-Algorithm only supports AWS4-HMAC-SHA256.")
    try:
        cred, amz_date, expires, signed, signature = (
            q["X-Amz-Credential"], q["X-Amz-Date"], q["X-Amz-Expires"],
            q["X-Amz-SignedHeaders"], q["X-Amz-Signature"])
    except KeyError as e:
        raise S3Error(code, f"Query-string authentication requires {e.args[0]}.") from None
    access_key, date, region, service = _split_credential(cred, code)
    if not _EXPIRES_RE.fullmatch(expires) or not 0 < int(expires) <= MAX_PRESIGN_SECONDS:
        raise S3Error(code, "X-Amz-Expires must be a number of seconds from 1 to 604800.")
    start = _parse_amz_date(amz_date, code)
    if (now - start).total_seconds() > int(expires):
        raise S3Error("AccessDenied", "Request has expired", XAmzExpires=expires,
                      Expires=start.strftime(AMZ_DATE_FORMAT),
                      ServerTime=now.strftime(AMZ_DATE_FORMAT))
    signed_headers = _signed_list(signed, code)
    _require_signed(headers, signed_headers)
    # the JavaScript SDK sends this parameter in lower case
    claimed = [v for k, v in query if k.lower() == "x-amz-content-sha256"]
    if len(claimed) > 1:
        raise S3Error(code, "X-Amz-Content-Sha256 is given more than once.")
    payload = _check_payload(claimed[0] if claimed else UNSIGNED_PAYLOAD,
                             "X-Amz-Content-Sha256")
    signed_query = [(k, v) for k, v in query if k != "X-Amz-Signature"]
    return _Claim(access_key, date, region, service, signed_headers, signature, amz_date,
                  payload, signed_query)


def _http_date(value: str | None) -> datetime | None:
    """An HTTP date (Date, or a V2 x-amz-date); None when absent or unparsable."""
    try:
        when = parsedate_to_datetime(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    # "-0000" (no zone given) parses as naive; HTTP dates are in GMT
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _check_skew(when: datetime, now: datetime, shown: str) -> None:
    """RequestTimeTooSkewed unless a signed request's date is near the gateway's clock."""
    if abs((now - when).total_seconds()) > MAX_SKEW_SECONDS:
        raise S3Error("RequestTimeTooSkewed", RequestTime=shown,
                      ServerTime=now.strftime(AMZ_DATE_FORMAT),
                      MaxAllowedSkewMilliseconds=str(MAX_SKEW_SECONDS * 1000))


def _secret(secret_for: Callable[[str], str | None], access_key: str) -> str:
    secret = secret_for(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    return secret


def _shown(signed: bytes) -> str:
    """Signed bytes as the error body shows them (header bytes are mostly UTF-8)."""
    return signed.decode("utf-8", "replace")


def authenticate(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Headers,
    *,
    secret_for: Callable[[str], str | None],
    allow_anonymous: bool,
    now: datetime,
    raw_path: str | None = None,
) -> Authorized:
    """Check a request's signature (V4, or V2 as sigv2.py reads it); raises S3Error
    when it is refused. ``raw_path`` is the path as sent, which V2 signs; by default
    ``path`` encoded as the AWS SDKs encode it."""
    auth = _first(headers, "authorization")
    presigned = any(k == "X-Amz-Signature" for k, _ in query)
    presigned_v2 = sigv2.is_presigned(query)
    mechanisms = (auth is not None) + presigned + presigned_v2
    if mechanisms > 1:
        raise S3Error("InvalidArgument", "Only one auth mechanism allowed; only the "
                      "X-Amz-Algorithm query parameter, Signature query string parameter or "
                      "the Authorization header should be specified.")
    if not mechanisms:
        if not allow_anonymous:
            raise S3Error("AccessDenied", "Anonymous access is not allowed.")
        # nothing is signed: a body is only checked against a hash the client sent
        unsigned = _first(headers, "x-amz-content-sha256") is None
        return Authorized(None, UNSIGNED_PAYLOAD if unsigned else _payload_claim(headers))
    if presigned_v2 or (auth is not None and auth.startswith(sigv2.ALGORITHM + " ")):
        return _authenticate_v2(method, raw_path or uri_encode(path, keep_slash=True) or "/",
                                query, headers, auth, secret_for=secret_for, now=now)
    claim = (_header_claim(auth, query, headers) if auth is not None
             else _query_claim(query, headers, now))
    if claim.amz_date[:8] != claim.date:
        raise S3Error("AuthorizationHeaderMalformed" if auth else
                      "AuthorizationQueryParametersError",
                      "Invalid credential date. Date is not the same as X-Amz-Date.")
    when = _parse_amz_date(claim.amz_date, "AccessDenied")
    # a presigned URL may be used until it expires (checked above), so only a signed
    # header's date must be recent
    if not presigned:
        _check_skew(when, now, claim.amz_date)
    elif (now - when).total_seconds() < -MAX_SKEW_SECONDS:
        raise S3Error("AccessDenied", "Request is not valid yet")
    secret = _secret(secret_for, claim.access_key)
    creq = canonical_request(method, path, claim.query, headers, claim.signed_headers,
                             claim.payload_hash)
    scope = credential_scope(claim.date, claim.region, claim.service)
    sts = string_to_sign(claim.amz_date, scope, creq)
    key = signing_key(secret, claim.date, claim.region, claim.service)
    expected = sign(key, sts)
    if not same_signature(expected, claim.signature):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=claim.access_key,
                      StringToSign=sts, SignatureProvided=claim.signature,
                      CanonicalRequest=_shown(creq.encode("latin-1")))
    signing = None
    if claim.payload_hash in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER):
        signing = SigningContext(key, claim.amz_date, scope, expected)
    hoisted = _query_headers(query, headers) if presigned else ()
    return Authorized(claim.access_key, claim.payload_hash, signing,
                      frozenset(claim.signed_headers).union(n for n, _ in hoisted), hoisted)


def _authenticate_v2(method: str, raw_path: str, query: list[tuple[str, str]],
                     headers: Headers, auth: str | None, *,
                     secret_for: Callable[[str], str | None], now: datetime) -> Authorized:
    if auth is not None:
        claim = sigv2.header_claim(auth, headers)
        when = _http_date(claim.date)
        if when is None:
            raise S3Error("AccessDenied", "AWS authentication requires a valid Date or "
                          "x-amz-date header")
        _check_skew(when, now, claim.date)
    else:
        claim = sigv2.query_claim(query, headers, _query_headers(query, headers))
        if now.timestamp() > claim.expires:
            raise S3Error("AccessDenied", "Request has expired",
                          Expires=datetime.fromtimestamp(claim.expires, UTC).strftime(
                              ISO_SECONDS), ServerTime=now.strftime(ISO_SECONDS))
    secret = _secret(secret_for, claim.access_key)
    candidates = claim.strings_to_sign(method, raw_path, query, headers)
    if not any(same_signature(sigv2.sign(secret, sts), claim.signature)
               for sts in candidates):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=claim.access_key,
                      StringToSign=_shown(candidates[0]), SignatureProvided=claim.signature)
    # V2 signs no body; a hash the client sent is still checked, but a signed chunk
    # chain needs the V4 key to be verified
    payload = _first(headers, "x-amz-content-sha256")
    if payload in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER):
        raise S3Error("InvalidRequest", f"{payload} bodies need Signature Version 4.")
    # what V2 covers: every x-amz-* header, Content-MD5, Content-Type, and the Date
    # of a request that has no x-amz-date
    present = [*headers, *claim.query_headers]
    signed = {n for n, _ in present if n.startswith(AMZ_PREFIX)
              or n in sigv2.STANDARD_HEADERS}
    if auth is not None and "x-amz-date" not in signed:
        signed.add("date")
    return Authorized(claim.access_key,
                      UNSIGNED_PAYLOAD if payload is None else _check_payload(
                          payload, "x-amz-content-sha256"),
                      signed=frozenset(signed), query_headers=claim.query_headers)

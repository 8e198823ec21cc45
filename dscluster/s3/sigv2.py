"""AWS Signature Version 2, sans-IO: what a V2 request claims and the string it signed.

V2 is what aws cli v1 and boto3 (``signature_version='s3'``) presign with by default,
and what s3cmd signs with: the ``Authorization: AWS <access key>:<signature>`` header,
or the ``AWSAccessKeyId``, ``Expires`` and ``Signature`` query parameters. The signature
is base64 of HMAC-SHA1 over AWS's string to sign::

    VERB \\n Content-MD5 \\n Content-Type \\n Date-or-Expires \\n
    CanonicalizedAmzHeaders CanonicalizedResource

It is built here by hand because no maintained library verifies V2 on the server side
(botocore only signs, and its signer sets the Date it signs). This module parses and
canonicalises; ``sigv4.authenticate`` does what V2 shares with V4 (key lookup, clock
skew and expiry, the constant-time comparison).

Bytes, not text, are signed: header values arrive decoded as latin-1 (http.py), so
``.encode("latin-1")`` gives back exactly the bytes the client signed (UTF-8 metadata
included), while the sub-resource values of the query are decoded UTF-8 text, which
signers encode as UTF-8.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import S3Error

Headers = Sequence[tuple[str, str]]  # lower-case names, in arrival order

ALGORITHM = "AWS"  # the Authorization header's scheme
AMZ_PREFIX = "x-amz-"
# the headers the string to sign holds by value, besides x-amz-*
STANDARD_HEADERS = ("content-md5", "content-type")
# the query parameters that are part of the canonicalized resource: AWS's list
# (RESTAuthentication) with what botocore's HmacV1Auth adds to it
SUBRESOURCES = frozenset({
    "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "encryption",
    "inventory", "legal-hold", "lifecycle", "location", "logging", "metrics",
    "notification", "object-lock", "partNumber", "policy", "replication",
    "requestPayment", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "response-content-language", "response-content-type",
    "response-expires", "restore", "retention", "select", "select-type", "storageClass",
    "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions",
    "website",
})
QUERY_PARAMS = ("AWSAccessKeyId", "Expires", "Signature")
# folded header lines (obs-fold) are unfolded to one space, as AWS does
_FOLD_RE = re.compile(r"\r?\n[ \t]+")
# seconds since the epoch; 12 digits reach past the year 30000
_EXPIRES_RE = re.compile(r"[0-9]{1,12}")


def first_header(headers: Headers, name: str) -> str | None:
    return next((v for n, v in headers if n == name), None)


def as_header_value(text: str) -> str:
    """A query value held as a header value is: each byte of its UTF-8 one latin-1
    character (http.py), so it is signed, stored and returned as those bytes."""
    return text.encode().decode("latin-1")


def _trim(value: str) -> str:
    return _FOLD_RE.sub(" ", value).strip(" \t")


def canonical_amz_headers(headers: Headers) -> str:
    """Every x-amz-* header as ``name:value\\n``, sorted by name; the values of a name
    given more than once joined by ",", in arrival order."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        if name.startswith(AMZ_PREFIX):
            values.setdefault(name, []).append(_trim(value))
    return "".join(f"{name}:{','.join(values[name])}\n" for name in sorted(values))


def canonical_resources(raw_path: str, query: Sequence[tuple[str, str]]) -> list[str]:
    """The path as the client sent it, then the sub-resources sorted by name (a stable
    sort: repeated names keep their order), values decoded, an empty one bare.

    A bucket sent as ``/bucket`` is signed so by AWS's rule (and botocore's bare
    HmacV1Auth), but as ``/bucket/`` by boto3's clients and s3cmd (S3 builds the
    resource from bucket and key): both are accepted, the path as sent first."""
    subs = sorted(((k, v) for k, v in query if k in SUBRESOURCES), key=lambda kv: kv[0])
    tail = "?" + "&".join(f"{k}={v}" if v else k for k, v in subs) if subs else ""
    paths = [raw_path]
    if raw_path.count("/") == 1 and raw_path != "/":
        paths.append(raw_path + "/")
    return [p + tail for p in paths]


def strings_to_sign(method: str, raw_path: str, query: Sequence[tuple[str, str]],
                    headers: Headers, date: str) -> list[bytes]:
    """AWS's StringToSign for each canonical resource, ``date`` being the Date header
    (empty when x-amz-date is given: that one is among the x-amz-* headers) or a
    presigned URL's Expires."""
    head = "\n".join((method, _trim(first_header(headers, "content-md5") or ""),
                      _trim(first_header(headers, "content-type") or ""), date, ""))
    head += canonical_amz_headers(headers)
    return [head.encode("latin-1") + r.encode() for r in canonical_resources(raw_path, query)]


def sign(secret: str, sts: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), sts, hashlib.sha1).digest()).decode()


@dataclass(frozen=True, slots=True)
class Claim:
    """What a V2 request claims: its key and signature, and the date or expiry it
    signed, still to be checked against the clock (sigv4.authenticate)."""

    access_key: str
    signature: str
    presigned: bool
    date: str  # the HTTP date of a signed request (x-amz-date or Date), else ""
    expires: int  # a presigned URL's Expires (seconds since the epoch), else 0
    # values of a presigned URL's query that are signed as the headers they name
    query_headers: tuple[tuple[str, str], ...] = ()

    def strings_to_sign(self, method: str, raw_path: str, query: Sequence[tuple[str, str]],
                        headers: Headers) -> list[bytes]:
        signed = [*headers, *self.query_headers]
        if self.presigned:
            date = str(self.expires)
        else:
            date = "" if first_header(signed, "x-amz-date") is not None else self.date
        return strings_to_sign(method, raw_path, query, signed, date)


def is_presigned(query: Sequence[tuple[str, str]]) -> bool:
    return any(k == "AWSAccessKeyId" for k, _ in query)


def header_claim(auth: str, headers: Headers) -> Claim:
    """The claim of an ``Authorization: AWS <access key>:<signature>`` header."""
    access_key, _, signature = auth[len(ALGORITHM) + 1:].strip().partition(":")
    if not access_key or not signature:
        raise S3Error("InvalidArgument", "AWS authorization header is invalid.  Expected "
                      "AwsAccessKeyId:signature", ArgumentName="Authorization")
    date = first_header(headers, "x-amz-date") or first_header(headers, "date")
    if date is None:
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or "
                      "x-amz-date header")
    return Claim(access_key, signature, False, date, 0)


def query_claim(query: Sequence[tuple[str, str]], headers: Headers,
                hoisted: Sequence[tuple[str, str]]) -> Claim:
    """A presigned URL's claim; ``hoisted`` are the x-amz-* values of its query, which
    signers (botocore's HmacV1QueryAuth) sign as the headers they name."""
    q = dict(query)
    if any(name not in q for name in QUERY_PARAMS):
        raise S3Error("AccessDenied", "Query-string authentication requires the Signature, "
                      "Expires and AWSAccessKeyId parameters")
    expires = q["Expires"]
    if not _EXPIRES_RE.fullmatch(expires):
        raise S3Error("AccessDenied", f"Invalid date (should be seconds since epoch): "
                      f"{expires[:64]}")
    extra = list(hoisted)
    # botocore moves Content-Type and Content-MD5 into the query too; a header sent
    # along takes precedence (it is what the request carries and the handlers read)
    for name in STANDARD_HEADERS:
        if first_header(headers, name) is None and name in q:
            extra.append((name, as_header_value(q[name])))
    return Claim(q["AWSAccessKeyId"], q["Signature"], True, "", int(expires), tuple(extra))

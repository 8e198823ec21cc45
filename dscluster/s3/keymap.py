"""Where S3 names live in the datastore.

Theory of operation. Object ``K`` of bucket ``B`` is the datastore key ``/B/K`` whenever
``K`` is *natural*: already a clean path (no empty, "." or ".." segment, so no leading,
trailing or doubled "/") whose first segment is not the escape mark "%". That covers
``CIQ…`` block keys and ``photos/2024/a.jpg`` alike, so the datastore and S3 views of
them agree. Every other key (``/x``, ``a//b``, ``dir/``, ``../etc``, ``%/y``) would be
changed by key cleaning, so it is stored at ``/B/%/<b32hex(K)>`` instead: lower-case,
unpadded base32hex of the key's UTF-8 bytes. That encoding is injective and reversible,
has no "/" in it, and preserves byte order, so the escaped keys form a second sorted
stream that listings merge with the natural one to return S3's exact order. A natural
key never starts with the "%" segment, so the two spaces never meet.

Everything the gateway keeps besides object bytes lives under ``/.s3`` (a bucket can't
be named ".s3", bucket names start with a letter or digit):

    /.s3/buckets/<B>                      bucket record
    /.s3/objects/<B>/<suffix>             object metadata; <suffix> is what follows
                                          "/<B>/" in the object's data key
    /.s3/uploads/<B>/<b32hex(K)>.<id>     multipart upload record ("." sorts below every
                                          base32hex digit: ordered by key, then id)
    /.s3/parts/<B>/<id>/<nnnnn>           one uploaded part
"""

from __future__ import annotations

import base64
import binascii
import re

from .errors import S3Error

MAX_KEY_BYTES = 1024
ESCAPE = "%"
META_ROOT = "/.s3"
BUCKETS_PREFIX = f"{META_ROOT}/buckets"

_B32_DIGITS = frozenset("0123456789abcdefghijklmnopqrstuv")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")
UPLOAD_ID_RE = re.compile(r"[0-9a-f]{32}")
# buckets are never versioned: every object's one version is S3's "null" version
NULL_VERSION = "null"


def valid_bucket_name(name: str) -> bool:
    """S3's bucket naming rules; they also keep a bucket a single clean key segment."""
    return bool(_BUCKET_RE.fullmatch(name)) and ".." not in name and not _IPV4_RE.fullmatch(name)


def check_bucket_name(name: str) -> None:
    if not valid_bucket_name(name):
        raise S3Error("InvalidBucketName", BucketName=name)


def check_object_key(key: str) -> None:
    if not key:
        raise S3Error("InvalidArgument", "An object key must not be empty.")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", Key=key[:64] + "...")
    if "\0" in key:
        # NUL can't be written in XML 1.0 at all, and C-string paths stop at it
        raise S3Error("InvalidArgument", "An object key must not contain NUL.")


def check_version_id(version_id: str, name: str = "versionId") -> None:
    """InvalidArgument for any version id but "null", as S3 answers one that names no
    version of an unversioned bucket."""
    if version_id != NULL_VERSION:
        raise S3Error("InvalidArgument", "Invalid version id specified", ArgumentName=name,
                      ArgumentValue=version_id[:64])


def is_natural(key: str) -> bool:
    segments = key.split("/")
    return segments[0] != ESCAPE and not any(s in ("", ".", "..") for s in segments)


def order_code(key: str) -> str:
    """Base32hex of the key's UTF-8 bytes: injective, "/"-free and order-preserving."""
    return base64.b32hexencode(key.encode()).decode().rstrip("=").lower()


def from_order_code(code: str) -> str | None:
    if not code or not set(code) <= _B32_DIGITS:
        return None
    try:
        raw = base64.b32hexdecode(code.upper() + "=" * (-len(code) % 8))
        key = raw.decode()
    except (binascii.Error, ValueError):
        return None
    # only the canonical code of a key counts, so the mapping stays one-to-one
    return key if order_code(key) == code else None


def key_suffix(key: str) -> str:
    """What follows "/<bucket>/" in the object's data key."""
    return key if is_natural(key) else f"{ESCAPE}/{order_code(key)}"


def key_from_suffix(suffix: str) -> str | None:
    """The S3 key of a datastore suffix, or None for a key no S3 key maps to."""
    head, sep, code = suffix.partition("/")
    if head != ESCAPE:
        return suffix if is_natural(suffix) else None
    key = from_order_code(code) if sep else None
    return None if key is None or is_natural(key) else key


def data_prefix(bucket: str) -> str:
    return f"/{bucket}"


def escaped_prefix(bucket: str) -> str:
    return f"/{bucket}/{ESCAPE}"


def meta_prefix(bucket: str) -> str:
    return f"{META_ROOT}/objects/{bucket}"


def data_key(bucket: str, key: str) -> str:
    return f"/{bucket}/{key_suffix(key)}"


def meta_key(bucket: str, key: str) -> str:
    return f"{meta_prefix(bucket)}/{key_suffix(key)}"


def bucket_key(bucket: str) -> str:
    return f"{BUCKETS_PREFIX}/{bucket}"


def uploads_prefix(bucket: str) -> str:
    return f"{META_ROOT}/uploads/{bucket}"


def upload_key(bucket: str, key: str, upload_id: str) -> str:
    return f"{uploads_prefix(bucket)}/{order_code(key)}.{upload_id}"


def upload_from_suffix(suffix: str) -> tuple[str, str] | None:
    """(key, upload id) of an upload record's suffix, or None if malformed."""
    code, _, upload_id = suffix.rpartition(".")
    key = from_order_code(code)
    if key is None or not UPLOAD_ID_RE.fullmatch(upload_id):
        return None
    return key, upload_id


def parts_prefix(bucket: str, upload_id: str) -> str:
    return f"{META_ROOT}/parts/{bucket}/{upload_id}"


def part_key(bucket: str, upload_id: str, part_number: int) -> str:
    return f"{parts_prefix(bucket, upload_id)}/{part_number:05d}"

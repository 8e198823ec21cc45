"""The records the gateway keeps next to object bytes (see keymap.py for their keys).

Records are small JSON objects carrying a version marker ``"v": 1`` so that later
shapes can migrate forward; a record that does not decode is treated as absent (an
object without a metadata record is still served, see ``ObjectMeta.foreign``).

An object's bytes are written together with its metadata (storage.commit), which is not
atomic across cluster nodes, so a reader trusts a metadata record only when it
*describes* the data it sits next to: same size for an inline object, the same
``/ipfs/<cid>`` pointer for a chunked one. A record that does not is ignored, exactly
like a missing one.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

RECORD_VERSION = 1
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
# the representation headers S3 stores with an object and returns on GET/HEAD
STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)


# a chunked object's CID is returned in a header of its own; one stored by a single PUT
# (whose CID is `ipfs add`'s) also as the user metadata "ipfs-cid", which every S3 tool
# shows (x-amz-meta-ipfs-cid); clients can't set that name themselves
CID_HEADER = "x-ipfs-cid"
CID_META = "ipfs-cid"
# the canned ACLs a bucket or an object may have (grants.py says what they allow)
PRIVATE = "private"
PUBLIC_READ = "public-read"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def pointer(cid: str) -> bytes:
    """What the data key of a chunked object holds: a path any IPFS tool understands."""
    return f"/ipfs/{cid}".encode()


@dataclass(frozen=True, slots=True)
class Checksum:
    algorithm: str  # crc32 | crc32c | sha1 | sha256
    value: str  # base64 of the digest, as in the x-amz-checksum-* headers
    type: str = "FULL_OBJECT"  # or COMPOSITE: a checksum of the parts' checksums

    def __post_init__(self) -> None:
        if not (isinstance(self.algorithm, str) and isinstance(self.value, str)):
            raise ValueError("bad checksum")


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    size: int
    etag: str  # without quotes; "" when unknown (an object written around the gateway)
    mtime_ms: int
    cid: str | None = None  # set for an object stored as a UnixFS DAG
    content_type: str = DEFAULT_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    user: dict[str, str] = field(default_factory=dict)
    checksum: Checksum | None = None
    parts: int = 0
    # a multipart object's part sizes, for GET by partNumber (empty in records written
    # before they were kept)
    part_sizes: list[int] = field(default_factory=list)
    # the upload a multipart object was completed from, so that a retried
    # CompleteMultipartUpload gets the same answer
    upload_id: str | None = None
    acl: str = PRIVATE

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 0 or not isinstance(self.mtime_ms, int):
            raise ValueError("bad object record")
        if not isinstance(self.part_sizes, list) or not all(
                isinstance(n, int) for n in self.part_sizes):
            raise ValueError("bad part sizes")
        if isinstance(self.checksum, dict):
            object.__setattr__(self, "checksum", Checksum(**self.checksum))

    @classmethod
    def foreign(cls, size: int, content: bytes | None = None) -> ObjectMeta:
        """An object found at its data key without a (trustworthy) record: its ETag is
        the MD5 of its bytes when they are at hand, its time unknown (the epoch)."""
        if content is None:
            return cls(size=size, etag="", mtime_ms=0)
        return cls(size=size, etag=hashlib.md5(content, usedforsecurity=False).hexdigest(),
                   mtime_ms=0)

    def describes(self, data_size: int, data: bytes | None = None) -> bool:
        """Whether this record belongs to the value found at the data key."""
        if self.cid is None:
            return data_size == self.size
        expected = pointer(self.cid)
        return data == expected if data is not None else data_size == len(expected)


@dataclass(frozen=True, slots=True)
class BucketRecord:
    created_ms: int
    # the access key id of the credential that created the bucket; None in records
    # written before buckets had owners (every credential may use those)
    owner: str | None = None
    acl: str = PRIVATE


@dataclass(frozen=True, slots=True)
class UploadRecord:
    key: str
    initiated_ms: int
    content_type: str = DEFAULT_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    user: dict[str, str] = field(default_factory=dict)
    checksum_algorithm: str | None = None
    acl: str = PRIVATE


@dataclass(frozen=True, slots=True)
class PartRecord:
    cid: str
    size: int
    etag: str
    mtime_ms: int
    checksum: Checksum | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 0 or not isinstance(self.cid, str):
            raise ValueError("bad part record")
        if isinstance(self.checksum, dict):
            object.__setattr__(self, "checksum", Checksum(**self.checksum))


Record = ObjectMeta | BucketRecord | UploadRecord | PartRecord
R = TypeVar("R", ObjectMeta, BucketRecord, UploadRecord, PartRecord)


def encode(record: Record) -> bytes:
    d: dict[str, Any] = {"v": RECORD_VERSION, **asdict(record)}
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()


def decode(cls: type[R], raw: bytes | None) -> R | None:
    """The record in ``raw``, or None when it is missing, corrupt or of another kind."""
    if raw is None:
        return None
    try:
        d = json.loads(raw)
        if not isinstance(d, dict) or d.pop("v", None) != RECORD_VERSION:
            return None
        return cls(**d)
    except (ValueError, TypeError):
        return None

"""The router: a pure function from method, path and query to an endpoint.

Only path-style addressing (``/bucket/key``) is served: every IPFS client set-up uses
it (go-ds-s3 forces it whenever ``regionEndpoint`` is set, Helia's S3Client is built
with ``forcePathStyle``) and so do boto3 and the aws cli for an endpoint given by IP.

A request is located by its path (service, bucket or object level; ``/bucket/`` with an
empty key is the bucket) and then by a *selector*: the first routing subresource found
in the query (``uploadId`` before ``uploads`` and so on), with ``+copy`` appended when
the request carries ``x-amz-copy-source`` (the app routes only authenticated requests, in
which that header is signed). ``ROUTES`` maps (method, level, selector) to
the endpoint; everything else is NotImplemented (a subresource we know but don't serve)
or MethodNotAllowed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import S3Error


class Endpoint(enum.Enum):
    LIST_BUCKETS = "ListBuckets"
    CREATE_BUCKET = "CreateBucket"
    HEAD_BUCKET = "HeadBucket"
    DELETE_BUCKET = "DeleteBucket"
    GET_BUCKET_LOCATION = "GetBucketLocation"
    GET_BUCKET_VERSIONING = "GetBucketVersioning"
    LIST_OBJECTS = "ListObjects"
    LIST_OBJECTS_V2 = "ListObjectsV2"
    LIST_OBJECT_VERSIONS = "ListObjectVersions"
    LIST_MULTIPART_UPLOADS = "ListMultipartUploads"
    DELETE_OBJECTS = "DeleteObjects"
    PUT_OBJECT = "PutObject"
    COPY_OBJECT = "CopyObject"
    GET_OBJECT = "GetObject"
    HEAD_OBJECT = "HeadObject"
    DELETE_OBJECT = "DeleteObject"
    CREATE_MULTIPART_UPLOAD = "CreateMultipartUpload"
    UPLOAD_PART = "UploadPart"
    UPLOAD_PART_COPY = "UploadPartCopy"
    COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"
    ABORT_MULTIPART_UPLOAD = "AbortMultipartUpload"
    LIST_PARTS = "ListParts"
    GET_BUCKET_ACL = "GetBucketAcl"
    PUT_BUCKET_ACL = "PutBucketAcl"
    GET_OBJECT_ACL = "GetObjectAcl"
    PUT_OBJECT_ACL = "PutObjectAcl"


class Level(enum.Enum):
    SERVICE = "service"
    BUCKET = "bucket"
    OBJECT = "object"


# query keys that choose the endpoint, in precedence order
ROUTING_KEYS = ("acl", "uploadId", "uploads", "delete", "location", "versioning",
                "versions", "list-type")
# subresources S3 has and this gateway does not serve
UNSUPPORTED_KEYS = frozenset({
    "accelerate", "analytics", "attributes", "cors", "encryption",
    "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "logging", "metrics",
    "notification", "object-lock", "ownershipControls", "policy", "policyStatus",
    "publicAccessBlock", "replication", "requestPayment", "restore", "retention", "select",
    "tagging", "torrent", "website",
})

ROUTES: dict[tuple[str, Level, str | None], Endpoint] = {
    ("GET", Level.SERVICE, None): Endpoint.LIST_BUCKETS,
    ("PUT", Level.BUCKET, None): Endpoint.CREATE_BUCKET,
    ("HEAD", Level.BUCKET, None): Endpoint.HEAD_BUCKET,
    ("DELETE", Level.BUCKET, None): Endpoint.DELETE_BUCKET,
    ("GET", Level.BUCKET, None): Endpoint.LIST_OBJECTS,
    ("GET", Level.BUCKET, "list-type"): Endpoint.LIST_OBJECTS_V2,
    ("GET", Level.BUCKET, "location"): Endpoint.GET_BUCKET_LOCATION,
    ("GET", Level.BUCKET, "versioning"): Endpoint.GET_BUCKET_VERSIONING,
    ("GET", Level.BUCKET, "versions"): Endpoint.LIST_OBJECT_VERSIONS,
    ("GET", Level.BUCKET, "uploads"): Endpoint.LIST_MULTIPART_UPLOADS,
    ("POST", Level.BUCKET, "delete"): Endpoint.DELETE_OBJECTS,
    ("PUT", Level.OBJECT, None): Endpoint.PUT_OBJECT,
    ("PUT", Level.OBJECT, "+copy"): Endpoint.COPY_OBJECT,
    ("GET", Level.OBJECT, None): Endpoint.GET_OBJECT,
    ("HEAD", Level.OBJECT, None): Endpoint.HEAD_OBJECT,
    ("DELETE", Level.OBJECT, None): Endpoint.DELETE_OBJECT,
    ("POST", Level.OBJECT, "uploads"): Endpoint.CREATE_MULTIPART_UPLOAD,
    ("PUT", Level.OBJECT, "uploadId"): Endpoint.UPLOAD_PART,
    ("PUT", Level.OBJECT, "uploadId+copy"): Endpoint.UPLOAD_PART_COPY,
    ("POST", Level.OBJECT, "uploadId"): Endpoint.COMPLETE_MULTIPART_UPLOAD,
    ("DELETE", Level.OBJECT, "uploadId"): Endpoint.ABORT_MULTIPART_UPLOAD,
    ("GET", Level.OBJECT, "uploadId"): Endpoint.LIST_PARTS,
    ("GET", Level.BUCKET, "acl"): Endpoint.GET_BUCKET_ACL,
    ("PUT", Level.BUCKET, "acl"): Endpoint.PUT_BUCKET_ACL,
    ("GET", Level.OBJECT, "acl"): Endpoint.GET_OBJECT_ACL,
    ("PUT", Level.OBJECT, "acl"): Endpoint.PUT_OBJECT_ACL,
}


@dataclass(frozen=True, slots=True)
class Route:
    endpoint: Endpoint
    bucket: str | None = None
    key: str | None = None


def locate(path: str) -> tuple[Level, str | None, str | None]:
    """(level, bucket, key) of a decoded request path."""
    if not path.startswith("/"):
        raise S3Error("InvalidArgument", "The request path must start with '/'.")
    bucket, sep, key = path[1:].partition("/")
    if not bucket:
        return Level.SERVICE, None, None
    if not sep or not key:
        return Level.BUCKET, bucket, None
    return Level.OBJECT, bucket, key


def route(
    method: str,
    path: str,
    query: Mapping[str, Sequence[str]],
    *,
    copy_source: bool = False,
) -> Route:
    level, bucket, key = locate(path)
    unsupported = sorted(UNSUPPORTED_KEYS.intersection(query))
    if unsupported:
        raise S3Error("NotImplemented", f"The {unsupported[0]} subresource is not supported.")
    selector = next((k for k in ROUTING_KEYS if k in query), None)
    if selector == "list-type" and list(query["list-type"]) != ["2"]:
        raise S3Error("InvalidArgument", "list-type must be 2.", ArgumentName="list-type")
    if copy_source and method == "PUT" and level is Level.OBJECT:
        selector = (selector or "") + "+copy"
    endpoint = ROUTES.get((method, level, selector))
    if endpoint is None:
        raise S3Error(
            "MethodNotAllowed",
            Method=method,
            ResourceType={Level.SERVICE: "SERVICE", Level.BUCKET: "BUCKET",
                          Level.OBJECT: "OBJECT"}[level],
        )
    return Route(endpoint, bucket, key)

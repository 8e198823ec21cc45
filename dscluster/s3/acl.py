"""Authorizing a request before its handler runs, and the ``?acl`` endpoints:
GetBucketAcl, PutBucketAcl, GetObjectAcl, PutObjectAcl (the rules are in grants.py).

``authorize`` finds the record of the bucket a request names (bucketcache.py keeps it
for a moment), refuses the request unless the caller owns the bucket or its ACL allows
the operation, and leaves the record in ``req.bucket``; handlers rely on that instead of
reading it again. GET and HEAD of an object are the exception: their access depends on
the object's own ACL, so ``storage.find_object`` checks it with the object's records, in
the same round trip.
"""

from __future__ import annotations

from dataclasses import replace

from . import keymap
from .body import RequestBody
from .context import Gateway
from .errors import S3Error
from .grants import Caller, acl_of_policy, owner_nodes, policy, requested_acl
from .http import Request, Response, xml_response
from .meta import BucketRecord, encode
from .router import Endpoint, Route
from .storage import find_object
from .xml import Node

# a canned policy is well under a kilobyte
MAX_ACL_BODY = 64 << 10
# what a public-read bucket lets anyone do: list it (S3's READ on a bucket)
BUCKET_READS = frozenset({Endpoint.HEAD_BUCKET, Endpoint.LIST_OBJECTS,
                          Endpoint.LIST_OBJECTS_V2, Endpoint.LIST_OBJECT_VERSIONS,
                          Endpoint.LIST_MULTIPART_UPLOADS})
# checked against the object's ACL where the object is read
OBJECT_READS = frozenset({Endpoint.GET_OBJECT, Endpoint.HEAD_OBJECT})


async def authorize(gw: Gateway, req: Request, route: Route) -> None:
    """AccessDenied (or NoSuchBucket) unless the caller may do what ``route`` names."""
    caller = Caller.of(req.auth, gw.settings)
    if route.bucket is None or route.endpoint is Endpoint.CREATE_BUCKET:
        # ListBuckets shows the caller's buckets, CreateBucket refuses another's name
        if not caller.may_own():
            raise S3Error("AccessDenied")
        return
    if route.endpoint in OBJECT_READS:
        return
    keymap.check_bucket_name(route.bucket)
    record = await gw.buckets.get(route.bucket)
    if record is None:
        raise S3Error("NoSuchBucket", BucketName=route.bucket)
    if not caller.owns(record) and not (route.endpoint in BUCKET_READS
                                         and caller.may_list(record)):
        raise S3Error("AccessDenied")
    req.bucket = record


def authorized_bucket(req: Request) -> BucketRecord:
    """The record ``authorize`` left for a bucket or object endpoint."""
    assert req.bucket is not None, "the request was authorized"
    return req.bucket


def shown_owner(gw: Gateway, req: Request) -> list[Node]:
    """The Owner of the authorized bucket (and of its objects and uploads), as the caller
    may see it."""
    return owner_nodes(authorized_bucket(req).owner, Caller.of(req.auth, gw.settings))


async def _acl_to_put(req: Request, owner: str | None) -> str:
    """The canned ACL a Put*Acl asks for: by x-amz-acl, or an AccessControlPolicy body."""
    body = RequestBody(req, max_size=MAX_ACL_BODY)
    raw = await body.read_all()
    body.verify()
    canned = requested_acl(req)
    if canned is not None and raw.strip():
        raise S3Error("UnexpectedContent", "Give either the x-amz-acl header or an "
                      "AccessControlPolicy body, not both.")
    if canned is not None:
        return canned
    if not raw.strip():
        raise S3Error("MalformedACLError", "Give the x-amz-acl header (private or "
                      "public-read) or an AccessControlPolicy body.")
    return acl_of_policy(raw, owner)


def _version(req: Request) -> None:
    version_id = req.param("versionId")
    if version_id is not None:
        keymap.check_version_id(version_id)


async def get_bucket_acl(gw: Gateway, req: Request, route: Route) -> Response:
    record = authorized_bucket(req)
    return xml_response("AccessControlPolicy", policy(record.owner, record.acl,
                                                      Caller.of(req.auth, gw.settings)))


async def put_bucket_acl(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None
    record = authorized_bucket(req)
    acl = await _acl_to_put(req, record.owner)
    updated = replace(record, acl=acl)
    await gw.ds.put(keymap.bucket_key(route.bucket), encode(updated))
    gw.buckets.keep(route.bucket, updated)
    return Response(200)


async def get_object_acl(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None and route.key is not None
    _version(req)
    found = await find_object(gw.ds, gw.buckets, route.bucket, route.key, with_data=False)
    return xml_response("AccessControlPolicy", policy(
        authorized_bucket(req).owner, found.meta.acl, Caller.of(req.auth, gw.settings)))


async def put_object_acl(gw: Gateway, req: Request, route: Route) -> Response:
    """PutObjectAcl rewrites the object's record alone: its bytes stay. An object
    written around the gateway gets a record (the one a GET would make up for it)."""
    assert route.bucket is not None and route.key is not None
    _version(req)
    found = await find_object(gw.ds, gw.buckets, route.bucket, route.key, with_data=False)
    acl = await _acl_to_put(req, authorized_bucket(req).owner)
    await gw.ds.put(keymap.meta_key(route.bucket, route.key),
                    encode(replace(found.meta, acl=acl)))
    return Response(200)

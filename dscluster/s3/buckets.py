"""Bucket endpoints: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, and the
GetBucketLocation / GetBucketVersioning probes that S3 tools make before other calls.

ListBuckets pages by name (max-buckets, continuation-token). A repeated CreateBucket
succeeds in us-east-1, as on AWS.

A bucket exists when its record ``/.s3/buckets/<B>`` does; its objects are the keys
under ``/<B>``. The record names the bucket's owner, the credential that created it
(grants.py), and ListBuckets shows a caller its own buckets (and those from before
owners, which are everyone's). The other endpoints run once ``acl.authorize`` has found
the bucket and let the caller in. Creating a bucket over a datastore prefix that
already holds keys (``/blocks`` of dsclient and Kubo, a dsclient ``/health/…``) would
hand those keys to an S3 credential, so CreateBucket does that only for the names
the operator listed in ``adopt_prefixes``.
"""

from __future__ import annotations

from ..query import FilterKeyCompare, Query
from . import keymap
from .body import RequestBody
from .context import Gateway
from .errors import S3Error
from .grants import Caller, owner_nodes, requested_acl
from .http import Request, Response, xml_response
from .listing import decode_token, encode_token, first_object
from .meta import PRIVATE, BucketRecord, decode, encode, now_ms
from .router import Route
from .storage import bucket_record, delete_prefix, first_key_under, gather, open_query
from .xml import Node, iso8601

# a CreateBucketConfiguration is a few hundred bytes
MAX_CONFIG_BODY = 64 << 10
# S3's limit on max-buckets, and its page size when none is given
MAX_BUCKETS = 10000


async def list_buckets(gw: Gateway, req: Request, route: Route) -> Response:
    """ListBuckets: the caller's, by name, ``max-buckets`` at a time
    (``continuation-token``), maybe only those starting with ``prefix``."""
    caller = Caller.of(req.auth, gw.settings)
    max_buckets = req.count_param("max-buckets", MAX_BUCKETS)
    if not 1 <= max_buckets <= MAX_BUCKETS:
        raise S3Error("InvalidArgument", f"max-buckets must be from 1 to {MAX_BUCKETS}.",
                      ArgumentName="max-buckets", ArgumentValue=str(max_buckets))
    prefix = req.param("prefix") or ""
    token = req.param("continuation-token") or None
    after = decode_token(token)[0] if token is not None else None
    filters = (FilterKeyCompare(">", keymap.bucket_key(after)),) if after is not None else ()
    buckets: list[Node] = []
    truncated = False
    async with open_query(gw.ds, Query(prefix=keymap.BUCKETS_PREFIX,
                                       filters=filters)) as entries:
        async for e in entries:
            record = decode(BucketRecord, e.value)
            name = e.key.rsplit("/", 1)[1]
            if not name.startswith(prefix):
                if name > prefix:
                    break  # names are sorted: none further starts with it
                continue
            if record is None or not caller.owns(record):
                continue
            if len(buckets) == max_buckets:
                truncated = True
                break
            buckets.append(("Bucket", [("Name", name),
                                       ("CreationDate", iso8601(record.created_ms))]))
            after = name
    return xml_response("ListAllMyBucketsResult", [
        ("Owner", owner_nodes(caller.access_key, caller)), ("Buckets", buckets),
        ("Prefix", prefix or None),
        ("ContinuationToken", encode_token((after, False)) if truncated and after else None),
    ])


async def create_bucket(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None
    keymap.check_bucket_name(route.bucket)
    caller = Caller.of(req.auth, gw.settings)
    acl = requested_acl(req) or PRIVATE
    # the optional CreateBucketConfiguration only names a location: there is one
    body = RequestBody(req, max_size=MAX_CONFIG_BODY)
    await body.read_all()
    body.verify()
    bucket = route.bucket
    record, held = await gather(lambda: bucket_record(gw.ds, bucket),
                                lambda: first_key_under(gw.ds, keymap.data_prefix(bucket)))
    if record is not None and not caller.owns(record):
        raise S3Error("BucketAlreadyExists", BucketName=bucket)
    if record is not None:
        # us-east-1 answers a repeated CreateBucket with success (datastore-s3's
        # createIfMissing relies on it); every other region with 409
        if gw.settings.region == "us-east-1":
            return Response(200, [("location", f"/{bucket}")])
        raise S3Error("BucketAlreadyOwnedByYou", BucketName=bucket)
    if held is not None and bucket not in gw.settings.adopt_prefixes:
        raise S3Error("BucketAlreadyExists", f"The datastore already holds keys under "
                      f"/{bucket} that were not written through the S3 gateway. To serve "
                      f"them as bucket {bucket}, add \"{bucket}\" to adopt_prefixes in the "
                      "s3 section of the node's config.json and restart the node.",
                      BucketName=bucket)
    created = BucketRecord(now_ms(), owner=caller.access_key, acl=acl)
    await gw.ds.put(keymap.bucket_key(route.bucket), encode(created))
    gw.buckets.keep(route.bucket, created)
    return Response(200, [("location", f"/{route.bucket}")])


async def head_bucket(gw: Gateway, req: Request, route: Route) -> Response:
    return Response(200, [("x-amz-bucket-region", gw.settings.region)])


async def delete_bucket(gw: Gateway, req: Request, route: Route) -> Response:
    bucket = route.bucket
    assert bucket is not None
    if await first_object(gw.ds, bucket) is not None:
        raise S3Error("BucketNotEmpty", BucketName=bucket)
    if await first_key_under(gw.ds, keymap.uploads_prefix(bucket)) is not None:
        raise S3Error("BucketNotEmpty", "The bucket has multipart uploads in progress; "
                      "abort them first.", BucketName=bucket)
    # metadata records whose objects were deleted around the gateway
    await delete_prefix(gw.ds, keymap.meta_prefix(bucket))
    await gw.ds.delete(keymap.bucket_key(bucket))
    gw.buckets.forget(bucket)
    return Response(204)


async def get_bucket_location(gw: Gateway, req: Request, route: Route) -> Response:
    # AWS answers an empty LocationConstraint for us-east-1
    region = gw.settings.region
    return xml_response("LocationConstraint", "" if region == "us-east-1" else region)


async def get_bucket_versioning(gw: Gateway, req: Request, route: Route) -> Response:
    return xml_response("VersioningConfiguration", [])

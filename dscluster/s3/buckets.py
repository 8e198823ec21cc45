"""Bucket endpoints: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, and the
GetBucketLocation / GetBucketVersioning probes that S3 tools make before other calls.

A bucket exists when its record ``/.s3/buckets/<B>`` does; its objects are the keys
under ``/<B>``. Every credential may use every bucket (there are no ACLs), so all
buckets have one owner (``xml.OWNER``).
"""

from __future__ import annotations

from ..query import Query
from . import keymap
from .body import RequestBody
from .context import Gateway
from .errors import S3Error
from .http import Request, Response, xml_response
from .listing import first_object
from .meta import BucketRecord, decode, encode, now_ms
from .router import Route
from .storage import bucket_record, delete_prefix, open_query, require_bucket
from .xml import OWNER, iso8601

# a CreateBucketConfiguration is a few hundred bytes
MAX_CONFIG_BODY = 64 << 10


async def list_buckets(gw: Gateway, req: Request, route: Route) -> Response:
    buckets = []
    async with open_query(gw.ds, Query(prefix=keymap.BUCKETS_PREFIX)) as entries:
        async for e in entries:
            record = decode(BucketRecord, e.value)
            name = e.key.rsplit("/", 1)[1]
            if record is not None:
                buckets.append(("Bucket", [("Name", name),
                                           ("CreationDate", iso8601(record.created_ms))]))
    return xml_response("ListAllMyBucketsResult", [("Owner", OWNER), ("Buckets", buckets)])


async def create_bucket(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None
    keymap.check_bucket_name(route.bucket)
    # the optional CreateBucketConfiguration only names a location: there is one
    body = RequestBody(req, max_size=MAX_CONFIG_BODY)
    await body.read_all()
    body.verify()
    if await bucket_record(gw.ds, route.bucket) is not None:
        raise S3Error("BucketAlreadyOwnedByYou", BucketName=route.bucket)
    await gw.ds.put(keymap.bucket_key(route.bucket), encode(BucketRecord(now_ms())))
    return Response(200, [("location", f"/{route.bucket}")])


async def head_bucket(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None
    await require_bucket(gw.ds, route.bucket)
    return Response(200, [("x-amz-bucket-region", gw.settings.region)])


async def delete_bucket(gw: Gateway, req: Request, route: Route) -> Response:
    bucket = route.bucket
    assert bucket is not None
    await require_bucket(gw.ds, bucket)
    if await first_object(gw.ds, bucket) is not None:
        raise S3Error("BucketNotEmpty", BucketName=bucket)
    async with open_query(gw.ds, Query(prefix=keymap.uploads_prefix(bucket), keys_only=True,
                                         limit=1)) as uploads:
        async for _ in uploads:
            raise S3Error("BucketNotEmpty", "The bucket has multipart uploads in progress; "
                          "abort them first.", BucketName=bucket)
    # metadata records whose objects were deleted around the gateway
    await delete_prefix(gw.ds, keymap.meta_prefix(bucket))
    await gw.ds.delete(keymap.bucket_key(bucket))
    return Response(204)


async def get_bucket_location(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None
    await require_bucket(gw.ds, route.bucket)
    # AWS answers an empty LocationConstraint for us-east-1
    region = gw.settings.region
    return xml_response("LocationConstraint", "" if region == "us-east-1" else region)


async def get_bucket_versioning(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None
    await require_bucket(gw.ds, route.bucket)
    return xml_response("VersioningConfiguration", [])

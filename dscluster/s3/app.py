"""The ASGI application: parse, authenticate, route, authorize, dispatch, answer.

Unsigned requests pass authentication and are judged like any other caller by
``acl.authorize`` (and, for an object's GET and HEAD, by its ACL in
``storage.find_object``): they may read what is public-read, nothing else.

Every request gets one id (``x-amz-request-id``, ``<RequestId>`` and its log lines,
made by observe.py). Errors from any layer end here: an ``S3Error`` as it is, a dscluster
error through the one mapping table (errors.py), anything else as InternalError with the
traceback in the log. Errors raised inside a nursery (the UnixFS importer runs one)
arrive as exception groups and are unwrapped first. Before answering, whatever the
handler left of the request body is read and dropped, so that the client sees the answer
and the connection stays usable.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ..cluster.credentials import CredentialBook
from ..datastore import Datastore
from ..errors import DSClusterError
from ..metrics import NodeMetrics
from . import acl, buckets, listing, multipart, objects
from .body import drain
from .bucketcache import BucketCache
from .context import Gateway, Handler
from .errors import S3Error, s3_error_from
from .http import (
    Receive,
    Request,
    Response,
    Scope,
    Send,
    error_response,
    parse_request,
    send_response,
)
from .observe import ACCESS_SCOPE, Access, Observed
from .router import Endpoint, route
from .settings import S3Settings
from .sigv4 import Authorized, authenticate

log = logging.getLogger("dscluster.s3")

HANDLERS: dict[Endpoint, Handler] = {
    Endpoint.LIST_BUCKETS: buckets.list_buckets,
    Endpoint.CREATE_BUCKET: buckets.create_bucket,
    Endpoint.HEAD_BUCKET: buckets.head_bucket,
    Endpoint.DELETE_BUCKET: buckets.delete_bucket,
    Endpoint.GET_BUCKET_LOCATION: buckets.get_bucket_location,
    Endpoint.GET_BUCKET_VERSIONING: buckets.get_bucket_versioning,
    Endpoint.LIST_OBJECTS: listing.list_objects,
    Endpoint.LIST_OBJECTS_V2: listing.list_objects_v2,
    Endpoint.LIST_OBJECT_VERSIONS: listing.list_object_versions,
    Endpoint.LIST_MULTIPART_UPLOADS: multipart.list_uploads,
    Endpoint.DELETE_OBJECTS: objects.delete_many,
    Endpoint.PUT_OBJECT: objects.put_object,
    Endpoint.COPY_OBJECT: objects.copy_object,
    Endpoint.GET_OBJECT: objects.get_object,
    Endpoint.HEAD_OBJECT: objects.head_object,
    Endpoint.DELETE_OBJECT: objects.delete_object,
    Endpoint.CREATE_MULTIPART_UPLOAD: multipart.create_upload,
    Endpoint.UPLOAD_PART: multipart.upload_part,
    Endpoint.UPLOAD_PART_COPY: multipart.upload_part_copy,
    Endpoint.COMPLETE_MULTIPART_UPLOAD: multipart.complete_upload,
    Endpoint.ABORT_MULTIPART_UPLOAD: multipart.abort_upload,
    Endpoint.LIST_PARTS: multipart.list_parts,
    Endpoint.GET_BUCKET_ACL: acl.get_bucket_acl,
    Endpoint.PUT_BUCKET_ACL: acl.put_bucket_acl,
    Endpoint.GET_OBJECT_ACL: acl.get_object_acl,
    Endpoint.PUT_OBJECT_ACL: acl.put_object_acl,
}


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def as_s3_error(exc: Exception) -> S3Error:
    """The S3 error an exception (or exception group) stands for."""
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, S3Error):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, DSClusterError):
            err = s3_error_from(leaf)
            if err.code == "InternalError":
                log.error("datastore error: %r", leaf)
            return err
    log.error("internal error", exc_info=exc)
    return S3Error("InternalError")


def gateway_app(ds: Datastore, settings: S3Settings, metrics: NodeMetrics,
                credentials: CredentialBook | None = None) -> Observed:
    """The gateway with its metrics and access log (observe.py)."""
    return Observed(S3App(ds, settings, credentials), metrics)


class S3App:
    """The gateway as an ASGI 3 application over a Datastore. Its credentials are the
    node's own (``s3.credentials`` in config.json) and, with ``credentials``, the
    cluster's (`dsclient s3-key`, cluster/credentials.py)."""

    def __init__(self, ds: Datastore, settings: S3Settings,
                 credentials: CredentialBook | None = None) -> None:
        self.gw = Gateway(ds, settings, BucketCache(ds, settings.bucket_cache_seconds))
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _handle(self, req: Request, access: Access) -> Response:
        req.auth = await self._authenticate(req)
        access.access_key = req.auth.access_key
        # a presigned URL's signed x-amz-* query values stand for the headers they name
        req.headers += req.auth.query_headers
        # routed after authentication, so that what makes a PUT a copy (x-amz-copy-source)
        # is signed whenever the request is
        where = route(req.method, req.path, req.query,
                      copy_source=req.header("x-amz-copy-source") is not None)
        access.operation, access.bucket, access.key = where.endpoint.value, where.bucket, where.key
        await acl.authorize(self.gw, req, where)
        return await HANDLERS[where.endpoint](self.gw, req, where)

    def _secret_for(self, access_key: str) -> str | None:
        found = self.gw.settings.secret_for(access_key)
        if found is None and self.credentials is not None:
            return self.credentials.s3_secret(access_key)
        return found

    async def _authenticate(self, req: Request) -> Authorized:
        def check() -> Authorized:
            return authenticate(req.method, req.path, req.query_pairs, req.headers,
                                secret_for=self._secret_for, allow_anonymous=True,
                                now=datetime.now(UTC), raw_path=req.raw_path)

        book = self.credentials
        try:
            auth = check()
        except S3Error as e:
            # a key added on another node a moment ago: ask the cluster, then check again
            unknown = e.fields.get("AWSAccessKeyId") if e.code == "InvalidAccessKeyId" else None
            if book is None or unknown is None or await book.look_up_s3(unknown) is None:
                raise
            auth = check()
        if book is not None and auth.access_key is not None:
            book.used(auth.access_key)
        return auth

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # observe.Observed made the request's one id; called bare (tests), it gets its own
        access = scope.get(ACCESS_SCOPE) or Access.new()
        request_id = access.request_id
        req: Request | None = None
        try:
            req = parse_request(scope, receive, request_id)
            resp = await self._handle(req, access)
        except Exception as e:
            resp = error_response(as_s3_error(e), request_id,
                                  req.path if req is not None else None)
        if req is not None:
            try:
                await drain(req)
            except Exception as e:
                log.debug("could not drain the request body: %r", e)
        await send_response(send, resp, request_id, head=scope["method"] == "HEAD",
                            receive=receive)

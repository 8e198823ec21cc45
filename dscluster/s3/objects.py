"""Object endpoints: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects and
CopyObject, with S3's conditional requests and writes, ranges and reads by partNumber,
response-header overrides, and versionId "null" (buckets are never versioned).

Theory of operation. A PUT reads the body up to ``max_value_size`` bytes; if it ended
there, the object is stored inline (exactly its bytes at its key), otherwise what was
read and the rest of the stream go through the UnixFS importer, so memory stays bounded
whatever the object's size. Either way the body is verified (signed SHA-256,
Content-MD5, x-amz-checksum-*) before the metadata that makes the object visible is
written. A GET streams a chunked object block window by block window.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from . import keymap
from .body import RequestBody
from .context import Gateway
from .errors import S3Error
from .grants import Caller, requested_acl
from .http import Request, Response, etag_list, http_date, quote_etag, xml_response
from .meta import (
    CID_HEADER,
    CID_META,
    DEFAULT_CONTENT_TYPE,
    PRIVATE,
    STORED_HEADERS,
    Checksum,
    ObjectMeta,
    now_ms,
)
from .router import Route
from .storage import (
    Found,
    add_file,
    commit,
    delete_objects,
    find_object,
    open_content,
    prepend,
)
from .xml import Node, child_text, children, iso8601, local, parse

# S3's limit on user metadata (names and values of x-amz-meta-*)
MAX_USER_META = 2048
# a DeleteObjects body of 1000 keys of 1024 bytes, with room for XML escapes
MAX_DELETE_BODY = 4 << 20
MAX_DELETE_KEYS = 1000
USER_META_PREFIX = "x-amz-meta-"
CID_META_HEADER = USER_META_PREFIX + CID_META
MAX_PARTS = 10000
# query parameters of a GET that override the stored response headers
RESPONSE_OVERRIDES = {
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
    "response-content-language": "content-language",
    "response-content-type": "content-type",
    "response-expires": "expires",
}
# possessive, since backtracking over a long run of spaces took quadratic time; offsets
# of more than 20 digits (no object is that large, and int() refuses 4300) are no range
_RANGE_RE = re.compile(r"\s*+bytes\s*+=\s*+(\d{0,20}+)\s*+-\s*+(\d{0,20}+)\s*+")


@dataclass(frozen=True, slots=True)
class Stored:
    """A received body: inline bytes, or the CID of the UnixFS file it became."""

    size: int
    etag: str
    data: bytes | None
    cid: str | None
    checksum: Checksum | None


async def receive_body(gw: Gateway, req: Request, *, inline: bool) -> Stored:
    """Read, store and verify a request body; inline if allowed and small enough."""
    body = RequestBody(req, max_size=gw.settings.max_object_size)
    chunks = body.chunks()
    assert isinstance(chunks, AsyncGenerator)
    # the pieces are joined once, at the end: growing one buffer copied them again and again
    head: list[bytes] = []
    held = 0
    limit = gw.settings.max_value_size if inline else 0
    ended = True
    async for piece in chunks:
        head.append(piece)
        held += len(piece)
        if held > limit:
            ended = False
            break
    if inline and ended:
        return Stored(body.size, body.md5_hex, b"".join(head), None, body.verify())
    added = await add_file(gw.ds, prepend(b"".join(head), chunks))
    checksum = body.verify()
    return Stored(added.size, body.md5_hex, None, added.cid, checksum)


# Cache-Control is the one stored header left out: the AWS SDK for JavaScript never signs
# it (@smithy/signature-v4 lists it as unsignable), so requiring it would refuse every
# upload with CacheControl from JS, and it only steers caches, not what a reader gets.
SIGNED_WHEN_STORED = ("content-type", *(h for h in STORED_HEADERS if h != "cache-control"))


def stored_fields(req: Request) -> tuple[str, dict[str, str], dict[str, str]]:
    """(content type, representation headers, user metadata) to keep with an object.

    Only signed values are kept: a holder of a presigned URL (or of a captured signed
    request) must not choose them. The x-amz-meta-* headers are signed on every signed
    request (sigv4.py); the others are checked here, where they would be stored."""
    assert req.auth is not None
    req.auth.require_signed(req.headers, SIGNED_WHEN_STORED)
    content_type = req.header("content-type") or DEFAULT_CONTENT_TYPE
    headers: dict[str, str] = {}
    for name in STORED_HEADERS:
        value = req.header(name)
        if name == "content-encoding" and value is not None:
            # aws-chunked is how this request's body was framed, not the object's encoding
            tokens = [t.strip() for t in value.split(",")
                      if t.strip() and t.strip().lower() != "aws-chunked"]
            value = ", ".join(tokens) or None
        if value is not None:
            headers[name] = value
    user = {n[len(USER_META_PREFIX):]: v for n, v in req.headers
            if n.startswith(USER_META_PREFIX) and n != CID_META_HEADER}
    if sum(len(k) + len(v) for k, v in user.items()) > MAX_USER_META:
        raise S3Error("MetadataTooLarge", MaxSizeAllowed=str(MAX_USER_META))
    return content_type, headers, user


def checksum_headers(checksum: Checksum | None) -> list[tuple[str, str]]:
    if checksum is None:
        return []
    return [(f"x-amz-checksum-{checksum.algorithm}", checksum.value),
            ("x-amz-checksum-type", checksum.type)]


def cid_headers(meta: ObjectMeta) -> list[tuple[str, str]]:
    """Where a chunked object's CID is shown: its own header, and the user metadata
    ipfs-cid for an object of one PUT (a multipart object's user metadata is only what
    its uploader set)."""
    if meta.cid is None:
        return []
    out = [(CID_HEADER, meta.cid)]
    if not meta.parts:
        out.append((CID_META_HEADER, meta.cid))
    return out


def object_headers(req: Request, meta: ObjectMeta, *, whole: bool) -> list[tuple[str, str]]:
    """The headers GET and HEAD return for an object (``whole``: not a range of it)."""
    h = [("last-modified", http_date(meta.mtime_ms)), ("content-type", meta.content_type),
         ("accept-ranges", "bytes")]
    if meta.etag:
        h.append(("etag", quote_etag(meta.etag)))
    h += list(meta.headers.items())
    h += [(USER_META_PREFIX + k, v) for k, v in meta.user.items()]
    h += cid_headers(meta)
    if meta.parts:
        h.append(("x-amz-mp-parts-count", str(meta.parts)))
    if whole and (req.header("x-amz-checksum-mode") or "").upper() == "ENABLED":
        h += checksum_headers(meta.checksum)
    for param, name in RESPONSE_OVERRIDES.items():
        value = req.param(param)
        if value is None:
            continue
        if not value.isprintable() or not value.isascii():
            # a query value may hold anything, a header value may not (no CR LF here)
            raise S3Error("InvalidArgument", f"{param} must be printable ASCII.",
                          ArgumentName=param)
        h = [(n, v) for n, v in h if n != name] + [(name, value)]
    return h


def _http_seconds(value: str | None) -> int | None:
    """An HTTP date in whole seconds; None when absent or unparsable (then ignored)."""
    if value is None:
        return None
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError):
        return None


def check_conditions(req: Request, meta: ObjectMeta, *, copy_source: bool = False) -> None:
    """If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since (RFC 7232 order,
    as S3 applies them); for CopyObject the x-amz-copy-source-if-* forms, all 412."""
    p = "x-amz-copy-source-if-" if copy_source else "if-"
    validators = {"etag": quote_etag(meta.etag), "last-modified": http_date(meta.mtime_ms)}
    mtime = meta.mtime_ms // 1000
    if_match, if_unmodified = req.header(p + "match"), _http_seconds(req.header(
        p + "unmodified-since"))
    if if_match is not None:
        tags = etag_list(if_match)
        if "*" not in tags and meta.etag not in tags:
            raise S3Error("PreconditionFailed", Condition="If-Match")
    elif if_unmodified is not None and mtime > if_unmodified:
        raise S3Error("PreconditionFailed", Condition="If-Unmodified-Since")
    not_modified = "PreconditionFailed" if copy_source else "NotModified"
    if_none, if_modified = req.header(p + "none-match"), _http_seconds(req.header(
        p + "modified-since"))
    if if_none is not None:
        tags = etag_list(if_none)
        if "*" in tags or meta.etag in tags:
            raise S3Error(not_modified, headers=validators, Condition="If-None-Match")
    elif if_modified is not None and mtime <= if_modified:
        raise S3Error(not_modified, headers=validators, Condition="If-Modified-Since")


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single byte range; None to send the whole object
    (no header, or one S3 ignores: another unit, several ranges, end before start)."""
    m = _RANGE_RE.fullmatch(value) if value is not None else None
    if m is None or m.group(1) == m.group(2) == "":
        return None
    first, last = m.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
        if int(last) == 0:
            start = size
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None
    if start >= size:
        raise S3Error("InvalidRange", headers={"content-range": f"bytes */{size}"},
                      RangeRequested=value or "", ActualObjectSize=str(size))
    return start, end


def part_number(req: Request) -> int:
    """The partNumber parameter: 1 to 10000."""
    raw = req.param("partNumber") or ""
    if len(raw) > 5 or not raw.isdecimal() or not 1 <= int(raw) <= MAX_PARTS:
        raise S3Error("InvalidArgument", f"Part number must be an integer between 1 and "
                      f"{MAX_PARTS}, inclusive", ArgumentName="partNumber", ArgumentValue=raw)
    return int(raw)


def part_range(meta: ObjectMeta, number: int) -> tuple[int, int] | None:
    """(start, end inclusive) of part ``number``: one of a multipart object's parts, or
    for any other object part 1, all of it (None for an empty one: no range)."""
    sizes = meta.part_sizes if meta.parts else [meta.size]
    if meta.parts and not sizes:
        raise S3Error("NotImplemented", "This object was completed before the gateway kept "
                      "part sizes; read it by Range instead of partNumber.")
    if number > len(sizes):
        raise S3Error("InvalidPart", "The requested partnumber is not satisfiable",
                      PartNumber=str(number), PartsCount=str(len(sizes)))
    start = sum(sizes[:number - 1])
    return (start, start + sizes[number - 1] - 1) if sizes[number - 1] else None


async def _read(gw: Gateway, req: Request, route: Route, *, head: bool) -> Response:
    assert route.bucket is not None and route.key is not None
    version_id = req.param("versionId")
    if version_id is not None:
        keymap.check_version_id(version_id)
    number = part_number(req) if req.param("partNumber") is not None else None
    if number is not None and req.header("range") is not None:
        raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber "
                      "query parameter")
    found = await find_object(gw.ds, gw.buckets, route.bucket, route.key, with_data=not head,
                              reader=Caller.of(req.auth, gw.settings))
    meta = found.meta
    check_conditions(req, meta)
    rng = (part_range(meta, number) if number is not None
           else parse_range(req.header("range"), meta.size))
    headers = object_headers(req, meta, whole=rng is None)
    status, start, length = 200, 0, meta.size
    if rng is not None:
        status, start, length = 206, rng[0], rng[1] - rng[0] + 1
        headers.append(("content-range", f"bytes {rng[0]}-{rng[1]}/{meta.size}"))
    if head:
        return Response(status, headers, content_length=length)
    if meta.cid is None and found.data is not None:
        # an inline object's bytes are at hand: one message, no stream to run and watch
        return Response(status, headers, found.data[start:start + length])
    return Response(status, headers, await open_content(gw.ds, found, start, length),
                    content_length=length)


async def get_object(gw: Gateway, req: Request, route: Route) -> Response:
    return await _read(gw, req, route, head=False)


async def head_object(gw: Gateway, req: Request, route: Route) -> Response:
    return await _read(gw, req, route, head=True)


def write_conditions(req: Request) -> tuple[str | None, str | None]:
    """(If-None-Match, If-Match) of a write, refused before its body is read when S3
    would refuse them: If-None-Match takes only "*"."""
    if_none, if_match = req.header("if-none-match"), req.header("if-match")
    if if_none is not None and etag_list(if_none) != ["*"]:
        raise S3Error("NotImplemented", "If-None-Match on a write takes only \"*\".")
    return if_none, if_match


async def check_write_conditions(gw: Gateway, bucket: str, key: str,
                                 conditions: tuple[str | None, str | None]) -> None:
    """PreconditionFailed unless the object is as a conditional write wants it:
    If-None-Match: * (no object yet) or If-Match (its ETag). Checked just before the
    write: the datastore has no compare-and-swap, so a write racing this one (on
    another node) can still come in between."""
    if_none, if_match = conditions
    if if_none is None and if_match is None:
        return
    try:
        meta: ObjectMeta | None = (await find_object(gw.ds, gw.buckets, bucket, key,
                                                     with_data=False)).meta
    except S3Error as e:
        if e.code != "NoSuchKey":
            raise
        meta = None
    if if_none is not None and meta is not None:
        raise S3Error("PreconditionFailed", Condition="If-None-Match")
    if if_match is not None:
        if meta is None:
            raise S3Error("NoSuchKey", Key=key)
        tags = etag_list(if_match)
        if "*" not in tags and meta.etag not in tags:
            raise S3Error("PreconditionFailed", Condition="If-Match")


async def put_object(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None and route.key is not None
    keymap.check_object_key(route.key)
    conditions = write_conditions(req)
    acl = requested_acl(req) or PRIVATE
    content_type, headers, user = stored_fields(req)
    stored = await receive_body(gw, req, inline=True)
    meta = ObjectMeta(size=stored.size, etag=stored.etag, mtime_ms=now_ms(), cid=stored.cid,
                      content_type=content_type, headers=headers, user=user,
                      checksum=stored.checksum, acl=acl)
    await check_write_conditions(gw, route.bucket, route.key, conditions)
    await commit(gw.ds, route.bucket, route.key, meta, stored.data)
    return Response(200, [("etag", quote_etag(meta.etag)), *checksum_headers(meta.checksum),
                          *cid_headers(meta)])


async def delete_object(gw: Gateway, req: Request, route: Route) -> Response:
    """DeleteObject; versionId "null" names the object's one version, so it is
    deleted the same."""
    assert route.bucket is not None and route.key is not None
    keymap.check_object_key(route.key)
    version_id = req.param("versionId")
    if version_id is not None:
        keymap.check_version_id(version_id)
    await delete_objects(gw.ds, route.bucket, [route.key])
    return Response(204, [] if version_id is None else [("x-amz-version-id", version_id)])


async def delete_many(gw: Gateway, req: Request, route: Route) -> Response:
    """DeleteObjects: up to 1000 keys; a missing key counts as deleted (as in S3)."""
    assert route.bucket is not None
    body = RequestBody(req, max_size=MAX_DELETE_BODY)
    raw = await body.read_all()
    body.verify()
    root = parse(raw)
    objects = children(root, "Object")
    if local(root.tag) != "Delete" or not 0 < len(objects) <= MAX_DELETE_KEYS:
        raise S3Error("MalformedXML", f"A Delete names 1 to {MAX_DELETE_KEYS} objects.")
    quiet = (child_text(root, "Quiet") or "").strip().lower() == "true"
    # (key, version id as given): "null" is each object's one version
    targets: list[tuple[str, str | None]] = []
    errors: list[tuple[str, str | None, S3Error]] = []
    for obj in objects:
        key, version_id = child_text(obj, "Key"), child_text(obj, "VersionId")
        if key is None:
            raise S3Error("MalformedXML", "Every Object needs a Key.")
        try:
            keymap.check_object_key(key)
            if version_id is not None:
                keymap.check_version_id(version_id)
        except S3Error as e:
            errors.append((key, version_id, e))
        else:
            targets.append((key, version_id))
    targets = list(dict.fromkeys(targets))
    await delete_objects(gw.ds, route.bucket, list(dict.fromkeys(k for k, _ in targets)))
    nodes: list[Node] = [] if quiet else [
        ("Deleted", [("Key", k), ("VersionId", v)]) for k, v in targets]
    nodes += [("Error", [("Key", k), ("VersionId", v), ("Code", e.code),
                         ("Message", e.message)]) for k, v, e in errors]
    return xml_response("DeleteResult", nodes)


def parse_copy_source(value: str) -> tuple[str, str]:
    """(bucket, key) of an x-amz-copy-source ("bucket/key" URL-encoded, maybe with a
    leading "/" and a "?versionId=")."""
    path = value.partition("?")[0]
    try:
        path = unquote(path, errors="strict")
    except UnicodeDecodeError:
        path = ""
    bucket, _, key = path.removeprefix("/").partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: "
                      "sourcebucket/sourcekey", ArgumentName="x-amz-copy-source")
    return bucket, key


async def find_copy_source(gw: Gateway, req: Request) -> tuple[str, str, Found]:
    """The object x-amz-copy-source names, once the caller may read it (CopyObject and
    UploadPartCopy: an object of its own bucket, or a public-read one), with the
    x-amz-copy-source-if-* conditions checked. An unsigned caller may copy nothing. A
    name that is no bucket name (the gateway's records under /.s3, the UnixFS blocks
    under /blocks, values written around the gateway) is NoSuchBucket: those are
    datastore keys, not objects."""
    bucket, key = parse_copy_source(req.header("x-amz-copy-source") or "")
    caller = Caller.of(req.auth, gw.settings)
    if caller.access_key is None:
        raise S3Error("AccessDenied", "Anonymous requests may not copy objects.")
    if not keymap.valid_bucket_name(bucket):
        raise S3Error("NoSuchBucket", BucketName=bucket)
    found = await find_object(gw.ds, gw.buckets, bucket, key, with_data=True, reader=caller)
    check_conditions(req, found.meta, copy_source=True)
    return bucket, key, found


async def copy_object(gw: Gateway, req: Request, route: Route) -> Response:
    """CopyObject: an inline source is copied byte for byte, a chunked one by reference
    to its CID (its blocks are shared, nothing is re-read)."""
    assert route.bucket is not None and route.key is not None
    keymap.check_object_key(route.key)
    acl = requested_acl(req) or PRIVATE
    src_bucket, src_key, found = await find_copy_source(gw, req)
    directive = (req.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.",
                      ArgumentName="x-amz-metadata-directive", ArgumentValue=directive)
    if (src_bucket, src_key) == (route.bucket, route.key) and directive == "COPY":
        raise S3Error("InvalidRequest", "This copy request is illegal because it is trying to "
                      "copy an object to itself without changing the object's metadata.")
    # a copy is not what an upload completed: a retried completion must not take it so;
    # its ACL is the request's, as on S3, not the source's
    meta = replace(found.meta, mtime_ms=now_ms(), upload_id=None, acl=acl)
    if directive == "REPLACE":
        content_type, headers, user = stored_fields(req)
        meta = replace(meta, content_type=content_type, headers=headers, user=user)
    await commit(gw.ds, route.bucket, route.key, meta, found.data)
    return xml_response("CopyObjectResult", [("ETag", quote_etag(meta.etag)),
                                             ("LastModified", iso8601(meta.mtime_ms))])

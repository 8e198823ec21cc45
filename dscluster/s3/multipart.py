"""Multipart uploads: create, upload part (and part copy), complete, abort, list parts,
list uploads.

Theory of operation. Every part is streamed into its own UnixFS file, whatever its size,
and recorded under ``/.s3/parts/<B>/<upload id>/<nnnnn>``. Completing an upload checks
the client's list against those records and joins the parts' DAGs with
``unixfs.concat``, which reads only the parts' root blocks, so completing a 5 GB upload
is as quick as a small one. The object's ETag is S3's: the MD5 of the parts' binary
MD5s, then "-<number of parts>". Upload ids start with the creation time in hex, so an
object's uploads list in the order they were started, as in S3. The object's record
keeps the upload id and the part sizes: a retried completion is recognised by the
first, GET by partNumber reads the second.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import time
from collections.abc import AsyncIterator

from ..query import Entry, FilterKeyCompare, Query
from ..unixfs import AddedFile
from . import keymap
from .acl import shown_owner
from .body import RequestBody
from .checksums import check_algorithm, composite
from .context import Gateway
from .errors import S3Error
from .grants import requested_acl
from .http import Request, Response, is_count, quote_etag, xml_response
from .listing import Cursor, successor
from .meta import (
    CID_HEADER,
    PRIVATE,
    Checksum,
    ObjectMeta,
    PartRecord,
    UploadRecord,
    decode,
    encode,
    now_ms,
)
from .objects import (
    MAX_PARTS,
    check_write_conditions,
    checksum_headers,
    find_copy_source,
    receive_body,
    stored_fields,
    write_conditions,
)
from .objects import part_number as _part_number
from .router import Route
from .storage import (
    add_file,
    commit,
    concat_files,
    delete_prefix,
    find_object,
    get_or_none,
    open_content,
    open_query,
)
from .xml import Node, child_text, children, iso8601, local, parse

MAX_LIST = 1000
# a CompleteMultipartUpload body naming 10000 parts with their checksums
MAX_COMPLETE_BODY = 8 << 20
# no object has offsets of more than 20 digits (and int() refuses 4300)
_COPY_RANGE_RE = re.compile(r"bytes=(\d{1,20})-(\d{1,20})")


def _upload_id() -> str:
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


async def _upload(gw: Gateway, req: Request, route: Route) -> tuple[str, UploadRecord]:
    """(id, record) of the upload a request names, or NoSuchUpload."""
    bucket, key = route.bucket, route.key
    assert bucket is not None and key is not None
    keymap.check_object_key(key)
    upload_id = req.param("uploadId") or ""
    if not keymap.UPLOAD_ID_RE.fullmatch(upload_id):
        raise S3Error("NoSuchUpload", UploadId=upload_id)
    record = decode(UploadRecord, await get_or_none(gw.ds, keymap.upload_key(bucket, key,
                                                                             upload_id)))
    if record is None or record.key != key:
        raise S3Error("NoSuchUpload", UploadId=upload_id)
    return upload_id, record


async def create_upload(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None and route.key is not None
    keymap.check_object_key(route.key)
    content_type, headers, user = stored_fields(req)
    algorithm = req.header("x-amz-checksum-algorithm")
    record = UploadRecord(key=route.key, initiated_ms=now_ms(), content_type=content_type,
                          headers=headers, user=user,
                          checksum_algorithm=check_algorithm(algorithm) if algorithm else None,
                          acl=requested_acl(req) or PRIVATE)
    upload_id = _upload_id()
    await gw.ds.put(keymap.upload_key(route.bucket, route.key, upload_id), encode(record))
    resp = xml_response("InitiateMultipartUploadResult", [
        ("Bucket", route.bucket), ("Key", route.key), ("UploadId", upload_id)])
    if record.checksum_algorithm:
        resp.headers.append(("x-amz-checksum-algorithm", record.checksum_algorithm.upper()))
    return resp


async def upload_part(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None
    number = _part_number(req)
    upload_id, _ = await _upload(gw, req, route)
    stored = await receive_body(gw, req, inline=False)
    assert stored.cid is not None
    part = PartRecord(cid=stored.cid, size=stored.size, etag=stored.etag, mtime_ms=now_ms(),
                      checksum=stored.checksum)
    await gw.ds.put(keymap.part_key(route.bucket, upload_id, number), encode(part))
    return Response(200, [("etag", quote_etag(part.etag)), *checksum_headers(part.checksum)])


async def _hashed(pieces: AsyncIterator[bytes], md5: hashlib._Hash) -> AsyncIterator[bytes]:
    async for piece in pieces:
        md5.update(piece)
        yield piece


async def upload_part_copy(gw: Gateway, req: Request, route: Route) -> Response:
    """UploadPartCopy: a part made of (a byte range of) another object."""
    assert route.bucket is not None
    number = _part_number(req)
    upload_id, _ = await _upload(gw, req, route)
    _, _, found = await find_copy_source(gw, req)
    size = found.meta.size
    start, length = 0, size
    rng = req.header("x-amz-copy-source-range")
    if rng is not None:
        m = _COPY_RANGE_RE.fullmatch(rng.strip())
        if m is None or int(m.group(1)) > int(m.group(2)) or int(m.group(2)) >= size:
            raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the "
                          "form bytes=first-last where first and last are the zero-based "
                          "offsets of the first and last bytes to copy",
                          ArgumentName="x-amz-copy-source-range", ArgumentValue=rng)
        start, length = int(m.group(1)), int(m.group(2)) - int(m.group(1)) + 1
    md5 = hashlib.md5(usedforsecurity=False)
    content = await open_content(gw.ds, found, start, length)
    added = await add_file(gw.ds, _hashed(content, md5))
    part = PartRecord(cid=added.cid, size=added.size, etag=md5.hexdigest(), mtime_ms=now_ms())
    await gw.ds.put(keymap.part_key(route.bucket, upload_id, number), encode(part))
    return xml_response("CopyPartResult", [("ETag", quote_etag(part.etag)),
                                           ("LastModified", iso8601(part.mtime_ms))])


def _requested_parts(raw: bytes) -> list[tuple[int, str, dict[str, str]]]:
    """(number, etag, {algorithm: checksum}) of each Part of a CompleteMultipartUpload,
    in the order given."""
    root = parse(raw)
    parts = children(root, "Part")
    if local(root.tag) != "CompleteMultipartUpload" or not 0 < len(parts) <= MAX_PARTS:
        raise S3Error("MalformedXML", "You must specify at least one part")
    out = []
    for p in parts:
        number, etag = child_text(p, "PartNumber"), child_text(p, "ETag")
        if number is None or etag is None or not is_count(number.strip(), 5):
            raise S3Error("MalformedXML", "Every Part needs a PartNumber and an ETag.")
        sums = {local(c.tag)[len("Checksum"):].lower(): (c.text or "").strip() for c in p
                if local(c.tag).startswith("Checksum")}
        out.append((int(number), etag.strip().strip('"'), sums))
    return out


def _checksum_node(checksum: Checksum | None) -> list[Node]:
    """The ChecksumCRC32 (…) element of a part or a completed upload, if it has one."""
    return [(f"Checksum{checksum.algorithm.upper()}", checksum.value)] if checksum else []


def _part(e: Entry) -> tuple[int, PartRecord] | None:
    """(part number, record) of a part record entry, None if it is corrupt."""
    record = decode(PartRecord, e.value)
    number = e.key.rsplit("/", 1)[1]
    return (int(number), record) if record is not None and number.isdigit() else None


async def _part_records(gw: Gateway, bucket: str, upload_id: str) -> dict[int, PartRecord]:
    async with open_query(gw.ds, Query(prefix=keymap.parts_prefix(bucket, upload_id))) as q:
        parts = [p async for e in q if (p := _part(e)) is not None]
    return dict(parts)


async def _forget_upload(gw: Gateway, bucket: str, key: str, upload_id: str) -> None:
    """Delete an upload's records; its parts' blocks stay (see doc/s3.md)."""
    await delete_prefix(gw.ds, keymap.parts_prefix(bucket, upload_id))
    await gw.ds.delete(keymap.upload_key(bucket, key, upload_id))


def _completed(bucket: str, key: str, meta: ObjectMeta) -> Response:
    """CompleteMultipartUpload's answer for the object it made."""
    assert meta.cid is not None
    resp = xml_response("CompleteMultipartUploadResult", [
        ("Location", f"/{bucket}/{key}"), ("Bucket", bucket), ("Key", key),
        ("ETag", quote_etag(meta.etag)), *_checksum_node(meta.checksum)])
    resp.headers.append((CID_HEADER, meta.cid))
    return resp


async def _retried(gw: Gateway, req: Request, route: Route) -> Response | None:
    """The answer to a CompleteMultipartUpload that already succeeded (a client
    retrying after a lost response): the object still made from that upload says so."""
    assert route.bucket is not None and route.key is not None
    upload_id = req.param("uploadId") or ""
    try:
        meta = (await find_object(gw.ds, gw.buckets, route.bucket, route.key,
                                  with_data=False)).meta
    except S3Error:
        return None
    if meta.upload_id != upload_id or meta.cid is None:
        return None
    return _completed(route.bucket, route.key, meta)


async def complete_upload(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None and route.key is not None
    try:
        upload_id, upload = await _upload(gw, req, route)
    except S3Error as e:
        if e.code != "NoSuchUpload" or (done := await _retried(gw, req, route)) is None:
            raise
        return done
    conditions = write_conditions(req)
    body = RequestBody(req, max_size=MAX_COMPLETE_BODY)
    raw = await body.read_all()
    body.verify()
    requested = _requested_parts(raw)
    numbers = [n for n, _, _ in requested]
    if any(a > b for a, b in itertools.pairwise(numbers)):
        raise S3Error("InvalidPartOrder", UploadId=upload_id)
    # a part named twice is the last one given (as S3 takes it)
    requested = list({n: (n, etag, sums) for n, etag, sums in requested}.values())
    records = await _part_records(gw, route.bucket, upload_id)
    chosen: list[PartRecord] = []
    for i, (number, etag, sums) in enumerate(requested):
        record = records.get(number)
        if record is None or record.etag != etag:
            raise S3Error("InvalidPart", UploadId=upload_id, PartNumber=str(number),
                          ETag=etag)
        if record.checksum and sums.get(record.checksum.algorithm) not in (
                None, record.checksum.value):
            raise S3Error("InvalidPart", "The checksum of a part does not match.",
                          UploadId=upload_id, PartNumber=str(number))
        if i < len(requested) - 1 and record.size < gw.settings.min_part_size:
            raise S3Error("EntityTooSmall", PartNumber=str(number), ProposedSize=str(
                record.size), MinSizeAllowed=str(gw.settings.min_part_size))
        chosen.append(record)
    joined = await concat_files(gw.ds, [AddedFile(r.cid, r.size) for r in chosen])
    md5s = b"".join(bytes.fromhex(r.etag) for r in chosen)
    etag = f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(chosen)}"
    sums = [r.checksum for r in chosen if r.checksum is not None]
    checksum = None
    if len(sums) == len(chosen) and len({c.algorithm for c in sums}) == 1:
        algorithm = sums[0].algorithm
        checksum = Checksum(algorithm, composite(algorithm, [c.value for c in sums]),
                            "COMPOSITE")
    meta = ObjectMeta(size=joined.size, etag=etag, mtime_ms=now_ms(), cid=joined.cid,
                      content_type=upload.content_type, headers=upload.headers,
                      user=upload.user, checksum=checksum, parts=len(chosen),
                      part_sizes=[r.size for r in chosen], upload_id=upload_id, acl=upload.acl)
    await check_write_conditions(gw, route.bucket, route.key, conditions)
    await commit(gw.ds, route.bucket, route.key, meta)
    await _forget_upload(gw, route.bucket, route.key, upload_id)
    return _completed(route.bucket, route.key, meta)


async def abort_upload(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None and route.key is not None
    upload_id, _ = await _upload(gw, req, route)
    await _forget_upload(gw, route.bucket, route.key, upload_id)
    return Response(204)


async def list_parts(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None and route.key is not None
    upload_id, upload = await _upload(gw, req, route)
    max_parts = min(req.count_param("max-parts", MAX_LIST), MAX_LIST)
    marker = req.count_param("part-number-marker", 0)
    q = Query(prefix=keymap.parts_prefix(route.bucket, upload_id), filters=(
        FilterKeyCompare(">", keymap.part_key(route.bucket, upload_id, marker)),))
    parts: list[Node] = []
    truncated, last = False, None
    async with open_query(gw.ds, q) as entries:
        async for e in entries:
            part = _part(e)
            if part is None:
                continue
            if len(parts) == max_parts:
                truncated = True
                break
            last, record = part
            parts.append(("Part", [
                ("PartNumber", last), ("LastModified", iso8601(record.mtime_ms)),
                ("ETag", quote_etag(record.etag)), ("Size", record.size),
                *_checksum_node(record.checksum),
            ]))
    return xml_response("ListPartsResult", [
        ("Bucket", route.bucket), ("Key", route.key), ("UploadId", upload_id),
        ("Initiator", shown_owner(gw, req)), ("Owner", shown_owner(gw, req)),
        ("StorageClass", "STANDARD"),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", last if truncated else None),
        ("MaxParts", max_parts), ("IsTruncated", truncated),
        ("ChecksumAlgorithm", upload.checksum_algorithm.upper()
         if upload.checksum_algorithm else None),
        *parts,
    ])


async def list_uploads(gw: Gateway, req: Request, route: Route) -> Response:
    """ListMultipartUploads, ordered by key and then by initiation (upload id)."""
    bucket = route.bucket
    assert bucket is not None
    owner = shown_owner(gw, req)
    max_uploads = min(req.count_param("max-uploads", MAX_LIST), MAX_LIST)
    prefix, delimiter = req.param("prefix") or "", req.param("delimiter") or ""
    key_marker, id_marker = req.param("key-marker") or "", req.param("upload-id-marker") or ""
    root = keymap.uploads_prefix(bucket) + "/"
    cursor = Cursor(gw.ds, keymap.uploads_prefix(bucket), values=True)
    start = root + keymap.order_code(prefix)
    if key_marker and delimiter and key_marker.endswith(delimiter):
        # a common prefix returned as NextKeyMarker: go on past everything under it
        after = successor(key_marker)
        start = max(start, root + keymap.order_code(after)) if after else root + "\uffff"
    elif key_marker:
        # "/" sorts just above the "." that ends a key's code: past all uploads of the key
        after = keymap.order_code(key_marker) + (f".{id_marker}\0" if id_marker else "/")
        start = max(start, root + after)
    uploads: list[Node] = []
    prefixes: list[str] = []
    truncated, last = False, None
    try:
        await cursor.seek(start)
        while (e := await cursor.next()) is not None:
            found = keymap.upload_from_suffix(e.key[len(root):])
            record = decode(UploadRecord, e.value)
            if found is None or record is None:
                continue
            key, upload_id = found
            if not key.startswith(prefix):
                break
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0 and prefixes and prefixes[-1] == key[:cut + len(delimiter)]:
                continue
            if len(uploads) + len(prefixes) == max_uploads:
                truncated = True
                break
            last = (key, upload_id)
            if cut >= 0:
                prefixes.append(key[:cut + len(delimiter)])
                continue
            uploads.append(("Upload", [
                ("Key", key), ("UploadId", upload_id), ("Initiator", owner), ("Owner", owner),
                ("StorageClass", "STANDARD"), ("Initiated", iso8601(record.initiated_ms))]))
    finally:
        await cursor.aclose()
    return xml_response("ListMultipartUploadsResult", [
        ("Bucket", bucket), ("KeyMarker", key_marker), ("UploadIdMarker", id_marker),
        ("NextKeyMarker", last[0] if truncated and last else None),
        ("NextUploadIdMarker", last[1] if truncated and last else None),
        ("Delimiter", delimiter or None), ("Prefix", prefix or None),
        ("MaxUploads", max_uploads), ("IsTruncated", truncated), *uploads,
        *[("CommonPrefixes", [("Prefix", p)]) for p in prefixes],
    ])

"""ListObjectsV2, ListObjects and ListObjectVersions (every object one "null" version),
page by page from the datastore's ordered query.

Theory of operation. A bucket's objects come from two key-ordered spaces (keymap.py):
natural keys under ``/B`` and escaped keys under ``/B/%``; each is walked by a
``Cursor`` over the data keys (keys and sizes only) joined with a second cursor over the
metadata keys, which are in the same order. ``ObjectStream`` merges the two spaces by
S3 key, which is S3's order (UTF-8 bytes compare like code points). A cursor can jump
forward: it reopens its query with ``FilterKeyCompare(">", k)``, which stores and the
cluster client turn into a seek. Listings seek to their start (prefix, start-after or
continuation token) and past a common prefix once it has swallowed ``ROLLUP_SEEK``
keys, so a page costs O(page) reads however large the bucket is.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

from ..datastore import Datastore
from ..query import Entry, FilterKeyCompare, Query
from . import keymap
from .acl import shown_owner
from .context import Gateway
from .errors import S3Error
from .http import Request, Response, quote_etag, xml_response
from .meta import ObjectMeta, decode
from .router import Route
from .xml import Node, iso8601

MAX_KEYS = 1000
# keys rolled up into one common prefix before the listing seeks past the rest of them
ROLLUP_SEEK = 32
_MAX_CHAR = 0x10FFFF


def successor(s: str) -> str | None:
    """The smallest string above every string that starts with ``s`` (None if none)."""
    while s:
        c = ord(s[-1])
        if c < _MAX_CHAR:
            c += 1
            if 0xD800 <= c <= 0xDFFF:  # surrogates are not characters
                c = 0xE000
            return s[:-1] + chr(c)
        s = s[:-1]
    return None


def just_before(s: str) -> str:
    """A string below ``s`` such that only absurd keys (ending in a run of U+10FFFF) lie
    between them: the ``>`` bound of a seek to ``s``; cursors drop what lies between."""
    if not s:
        return s
    c = ord(s[-1])
    if c == 0:
        return s[:-1]
    c -= 1
    if 0xD800 <= c <= 0xDFFF:
        c = 0xD7FF
    return s[:-1] + chr(c) + chr(_MAX_CHAR)


class Cursor:
    """The entries under a datastore prefix in key order, from a key that can move
    forward at any time (``seek``)."""

    def __init__(self, ds: Datastore, prefix: str, *, values: bool) -> None:
        self._ds = ds
        self._prefix = prefix
        self._values = values
        self._floor = ""
        self._entries: AsyncIterator[Entry] | None = None

    async def seek(self, at: str) -> None:
        """From now on, entries with keys >= ``at``."""
        await self.aclose()
        self._floor = at
        filters = (FilterKeyCompare(">", just_before(at)),) if at else ()
        self._entries = self._ds.query(Query(prefix=self._prefix, filters=filters,
                                             keys_only=not self._values,
                                             returns_sizes=True))

    async def next(self) -> Entry | None:
        if self._entries is None:
            await self.seek(self._floor)
        assert self._entries is not None
        async for e in self._entries:
            if e.key >= self._floor:
                return e
        return None

    async def aclose(self) -> None:
        aclose = getattr(self._entries, "aclose", None)
        if aclose is not None:
            await aclose()
        self._entries = None


@dataclass(frozen=True, slots=True)
class Listed:
    key: str  # the S3 key
    size: int
    meta: ObjectMeta | None  # None: no trustworthy record (written around the gateway)


class _KeySpace:
    """The objects of one key space of a bucket, data joined with metadata."""

    def __init__(self, ds: Datastore, bucket: str, *, escaped: bool) -> None:
        self._escaped = escaped
        self._data_root = keymap.data_prefix(bucket) + "/"
        self._meta_root = keymap.meta_prefix(bucket) + "/"
        data_prefix = keymap.escaped_prefix(bucket) if escaped else keymap.data_prefix(bucket)
        meta_prefix = self._meta_root + keymap.ESCAPE if escaped else keymap.meta_prefix(bucket)
        self._data = Cursor(ds, data_prefix, values=False)
        self._meta = Cursor(ds, meta_prefix, values=True)
        self._meta_head: Entry | None = None

    def _suffix(self, key: str) -> str:
        """The data-key suffix a seek to S3 key ``key`` goes to (any string works)."""
        return f"{keymap.ESCAPE}/{keymap.order_code(key)}" if self._escaped else key

    async def seek(self, key: str) -> None:
        suffix = self._suffix(key)
        await self._data.seek(self._data_root + suffix)
        await self._meta.seek(self._meta_root + suffix)
        self._meta_head = None

    def _in_escape_space(self, suffix: str) -> bool:
        return not self._escaped and (suffix == keymap.ESCAPE
                                      or suffix.startswith(keymap.ESCAPE + "/"))

    async def next(self) -> Listed | None:
        while True:
            e = await self._data.next()
            if e is None:
                return None
            suffix = e.key[len(self._data_root):]
            if self._in_escape_space(suffix):
                # the escaped keys are the other space's: jump over all of them
                await self.seek(keymap.ESCAPE + "0")
                continue
            key = keymap.key_from_suffix(suffix)
            if key is None:
                continue  # a datastore key no S3 key maps to
            meta = await self._meta_for(suffix)
            if meta is not None and not meta.describes(e.size):
                meta = None
            return Listed(key, meta.size if meta else e.size, meta)

    async def _meta_for(self, suffix: str) -> ObjectMeta | None:
        target = self._meta_root + suffix
        while True:
            if self._meta_head is None:
                self._meta_head = await self._meta.next()
                if self._meta_head is None:
                    return None
            head = self._meta_head
            if head.key >= target:
                if head.key > target:
                    return None
                self._meta_head = None
                return decode(ObjectMeta, head.value)
            self._meta_head = None
            if self._in_escape_space(head.key[len(self._meta_root):]):
                await self._meta.seek(self._meta_root + keymap.ESCAPE + "0")

    async def aclose(self) -> None:
        await self._data.aclose()
        await self._meta.aclose()


_UNREAD = object()


class ObjectStream:
    """Every object of a bucket in S3 key order; ``seek`` moves forward."""

    def __init__(self, ds: Datastore, bucket: str) -> None:
        self._spaces = [_KeySpace(ds, bucket, escaped=False), _KeySpace(ds, bucket, escaped=True)]
        self._heads: list[object] = [_UNREAD, _UNREAD]

    async def seek(self, key: str) -> None:
        for space in self._spaces:
            await space.seek(key)
        self._heads = [_UNREAD, _UNREAD]

    async def next(self) -> Listed | None:
        for i, space in enumerate(self._spaces):
            if self._heads[i] is _UNREAD:
                self._heads[i] = await space.next()
        live = [(h.key, i) for i, h in enumerate(self._heads) if isinstance(h, Listed)]
        if not live:
            return None
        _, i = min(live)
        head = self._heads[i]
        self._heads[i] = _UNREAD
        assert isinstance(head, Listed)
        return head

    async def aclose(self) -> None:
        for space in self._spaces:
            await space.aclose()


@dataclass
class Page:
    contents: list[Listed]
    prefixes: list[str]
    truncated: bool
    # the last key or common prefix returned, and whether it is a prefix
    last: tuple[str, bool] | None


async def list_page(
    ds: Datastore,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    after: str | None = None,
    after_prefix: bool = False,
    max_keys: int = MAX_KEYS,
) -> Page:
    """One page of a listing: objects whose keys start with ``prefix``, after ``after``
    (past everything under it when ``after_prefix``), keys that contain ``delimiter``
    past the prefix rolled up into common prefixes."""
    page = Page([], [], False, None)
    start: str | None = prefix
    if max_keys == 0:  # S3 answers an empty page that is not truncated
        return page
    if after is not None:
        bound = successor(after) if after_prefix else after + "\0"
        start = None if bound is None else max(prefix, bound)
    if start is None:
        return page
    stream = ObjectStream(ds, bucket)
    try:
        await stream.seek(start)
        count = rolled = 0
        while True:
            item = await stream.next()
            if item is None or not item.key.startswith(prefix):
                return page
            cut = item.key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                common = item.key[:cut + len(delimiter)]
                if page.last == (common, True):
                    rolled += 1
                    if rolled >= ROLLUP_SEEK:
                        nxt = successor(common)
                        if nxt is None:
                            return page
                        await stream.seek(nxt)
                        rolled = 0
                    continue
            if count == max_keys:
                page.truncated = True
                return page
            count += 1
            if cut >= 0:
                page.prefixes.append(common)
                page.last = (common, True)
                rolled = 0
            else:
                page.contents.append(item)
                page.last = (item.key, False)
    finally:
        await stream.aclose()


async def first_object(ds: Datastore, bucket: str) -> Listed | None:
    page = await list_page(ds, bucket, max_keys=1)
    return page.contents[0] if page.contents else None


# --- the two ListObjects endpoints ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Params:
    prefix: str
    delimiter: str
    max_keys: int
    url: bool  # encoding-type=url

    def enc(self, s: str | None) -> str | None:
        return quote(s, safe="/") if self.url and s is not None else s


def _params(req: Request) -> _Params:
    max_keys = min(req.count_param("max-keys", MAX_KEYS), MAX_KEYS)
    encoding = req.param("encoding-type")
    if encoding not in (None, "url"):
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      ArgumentName="encoding-type", ArgumentValue=encoding)
    return _Params(req.param("prefix") or "", req.param("delimiter") or "", max_keys,
                   encoding == "url")


def _is_common_prefix(p: _Params, key: str) -> bool:
    """Whether a marker names a common prefix of this listing (then the listing goes on
    past everything under it, not into it)."""
    if not p.delimiter or not key.startswith(p.prefix) or not key.endswith(p.delimiter):
        return False
    return key.find(p.delimiter, len(p.prefix)) == len(key) - len(p.delimiter)


def _object(item: Listed, owner: list[Node] | None) -> list[Node]:
    """The elements of one object in a listing, after its Key (and VersionId)."""
    meta = item.meta
    return [
        ("LastModified", iso8601(meta.mtime_ms if meta else 0)),
        ("ETag", quote_etag(meta.etag) if meta and meta.etag else None),
        ("Size", item.size),
        ("StorageClass", "STANDARD"),
        ("Owner", owner),
    ]


def _prefixes(p: _Params, page: Page) -> list[Node]:
    return [("CommonPrefixes", [("Prefix", p.enc(cp))]) for cp in page.prefixes]


def _contents(p: _Params, page: Page, owner: list[Node] | None) -> list[Node]:
    nodes: list[Node] = [("Contents", [("Key", p.enc(item.key)), *_object(item, owner)])
                         for item in page.contents]
    return nodes + _prefixes(p, page)


def encode_token(last: tuple[str, bool]) -> str:
    """An opaque continuation token: the last key (or common prefix) returned."""
    key, is_prefix = last
    return base64.urlsafe_b64encode(("p" if is_prefix else "k").encode() + key.encode()).decode()


def decode_token(token: str) -> tuple[str, bool]:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raw = ""
    if raw[:1] not in ("k", "p"):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                      ArgumentName="continuation-token")
    return raw[1:], raw[0] == "p"


async def list_objects_v2(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None
    p = _params(req)
    # an empty token is no token (some clients send the first page's "")
    token = req.param("continuation-token") or None
    start_after = req.param("start-after")
    after, after_prefix = None, False
    if token is not None:
        after, after_prefix = decode_token(token)
    elif start_after:
        after, after_prefix = start_after, _is_common_prefix(p, start_after)
    page = await list_page(gw.ds, route.bucket, prefix=p.prefix, delimiter=p.delimiter,
                           after=after, after_prefix=after_prefix, max_keys=p.max_keys)
    fetch_owner = (req.param("fetch-owner") or "").lower() == "true"
    return xml_response("ListBucketResult", [
        ("Name", route.bucket),
        ("Prefix", p.enc(p.prefix)),
        ("Delimiter", p.enc(p.delimiter) or None),
        ("MaxKeys", p.max_keys),
        ("KeyCount", len(page.contents) + len(page.prefixes)),
        ("IsTruncated", page.truncated),
        ("ContinuationToken", token),
        ("NextContinuationToken",
         encode_token(page.last) if page.truncated and page.last else None),
        ("StartAfter", p.enc(start_after)),
        ("EncodingType", "url" if p.url else None),
        *_contents(p, page, shown_owner(gw, req) if fetch_owner else None),
    ])


async def list_objects(gw: Gateway, req: Request, route: Route) -> Response:
    assert route.bucket is not None
    p = _params(req)
    marker = req.param("marker") or ""
    page = await list_page(gw.ds, route.bucket, prefix=p.prefix, delimiter=p.delimiter,
                           after=marker or None, after_prefix=_is_common_prefix(p, marker),
                           max_keys=p.max_keys)
    return xml_response("ListBucketResult", [
        ("Name", route.bucket),
        ("Prefix", p.enc(p.prefix)),
        ("Marker", p.enc(marker)),
        ("MaxKeys", p.max_keys),
        ("Delimiter", p.enc(p.delimiter) or None),
        ("IsTruncated", page.truncated),
        ("NextMarker", p.enc(page.last[0]) if page.truncated and page.last else None),
        ("EncodingType", "url" if p.url else None),
        *_contents(p, page, shown_owner(gw, req)),
    ])


async def list_object_versions(gw: Gateway, req: Request, route: Route) -> Response:
    """ListObjectVersions of a bucket that is never versioned: every object is one
    version, ``null``, the latest (what cleanup code that deletes every version of
    every object lists)."""
    assert route.bucket is not None
    p = _params(req)
    key_marker = req.param("key-marker") or ""
    version_marker = req.param("version-id-marker") or None
    if version_marker is not None:
        if not key_marker:
            raise S3Error("InvalidArgument", "A version-id marker cannot be specified "
                          "without a key marker.", ArgumentName="version-id-marker",
                          ArgumentValue=version_marker)
        keymap.check_version_id(version_marker, "version-id-marker")
    # each key has only the null version, so a version marker changes nothing: the
    # listing goes on after the key marker either way
    page = await list_page(gw.ds, route.bucket, prefix=p.prefix, delimiter=p.delimiter,
                           after=key_marker or None,
                           after_prefix=_is_common_prefix(p, key_marker),
                           max_keys=p.max_keys)
    last = page.last if page.truncated else None
    owner = shown_owner(gw, req)
    versions: list[Node] = [("Version", [
        ("Key", p.enc(item.key)), ("VersionId", keymap.NULL_VERSION), ("IsLatest", True),
        *_object(item, owner)]) for item in page.contents]
    return xml_response("ListVersionsResult", [
        ("Name", route.bucket),
        ("Prefix", p.enc(p.prefix)),
        ("KeyMarker", p.enc(key_marker)),
        ("VersionIdMarker", version_marker or ""),
        ("NextKeyMarker", p.enc(last[0]) if last else None),
        ("NextVersionIdMarker", keymap.NULL_VERSION if last and not last[1] else None),
        ("MaxKeys", p.max_keys),
        ("Delimiter", p.enc(p.delimiter) or None),
        ("IsTruncated", page.truncated),
        ("EncodingType", "url" if p.url else None),
        *versions,
        *_prefixes(p, page),
    ])

"""The gateway's view of HTTP: a parsed request, a response, and sending it over ASGI.

Headers stay in arrival order with lower-case names; values are decoded as latin-1 so
that every byte survives a round trip (S3 user metadata is returned exactly as sent).
The path is percent-decoded here, strictly as UTF-8, from the raw target: hypercorn's
own decoded ``path`` replaces bad bytes, which would let two raw paths name one key.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_plus, unquote_to_bytes

import trio

from .errors import S3Error
from .meta import BucketRecord
from .sigv4 import Authorized
from .xml import document

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SERVER = "dscluster"
# a count parameter (max-keys, ...) longer than a 64-bit integer always fits in is
# refused, as S3 refuses one out of integer range
MAX_COUNT_DIGITS = 18


def is_count(text: str, max_digits: int = MAX_COUNT_DIGITS) -> bool:
    """ASCII digits only, and few of them: "²" passes str.isdigit() but not int(), and
    int() refuses more than 4300 digits."""
    return 0 < len(text) <= max_digits and text.isascii() and text.isdigit()
_ETAG_RE = re.compile(r'\s*(W/)?"([^"]*)"\s*|\s*(\*)\s*')


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, UTF-8
    query_pairs: list[tuple[str, str]]
    # in arrival order; once authenticated, followed by a presigned URL's x-amz-* values
    headers: list[tuple[str, str]]
    receive: Receive
    request_id: str
    # the path as sent (percent-encoded), which Signature Version 2 signs
    raw_path: str = "/"
    auth: Authorized | None = None
    # the record of the bucket the request names, once the request is authorized
    bucket: BucketRecord | None = None
    # how much of the body has been received, and whether all of it
    body_received: int = 0
    body_done: bool = False

    async def receive_body(self) -> tuple[bytes, bool]:
        """The next piece of the body and whether more follows; IncompleteBody if the
        client went away."""
        msg = await self.receive()
        if msg["type"] != "http.request":
            self.body_done = True
            raise S3Error("IncompleteBody", "The client went away during the upload.")
        data: bytes = msg.get("body", b"")
        self.body_received += len(data)
        self.body_done = not msg.get("more_body", False)
        return data, not self.body_done

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)

    def param(self, name: str) -> str | None:
        return next((v for n, v in self.query_pairs if n == name), None)

    def count_param(self, name: str, default: int) -> int:
        """A non-negative integer query parameter (max-keys, part-number-marker, ...)."""
        raw = self.param(name)
        if raw is None:
            return default
        if not is_count(raw):
            raise S3Error("InvalidArgument", f"{name} must be a non-negative integer.",
                          ArgumentName=name, ArgumentValue=raw)
        return int(raw)

    @property
    def query(self) -> dict[str, list[str]]:
        q: dict[str, list[str]] = {}
        for n, v in self.query_pairs:
            q.setdefault(n, []).append(v)
        return q


@dataclass
class Response:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterable[bytes] = b""
    # required when ``body`` is streamed; for HEAD, the length a GET would send
    content_length: int | None = None


def parse_query(raw: str) -> list[tuple[str, str]]:
    """Query pairs as S3 reads them: "+" is a space, a bare name has value ""."""
    pairs = []
    for part in raw.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote_plus(name), unquote_plus(value)))
    return pairs


def parse_request(scope: Scope, receive: Receive, request_id: str) -> Request:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
        query = parse_query(scope.get("query_string", b"").decode("ascii"))
    except UnicodeDecodeError:
        raise S3Error("InvalidArgument", "The request URI is not valid UTF-8.") from None
    headers = [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in scope["headers"]]
    return Request(scope["method"].upper(), path, query, headers, receive, request_id,
                   raw_path.decode("latin-1"))


def http_date(ms: int) -> str:
    return formatdate(ms / 1000, usegmt=True)


def quote_etag(etag: str) -> str:
    return f'"{etag}"'


def etag_list(value: str) -> list[str]:
    """The entity tags of an If-Match / If-None-Match header ("*" stands for any)."""
    tags = []
    for part in value.split(","):
        m = _ETAG_RE.fullmatch(part)
        if m:
            tags.append(m.group(3) or m.group(2))
        elif part.strip():
            tags.append(part.strip())  # S3 clients sometimes send the bare tag
    return tags


def xml_response(root: str, nodes: Any, status: int = 200) -> Response:
    return Response(status, [("content-type", "application/xml")], document(root, nodes))


def error_response(err: S3Error, request_id: str, resource: str | None) -> Response:
    nodes = [("Code", err.code), ("Message", err.message)]
    nodes += [(k, v) for k, v in err.fields.items()]
    nodes += [("Resource", resource), ("RequestId", request_id), ("HostId", request_id)]
    resp = Response(err.status, [("content-type", "application/xml")],
                    document("Error", nodes, namespace=False))
    resp.headers += list(err.headers.items())
    return resp


async def send_response(send: Send, resp: Response, request_id: str, *, head: bool,
                        receive: Receive) -> None:
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in resp.headers]
    headers += [(b"x-amz-request-id", request_id.encode()), (b"x-amz-id-2", request_id.encode()),
                (b"server", SERVER.encode())]
    body = resp.body
    no_body = head or resp.status in (204, 304)
    if isinstance(body, bytes):
        length = resp.content_length if resp.content_length is not None else len(body)
    else:
        assert resp.content_length is not None, "a streamed body needs its length"
        length = resp.content_length
    if resp.status not in (204, 304):
        headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    if no_body or isinstance(body, bytes):
        await send({"type": "http.response.body", "body": b"" if no_body else body})
        return
    # a client that goes away stops the stream: no more blocks are read for nobody
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
        try:
            async for chunk in body:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        await send({"type": "http.response.body", "body": b""})
        nursery.cancel_scope.cancel()


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    """Wait for the client to go away (the request body was read before the answer)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()

"""The S3 router as a table: method, path, query (and copy source) -> endpoint."""

from __future__ import annotations

import pytest

from dscluster.s3.errors import S3Error
from dscluster.s3.router import Endpoint, Route, route

E = Endpoint
CASES = [
    ("GET", "/", "", False, Route(E.LIST_BUCKETS)),
    ("PUT", "/b", "", False, Route(E.CREATE_BUCKET, "b")),
    ("PUT", "/b/", "", False, Route(E.CREATE_BUCKET, "b")),
    ("HEAD", "/b", "", False, Route(E.HEAD_BUCKET, "b")),
    ("HEAD", "/b/", "", False, Route(E.HEAD_BUCKET, "b")),  # blockstore-s3's open()
    ("DELETE", "/b", "", False, Route(E.DELETE_BUCKET, "b")),
    ("GET", "/b", "", False, Route(E.LIST_OBJECTS, "b")),
    ("GET", "/b", "list-type=2&prefix=x", False, Route(E.LIST_OBJECTS_V2, "b")),
    ("GET", "/b", "location", False, Route(E.GET_BUCKET_LOCATION, "b")),
    ("GET", "/b", "versioning", False, Route(E.GET_BUCKET_VERSIONING, "b")),
    ("GET", "/b", "versions&key-marker=k", False, Route(E.LIST_OBJECT_VERSIONS, "b")),
    ("GET", "/b", "uploads", False, Route(E.LIST_MULTIPART_UPLOADS, "b")),
    ("POST", "/b", "delete", False, Route(E.DELETE_OBJECTS, "b")),
    ("PUT", "/b/k", "", False, Route(E.PUT_OBJECT, "b", "k")),
    ("PUT", "/b/k", "x-id=PutObject", False, Route(E.PUT_OBJECT, "b", "k")),
    ("PUT", "/b/k", "", True, Route(E.COPY_OBJECT, "b", "k")),
    ("GET", "/b/k", "", False, Route(E.GET_OBJECT, "b", "k")),
    ("GET", "/b/a//b/", "", False, Route(E.GET_OBJECT, "b", "a//b/")),
    ("GET", "/b//k", "", False, Route(E.GET_OBJECT, "b", "/k")),
    ("GET", "/b/k", "X-Amz-Signature=x&response-content-type=a", False,
     Route(E.GET_OBJECT, "b", "k")),
    ("HEAD", "/b/k", "", False, Route(E.HEAD_OBJECT, "b", "k")),
    ("DELETE", "/b/k", "", False, Route(E.DELETE_OBJECT, "b", "k")),
    ("POST", "/b/k", "uploads", False, Route(E.CREATE_MULTIPART_UPLOAD, "b", "k")),
    ("PUT", "/b/k", "partNumber=1&uploadId=u", False, Route(E.UPLOAD_PART, "b", "k")),
    ("PUT", "/b/k", "partNumber=1&uploadId=u", True, Route(E.UPLOAD_PART_COPY, "b", "k")),
    ("POST", "/b/k", "uploadId=u", False, Route(E.COMPLETE_MULTIPART_UPLOAD, "b", "k")),
    ("DELETE", "/b/k", "uploadId=u", False, Route(E.ABORT_MULTIPART_UPLOAD, "b", "k")),
    ("GET", "/b/k", "uploadId=u", False, Route(E.LIST_PARTS, "b", "k")),
    ("GET", "/b", "acl", False, Route(E.GET_BUCKET_ACL, "b")),
    ("PUT", "/b", "acl", False, Route(E.PUT_BUCKET_ACL, "b")),
    ("GET", "/b/k", "acl&versionId=null", False, Route(E.GET_OBJECT_ACL, "b", "k")),
    ("PUT", "/b/k", "acl", False, Route(E.PUT_OBJECT_ACL, "b", "k")),
]
ERRORS = [
    ("POST", "/", "", "MethodNotAllowed"),
    ("PUT", "/", "", "MethodNotAllowed"),
    ("PATCH", "/b/k", "", "MethodNotAllowed"),
    ("POST", "/b/k", "", "MethodNotAllowed"),
    ("GET", "/b", "cors", "NotImplemented"),
    ("POST", "/b", "acl", "MethodNotAllowed"),
    ("PUT", "/b/k", "tagging", "NotImplemented"),
    ("GET", "/b", "list-type=1", "InvalidArgument"),
    ("DELETE", "/b", "delete", "MethodNotAllowed"),
]


def _query(q: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in filter(None, q.split("&")):
        name, _, value = part.partition("=")
        out.setdefault(name, []).append(value)
    return out


@pytest.mark.parametrize(("method", "path", "query", "copy", "expected"), CASES)
def test_routes(method: str, path: str, query: str, copy: bool, expected: Route) -> None:
    assert route(method, path, _query(query), copy_source=copy) == expected


@pytest.mark.parametrize(("method", "path", "query", "code"), ERRORS)
def test_route_errors(method: str, path: str, query: str, code: str) -> None:
    with pytest.raises(S3Error) as e:
        route(method, path, _query(query))
    assert e.value.code == code


def test_every_endpoint_is_routed() -> None:
    assert {c[4].endpoint for c in CASES} == set(Endpoint)

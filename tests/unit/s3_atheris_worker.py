"""Subprocess of the S3 fuzz soak tests: libFuzzer (through atheris) on one request
parser of the S3 gateway.

    python s3_atheris_worker.py TARGET [libFuzzer options, e.g. -max_total_time=60]

TARGET is authenticate, xml, chunked, range or request. Any exception but S3Error is a
crash: libFuzzer prints it, writes the input next to its -artifact_prefix and exits
non-zero. libFuzzer ends the process itself, hence a process of its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import atheris

with atheris.instrument_imports():
    from dscluster.s3 import sigv4
    from dscluster.s3.chunked import AwsChunkedDecoder
    from dscluster.s3.errors import S3Error
    from dscluster.s3.http import parse_request
    from dscluster.s3.objects import parse_range
    from dscluster.s3.router import route
    from dscluster.s3.xml import parse

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
AMZ_NOW = NOW.strftime(sigv4.AMZ_DATE_FORMAT)
SCOPE = f"{AMZ_NOW[:8]}/us-east-1/s3/aws4_request"
KEY = sigv4.signing_key("secret", AMZ_NOW[:8], "us-east-1")
NAMES = ["host", "authorization", "x-amz-date", "date", "x-amz-content-sha256",
         "content-length", "x-amz-copy-source", "x-amz-meta-a", "X-Amz-Algorithm",
         "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
         "X-Amz-Signature", "uploadId", "uploads", "delete", "list-type"]


def _pairs(fdp: Any) -> list[tuple[str, str]]:
    return [(fdp.PickValueInList(NAMES) if fdp.ConsumeBool() else fdp.ConsumeUnicode(8),
             fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 80)))
            for _ in range(fdp.ConsumeIntInRange(0, 8))]


def authenticate(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    method = fdp.PickValueInList(["GET", "PUT", "POST"])
    path = "/" + fdp.ConsumeUnicode(20)
    headers = [(n.lower(), v) for n, v in _pairs(fdp)]
    query = _pairs(fdp)
    sigv4.authenticate(method, path, query, headers,
                       secret_for=lambda k: "secret" if k == "AKID" else None,
                       allow_anonymous=fdp.ConsumeBool(), now=NOW)
    route(method, path, {k: [v] for k, v in query})


def xml(data: bytes) -> None:
    parse(data)


def chunked(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    signed = fdp.ConsumeBool()
    chain = sigv4.ChunkChain(sigv4.SigningContext(KEY, AMZ_NOW, SCOPE, "0" * 64))
    dec = AwsChunkedDecoder(chain if signed else None, signed_trailer=fdp.ConsumeBool())
    while fdp.remaining_bytes():
        dec.feed(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64)))
    dec.close()


def range_(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    parse_range(fdp.ConsumeUnicode(200), fdp.ConsumeIntInRange(0, 1 << 20))


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


def request(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    scope = {"method": "GET", "path": "/", "raw_path": fdp.ConsumeBytes(60),
             "query_string": fdp.ConsumeBytes(60),
             "headers": [(fdp.ConsumeBytes(10), fdp.ConsumeBytes(20)) for _ in range(3)]}
    parse_request(scope, _no_body, "ID")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "authenticate": authenticate, "xml": xml, "chunked": chunked, "range": range_,
    "request": request,
}


def main() -> None:
    target = TARGETS[sys.argv[1]]

    def one(data: bytes) -> None:
        try:
            target(data)
        except S3Error:
            pass

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

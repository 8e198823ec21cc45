"""Metrics and the access log of the S3 gateway: an ASGI middleware around S3App.

Each HTTP request gets its ``Access`` record here, in the ASGI scope under
``ACCESS_SCOPE``: the request id is made here, once, and the app uses the same one in
``x-amz-request-id`` and the error XML's ``<RequestId>``; the app fills in what only it
knows (operation, bucket, key, access key id). The middleware counts the body bytes
each way and the status, and when the response is over writes one line on
``dscluster.s3.access`` and one observation to the node's metrics. While the request
runs, ``logs.request_id`` holds its id, so every gateway log line it causes carries it.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..logs import request_id
from ..metrics import NodeMetrics
from .http import Receive, Scope, Send

access_log = logging.getLogger("dscluster.s3.access")
ACCESS_SCOPE = "dscluster.s3.access"
UNROUTED = "-"  # a request refused before it was routed (bad path, bad signature…)


@dataclass(slots=True)
class Access:
    request_id: str
    operation: str = UNROUTED
    bucket: str | None = None
    key: str | None = None
    access_key: str | None = None

    @classmethod
    def new(cls) -> Access:
        return cls(secrets.token_hex(8).upper())


class Observed:
    """``app`` with the node's S3 metrics and one access-log line per request."""

    def __init__(self, app: Any, metrics: NodeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        access = Access.new()
        start = time.perf_counter()
        received = sent = status = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            msg = await receive()
            received += len(msg.get("body", b""))
            return msg

        async def counting_send(msg: dict[str, Any]) -> None:
            nonlocal sent, status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            elif msg["type"] == "http.response.body":
                sent += len(msg.get("body", b""))
            await send(msg)

        token = request_id.set(access.request_id)
        try:
            await self.app({**scope, ACCESS_SCOPE: access}, counting_receive, counting_send)
        finally:
            seconds = time.perf_counter() - start
            # status 0: the client went away before any response was started
            self.metrics.s3_request(access.operation, status, seconds, received, sent)
            access_log.info(
                "%s %s %s/%s %d in=%d out=%d %.3fs", access.access_key or "-",
                access.operation, access.bucket or "-", access.key or "", status,
                received, sent, seconds,
                extra={"request_id": access.request_id, "access_key": access.access_key,
                       "operation": access.operation,
                       "bucket": access.bucket, "key": access.key, "status": status,
                       "bytes_in": received, "bytes_out": sent,
                       "duration": round(seconds, 6)})
            request_id.reset(token)

"""The metrics port: ``/metrics`` (Prometheus text), ``/healthz`` and ``/readyz``.

An ASGI app of three routes served by hypercorn, as the S3 gateway is, so no HTTP is
written by hand. ``/healthz`` answers 200 while the process serves at all; ``/readyz``
asks the node (``ready``: None when ready, else a one-line reason) and answers 503 with
the reason while the node cannot serve its slots yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from .metrics import CONTENT_TYPE, NodeMetrics
from .s3.settings import parse_listen

log = logging.getLogger(__name__)
TEXT = b"text/plain; charset=utf-8"

Ready = Callable[[], str | None]


class HealthApp:
    def __init__(self, metrics: NodeMetrics, ready: Ready) -> None:
        self.metrics = metrics
        self.ready = ready

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        status, ctype, body = await self._answer(scope["method"], scope["path"])
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})

    async def _answer(self, method: str, path: str) -> tuple[int, bytes, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, TEXT, b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE.encode(), await self.metrics.render()
        if path == "/healthz":
            return 200, TEXT, b"ok\n"
        if path == "/readyz":
            reason = self.ready()
            return (200, TEXT, b"ready\n") if reason is None else (
                503, TEXT, reason.encode() + b"\n")
        return 404, TEXT, b"not found: /metrics, /healthz, /readyz\n"


async def serve_health(
    listen: str, metrics: NodeMetrics, ready: Ready, *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the metrics port on ``listen`` (HOST:PORT) until cancelled;
    ``task_status.started`` gets the bound address."""
    # here, so that a node without a metrics port does not load the HTTP stack
    from hypercorn.config import Config
    from hypercorn.trio import serve

    host, port = parse_listen(listen)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = log
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, HealthApp(metrics, ready), config))
        # hypercorn reports URLs ("http://127.0.0.1:9100"); callers log HOST:PORT
        task_status.started(binds[0].removeprefix("http://"))

"""Serving the gateway: hypercorn's trio worker running the ASGI app (app.py).

hypercorn does the HTTP/1.1 (and h2) parsing, keep-alive, ``Expect: 100-continue`` and
back-pressure: it hands the app request bodies through a bounded queue, so a slow
datastore slows the client down instead of filling memory.
"""

from __future__ import annotations

import logging
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ..datastore import Datastore
from .app import S3App
from .settings import S3Settings, parse_listen

log = logging.getLogger("dscluster.s3")

# S3 clients keep pooled connections open between requests
KEEP_ALIVE_SECONDS = 60
# a client that sends nothing for this long in the middle of a request is dropped
READ_TIMEOUT_SECONDS = 120
GRACEFUL_SHUTDOWN_SECONDS = 5


def hypercorn_config(settings: S3Settings) -> Config:
    host, port = parse_listen(settings.listen)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.read_timeout = READ_TIMEOUT_SECONDS
    config.graceful_timeout = GRACEFUL_SHUTDOWN_SECONDS
    config.include_server_header = False  # the app sends its own
    config.accesslog = None
    config.errorlog = log
    if settings.tls_cert and settings.tls_key:
        config.certfile = settings.tls_cert
        config.keyfile = settings.tls_key
    return config


async def serve_s3(
    ds: Datastore,
    settings: S3Settings,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the S3 API over ``ds`` until cancelled; ``task_status.started`` gets the
    bound "host:port" (the real port when settings.listen asks for port 0)."""
    app = S3App(ds, settings)
    config = hypercorn_config(settings)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=trio.sleep_forever, mode="asgi"))
        task_status.started(binds[0].split("://", 1)[1])

"""Serving the gateway: hypercorn's HTTP protocol code running the ASGI app (app.py),
behind an accept loop of ours that bounds connections.

hypercorn does the HTTP/1.1 (and h2) parsing, keep-alive, ``Expect: 100-continue`` and
back-pressure: it hands the app request bodies through a bounded queue, so a slow
datastore slows the client down instead of filling memory.

Its trio worker, though, accepts every connection, gives one that never completes a
request head the whole keep-alive time, and waits forever for a client that stops
reading a response; a flood of slow connections then takes every file descriptor of the
node, its store's included. So ``serve_s3`` runs hypercorn's per-connection ``TCPServer``
from its own loop:

- ``max_connections`` slots: a slot is taken before each ``accept``, so when all are in
  use new connections wait in the kernel's listen backlog and cost this process nothing;
- a new connection has ``header_timeout`` to complete its first request head (and the
  TLS handshake); between requests it may idle ``KEEP_ALIVE_SECONDS``, and once a byte of
  the next request arrived its head must be complete within ``header_timeout``;
- in a request, ``read_timeout`` bounds every wait for the client, reading and writing
  (hypercorn's own read timeout would also cut keep-alive short, so it is not set).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.events import Event, Updated
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr

from ..cluster.credentials import CredentialBook
from ..datastore import Datastore
from ..metrics import NodeMetrics
from .app import gateway_app
from .reasons import use_reason_phrases
from .settings import S3Settings, parse_listen

log = logging.getLogger("dscluster.s3")

# S3 clients keep pooled connections open between requests
KEEP_ALIVE_SECONDS = 60
# connections waiting for a free slot, queued by the kernel
BACKLOG = 128


def hypercorn_config(settings: S3Settings) -> Config:
    host, port = parse_listen(settings.listen)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.backlog = BACKLOG
    config.keep_alive_timeout = KEEP_ALIVE_SECONDS
    config.ssl_handshake_timeout = settings.header_timeout
    config.include_server_header = False  # the app sends its own
    config.accesslog = None
    config.errorlog = log
    if settings.tls_cert and settings.tls_key:
        config.certfile = settings.tls_cert
        config.keyfile = settings.tls_key
    return config


class _WatchedStream:
    """A connection's stream that notes when bytes arrive and bounds every wait for the
    client in a request (not between requests: the idle timeout does that) to
    ``timeout``; the rest is the stream's own."""

    def __init__(self, stream: Any, timeout: float) -> None:
        self._stream = stream
        self._timeout = timeout
        self._idle = True
        self._receiving: trio.CancelScope | None = None
        self.arrived = trio.Event()

    def __getattr__(self, name: str) -> Any:
        # hypercorn tells TLS from plain streams by their attributes
        return getattr(self._stream, name)

    def _deadline(self) -> float:
        return math.inf if self._idle else trio.current_time() + self._timeout

    def set_idle(self, idle: bool) -> None:
        self._idle = idle
        if idle:
            self.arrived = trio.Event()
            if self._receiving is None:
                # hypercorn stopped reading: it holds bytes of the next request already
                self.arrived.set()
        if self._receiving is not None:  # a read may be waiting already
            self._receiving.deadline = self._deadline()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        with trio.CancelScope(deadline=self._deadline()) as scope:
            self._receiving = scope
            try:
                data = await self._stream.receive_some(max_bytes)
            finally:
                self._receiving = None
        if scope.cancelled_caught:
            raise trio.TooSlowError  # hypercorn ends the connection on it
        if data:
            self.arrived.set()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # hypercorn shields its writes from cancellation; this deadline still applies
        with trio.move_on_after(self._timeout) as scope:
            await self._stream.send_all(data)
        if scope.cancelled_caught:
            # closing also ends hypercorn's pending read, so the connection goes now
            await trio.aclose_forcefully(self._stream)
            raise trio.BrokenResourceError("the client stopped reading the response")


class _Connection(TCPServer):
    """hypercorn's connection handler with the timeouts described above.

    hypercorn reports the connection idle (``Updated``) from its start and after each
    response, busy once a request head is complete, and runs ``_idle_timeout`` while it
    is idle; whatever it returns from closes the connection.
    """

    def __init__(self, app: ASGIWrapper, config: Config, context: WorkerContext,
                 stream: trio.abc.Stream, settings: S3Settings) -> None:
        self._watched = _WatchedStream(stream, settings.read_timeout)
        super().__init__(app, config, context, ConnectionState({}), self._watched)
        self._header_timeout = settings.header_timeout
        self._fresh = True

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Updated):
            self._watched.set_idle(event.idle)
        await super().protocol_send(event)

    async def _idle_timeout(self) -> None:
        fresh, self._fresh = self._fresh, False
        if not fresh:
            with trio.move_on_after(self.config.keep_alive_timeout):
                await self._watched.arrived.wait()
        if fresh or self._watched.arrived.is_set():
            await trio.sleep(self._header_timeout)
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()


class _SlotListener(trio.abc.Listener[trio.abc.Stream]):
    """Accepts only while a connection slot is free; the connection's handler gives the
    slot back."""

    def __init__(self, listener: trio.abc.Listener[trio.abc.Stream],
                 slots: trio.Semaphore) -> None:
        self._listener = listener
        self._slots = slots

    async def accept(self) -> trio.abc.Stream:
        await self._slots.acquire()
        try:
            return await self._listener.accept()
        except BaseException:
            self._slots.release()
            raise

    async def aclose(self) -> None:
        await self._listener.aclose()


async def serve_s3(
    ds: Datastore,
    settings: S3Settings,
    *,
    metrics: NodeMetrics | None = None,
    credentials: CredentialBook | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the S3 API over ``ds`` until cancelled; ``task_status.started`` gets the
    bound "host:port" (the real port when settings.listen asks for port 0).
    ``credentials``: the cluster's S3 keys, besides those in ``settings``."""
    use_reason_phrases()
    app = ASGIWrapper(gateway_app(ds, settings, metrics or NodeMetrics(), credentials))
    config = hypercorn_config(settings)
    context = WorkerContext(None)
    sockets = config.create_sockets()
    socks = sockets.secure_sockets or sockets.insecure_sockets
    ssl_context = config.create_ssl_context() if sockets.secure_sockets else None
    slots = trio.Semaphore(settings.connection_limit())
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
    for sock in socks:
        sock.listen(config.backlog)
        listener: trio.abc.Listener[Any] = trio.SocketListener(
            trio.socket.from_stdlib_socket(sock))
        if ssl_context is not None:
            listener = trio.SSLListener(listener, ssl_context, https_compatible=True)
        listeners.append(_SlotListener(listener, slots))

    async def handle(stream: trio.abc.Stream) -> None:
        try:
            await _Connection(app, config, context, stream, settings).run()
        finally:
            slots.release()

    bound = repr_socket_addr(socks[0].family, socks[0].getsockname())
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(bound)

"""Reason phrases on the gateway's HTTP/1.1 status lines.

hypercorn sends its h11 responses without one (``HTTP/1.1 200 \\r\\n``): ASGI has no
field for it. HTTP allows an empty phrase, but clients show it in their errors and
some expect it (``403 Forbidden``, not ``403``), as every S3 server sends it. So the
gateway's HTTP/1.1 connections run an ``H11Protocol`` that fills in the standard phrase
(``http.HTTPStatus``). hypercorn's ``ProtocolWrapper`` builds that protocol by its name
in ``hypercorn.protocol``, the one place another class can be given to it; HTTP/2 has
no reason phrases.
"""

from __future__ import annotations

import dataclasses
from http import HTTPStatus

import h11
import hypercorn.protocol
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import H11SendableEvent


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""  # a status without a registered phrase keeps none


class _H11WithReasons(H11Protocol):
    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        if isinstance(event, h11.Response | h11.InformationalResponse) and not event.reason:
            event = dataclasses.replace(event, reason=reason_phrase(event.status_code))
        await super()._send_h11_event(event)


def use_reason_phrases() -> None:
    """Make hypercorn's HTTP/1.1 connections send reason phrases (idempotent)."""
    hypercorn.protocol.H11Protocol = _H11WithReasons  # type: ignore[misc]

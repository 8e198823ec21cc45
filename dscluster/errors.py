"""One error hierarchy for the whole system.

Every error that can cross the wire has a stable string ``code``; ``ERRORS_BY_CODE`` is
the single table that turns a wire error back into the same exception class on the
other side (the conversion happens once, where frames are received). Front ends (CLIs,
the S3 gateway) map these classes to their own exit codes and HTTP statuses.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DSClusterError(Exception):
    """Base class of every error dscluster raises on purpose."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str = "", **detail: Any) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class NotFound(DSClusterError):
    """key not found"""

    code = "not_found"


class InvalidArgument(DSClusterError):
    """invalid argument"""

    code = "invalid_argument"


class InvalidKey(InvalidArgument):
    """invalid key"""

    code = "invalid_key"


class TooLarge(InvalidArgument):
    """value or request too large"""

    code = "too_large"


class Unauthorized(DSClusterError):
    """peer is not authorised"""

    code = "unauthorized"


class Forbidden(DSClusterError):
    """operation not allowed for this peer or node"""

    code = "forbidden"


class Redirect(DSClusterError):
    """slot is served by another node (like Redis Cluster's MOVED)

    detail: slot, epoch (the answering node's map epoch), owner (peer id or None)
    """

    code = "moved"

    @property
    def epoch(self) -> int:
        return int(self.detail.get("epoch", 0))

    @property
    def slot(self) -> int:
        return int(self.detail.get("slot", -1))


class Unavailable(DSClusterError):
    """a node or slot range cannot be reached"""

    code = "unavailable"


class CatchingUp(Unavailable):
    """the node has not caught up with the other owners since it started"""

    code = "catching_up"


class ProtocolError(DSClusterError):
    """the peer broke the wire protocol"""

    code = "protocol_error"


class LocalProtocolError(ProtocolError):
    """we were about to send something the protocol does not allow"""


class RemoteProtocolError(ProtocolError):
    """the peer sent something the protocol does not allow"""


class StoreError(DSClusterError):
    """the local store failed"""

    code = "store_error"


class ConfigError(DSClusterError):
    """configuration is missing or invalid"""

    code = "config_error"


class ClusterError(DSClusterError):
    """cluster membership or map error"""

    code = "cluster_error"


class InternalError(DSClusterError):
    """internal error"""

    code = "internal"


ERRORS_BY_CODE: dict[str, type[DSClusterError]] = {
    cls.code: cls
    for cls in (
        CatchingUp,
        NotFound,
        InvalidArgument,
        InvalidKey,
        TooLarge,
        Unauthorized,
        Forbidden,
        Redirect,
        Unavailable,
        ProtocolError,
        StoreError,
        ConfigError,
        ClusterError,
        InternalError,
    )
}


def error_from_wire(
    code: str, message: str, detail: dict[str, Any] | None = None
) -> DSClusterError:
    """Rebuild the exception a peer reported (unknown codes become InternalError)."""
    cls = ERRORS_BY_CODE.get(code, InternalError)
    return cls(message, **(detail or {}))

"""Wire messages: frozen, slotted, keyword-only dataclasses that validate when built.

On the wire a message is the msgpack array ``[TYPE, field1, field2, ...]`` in field
order. Each field declares its wire shape in ``SHAPES``; ``decode_message`` checks the
shape of everything a peer sends, so nothing malformed gets past the codec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ..errors import LocalProtocolError, RemoteProtocolError

# 2: handshake proofs length-prefix their fields (auth.py), nonces and proofs are 32 bytes
PROTOCOL_VERSION = 2
NONCE_BYTES = 32
PROOF_BYTES = 32  # HMAC-SHA256


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bytes_of(n: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, bytes) and len(v) == n


_CHECKS = {
    "int": _is_int,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bytes": lambda v: isinstance(v, bytes),
    "str?": lambda v: v is None or isinstance(v, str),
    "bytes?": lambda v: v is None or isinstance(v, bytes),
    # nonces and proofs: anything shorter or longer is refused before it is used
    **{f"bytes[{n}]": _bytes_of(n) for n in (NONCE_BYTES, PROOF_BYTES)},
    "list": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
    "dict?": lambda v: v is None or isinstance(v, dict),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    TYPE: ClassVar[int] = 0
    # "request", "response", or a handshake step; used by the state table
    KIND: ClassVar[str] = ""
    SHAPES: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f, shape in zip(fields(self), self.SHAPES, strict=True):
            if not _CHECKS[shape](getattr(self, f.name)):
                raise LocalProtocolError(
                    f"{type(self).__name__}.{f.name} must be {shape}, "
                    f"got {type(getattr(self, f.name)).__name__}"
                )

    def to_wire(self) -> list[Any]:
        return [self.TYPE, *(getattr(self, f.name) for f in fields(self))]


# --- handshake -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    """Opens a stream: who the caller is and which credential it proves."""

    TYPE = 1
    KIND = "hello"
    SHAPES = ("int", "str", f"bytes[{NONCE_BYTES}]")
    version: int = PROTOCOL_VERSION
    role: str  # "node", "client" or "readonly"
    nonce: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge(Message):
    """The server's nonce and its own proof that it holds the cluster secret."""

    TYPE = 2
    KIND = "challenge"
    SHAPES = (f"bytes[{NONCE_BYTES}]", f"bytes[{PROOF_BYTES}]")
    nonce: bytes
    proof: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth(Message):
    TYPE = 3
    KIND = "auth"
    SHAPES = (f"bytes[{PROOF_BYTES}]",)
    proof: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome(Message):
    TYPE = 4
    KIND = "welcome"
    SHAPES = ("int", "int", "str")
    epoch: int
    node_index: int
    role: str


# --- requests --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Get(Message):
    TYPE = 10
    KIND = "request"
    SHAPES = ("str",)
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Has(Message):
    TYPE = 11
    KIND = "request"
    SHAPES = ("str",)
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSize(Message):
    TYPE = 12
    KIND = "request"
    SHAPES = ("str",)
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Put(Message):
    TYPE = 13
    KIND = "request"
    SHAPES = ("str", "bytes")
    key: str
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete(Message):
    TYPE = 14
    KIND = "request"
    SHAPES = ("str",)
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch(Message):
    """``ops`` is a list of ``[key, value]`` (value None = delete), distinct keys."""

    TYPE = 15
    KIND = "request"
    SHAPES = ("list",)
    ops: list[Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckBatch(Message):
    """The ops of a Batch, checked as Batch would check them but not applied: a client
    asks every node before applying a batch that spans several."""

    TYPE = 22
    KIND = "request"
    SHAPES = ("list",)
    ops: list[Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Query(Message):
    """One page of a key-ordered scan; the next page is another Query from the cursor."""

    TYPE = 16
    KIND = "request"
    SHAPES = ("str", "str?", "bool", "int", "bool", "list")
    prefix: str
    start_after: str | None = None
    reverse: bool = False
    limit: int
    keys_only: bool = False
    filters: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sync(Message):
    TYPE = 17
    KIND = "request"
    SHAPES = ("str",)
    prefix: str = "/"


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskUsage(Message):
    TYPE = 18
    KIND = "request"


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats(Message):
    TYPE = 19
    KIND = "request"


@dataclass(frozen=True, slots=True, kw_only=True)
class GetMap(Message):
    """Ask for the cluster map; answered with ``map=None`` if ``known_epoch`` is current."""

    TYPE = 20
    KIND = "request"
    SHAPES = ("int",)
    known_epoch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Join(Message):
    """A node claims member ``index`` of the map and announces its addresses."""

    TYPE = 21
    KIND = "request"
    SHAPES = ("int", "list")
    index: int
    addrs: list[Any]


# --- responses -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Ok(Message):
    TYPE = 40
    KIND = "response"


@dataclass(frozen=True, slots=True, kw_only=True)
class Value(Message):
    TYPE = 41
    KIND = "response"
    SHAPES = ("bytes",)
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Bool(Message):
    TYPE = 42
    KIND = "response"
    SHAPES = ("bool",)
    value: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Size(Message):
    TYPE = 43
    KIND = "response"
    SHAPES = ("int",)
    value: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryPage(Message):
    """``entries`` are ``[key, value or None, size]``; ``cursor`` None is end-of-stream."""

    TYPE = 44
    KIND = "response"
    SHAPES = ("list", "str?")
    entries: list[Any]
    cursor: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MapData(Message):
    TYPE = 45
    KIND = "response"
    SHAPES = ("dict?",)
    map: dict[str, Any] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsData(Message):
    TYPE = 46
    KIND = "response"
    SHAPES = ("dict",)
    stats: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Message):
    """Any request or handshake step may be answered with an Error."""

    TYPE = 47
    KIND = "error"
    SHAPES = ("str", "str", "dict")
    code: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello, Challenge, Auth, Welcome,
        Get, Has, GetSize, Put, Delete, Batch, CheckBatch, Query, Sync, DiskUsage, Stats, GetMap,
        Join,
        Ok, Value, Bool, Size, QueryPage, MapData, StatsData, Error,
    )
}


def decode_message(obj: Any) -> Message:
    """Build the message a peer sent from its decoded msgpack array."""
    if not isinstance(obj, list) or not obj or not _is_int(obj[0]):
        raise RemoteProtocolError("a frame must hold [type, fields...]")
    cls = MESSAGE_TYPES.get(obj[0])
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {obj[0]}")
    names = [f.name for f in fields(cls)]
    if len(obj) - 1 != len(names):
        raise RemoteProtocolError(
            f"{cls.__name__} has {len(names)} fields, frame has {len(obj) - 1}"
        )
    try:
        return cls(**dict(zip(names, obj[1:], strict=True)))
    except LocalProtocolError as e:
        raise RemoteProtocolError(str(e)) from None

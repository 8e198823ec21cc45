"""Wire messages: frozen, slotted, keyword-only dataclasses that validate when built.

On the wire a message is the msgpack array ``[TYPE, field1, field2, ...]`` in field
order. Each field declares its wire shape in ``SHAPES``; ``decode_message`` checks the
shape of everything a peer sends, so nothing malformed gets past the codec.

Fields added to a message after its first protocol version come last, and the message
says where they start (``ADDED``). They are left off the wire while they hold their
default, so a peer of an older version still reads the message as long as the new
feature is not used (a rolling upgrade), and a frame without them decodes to their
defaults.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NamedTuple

from ..errors import LocalProtocolError, RemoteProtocolError

# 2: handshake proofs length-prefix their fields (auth.py), nonces and proofs are 32 bytes
# 3: replication: versioned reads and writes, hints, slot digests, slot queries; the
#    unversioned Get/Has/GetSize/Put/Delete/Batch/Query of version 2 are gone
# 4: slot moves and membership changes: Rebalance, the writer's layout epoch in
#    WriteRecords, a rate in Repair, joining as a new member or in a dead one's place
#    (each new field is one a version 3 peer never sees unless that feature is used)
# 5: a named token in Hello, Admin requests (cluster credentials, cluster/admin.py), the
#    key id in Hello and SecretFetch (rotating the cluster secret, keyring.py); a client
#    that sends a key id needs a version 5 node, so nodes are upgraded first
PROTOCOL_VERSION = 5
# the oldest version a node still talks to (the handshake accepts the range)
MIN_PROTOCOL_VERSION = 3
NONCE_BYTES = 32
PROOF_BYTES = 32  # HMAC-SHA256
KEY_ID_BYTES = 8  # which secret's key a role token is (keyring.key_id)


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
    f"bytes[0|{KEY_ID_BYTES}]": lambda v: isinstance(v, bytes) and len(v) in (0, KEY_ID_BYTES),
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
    # index of the first field added in a later protocol version (see the module
    # docstring); None: every field is always sent
    ADDED: ClassVar[int | None] = None

    def __post_init__(self) -> None:
        for name, shape, check in _spec(type(self)).checks:
            if not check(getattr(self, name)):
                raise LocalProtocolError(
                    f"{type(self).__name__}.{name} must be {shape}, "
                    f"got {type(getattr(self, name)).__name__}"
                )

    def to_wire(self) -> list[Any]:
        spec = _spec(type(self))
        values = [getattr(self, name) for name in spec.names]
        if self.ADDED is not None:
            while len(values) > self.ADDED and values[-1] == spec.defaults[len(values) - 1]:
                values.pop()
        return [self.TYPE, *values]


class _Spec(NamedTuple):
    """A message class's fields as its methods use them, worked out once per class
    (``dataclasses.fields`` per message was a tenth of a client's CPU per request)."""

    names: tuple[str, ...]
    defaults: tuple[Any, ...]
    checks: tuple[tuple[str, str, Callable[[Any], bool]], ...]  # name, shape, check


@functools.cache
def _spec(cls: type[Message]) -> _Spec:
    fs = fields(cls)
    names = tuple(f.name for f in fs)
    return _Spec(names, tuple(f.default for f in fs),
                 tuple((f.name, shape, _CHECKS[shape])
                       for f, shape in zip(fs, cls.SHAPES, strict=True)))


# --- handshake -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    """Opens a stream: who the caller is and which credential it proves."""

    TYPE = 1
    KIND = "hello"
    SHAPES = ("int", "str", f"bytes[{NONCE_BYTES}]", "str", f"bytes[0|{KEY_ID_BYTES}]")
    ADDED = 3
    version: int = PROTOCOL_VERSION
    role: str  # "node", "client", "readonly" or "admin"
    nonce: bytes
    # the name of a named token (auth.py); "" for a role token
    token: str = ""
    # a role token's key id: during a secret rotation it tells the node which secret's
    # key to prove (keyring.py); b"": the node's current secret
    key_id: bytes = b""


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
class CheckBatch(Message):
    """Write operations ``[key, value or nil]`` checked as a write would check them but
    not applied: a client asks every node before a batch that spans several."""

    TYPE = 22
    KIND = "request"
    SHAPES = ("list",)
    ops: list[Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRecord(Message):
    """A key's record on one replica: its version, and its value if ``value``."""

    TYPE = 23
    KIND = "request"
    SHAPES = ("str", "bool")
    key: str
    value: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRecords(Message):
    """Versioned writes ``[key, value or nil, hlc, writer]`` (nil = tombstone), applied
    atomically by the node. A new write (``repair`` false) is refused per operation when
    the node holds a newer version, and the answer says which; a repair (read repair,
    hints, anti-entropy) is applied only where it is newer and never refused as stale."""

    TYPE = 24
    KIND = "request"
    SHAPES = ("list", "bool", "int")
    ADDED = 2
    ops: list[Any]
    repair: bool = False
    # the layout epoch of the writer's map: a node whose layout is newer refuses the
    # write (the writer may not know every member it must reach; clustermap.py)
    layout_epoch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreHints(Message):
    """Versioned writes for member ``target``, which is down: kept durably by this node
    and delivered when ``target`` answers again (hinted handoff)."""

    TYPE = 25
    KIND = "request"
    SHAPES = ("int", "list")
    target: int
    ops: list[Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotDigests(Message):
    """The digest of each slot in ``slots`` (``[[first, end), ...]`` ranges)."""

    TYPE = 26
    KIND = "request"
    SHAPES = ("list",)
    slots: list[Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotVersions(Message):
    """One page of ``[key, hlc, writer, tombstone]`` of a slot, in key order."""

    TYPE = 27
    KIND = "request"
    SHAPES = ("int", "str?", "int")
    slot: int
    start_after: str | None = None
    limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SlotQuery(Message):
    """One page of a key-ordered scan of the given slots (``[[first, end), ...]``); the
    next page is another SlotQuery from the cursor. The client asks a read quorum of
    owners per slot and compares their answers key by key. A node that has not caught up on a slot
    since it started refuses it (catching_up) unless ``catching_up_ok``: every owner
    of the slot is catching up."""

    TYPE = 28
    KIND = "request"
    SHAPES = ("str", "str?", "bool", "int", "bool", "list", "list", "bool")
    prefix: str
    start_after: str | None = None
    reverse: bool = False
    limit: int
    keys_only: bool = False
    filters: list[Any] = field(default_factory=list)
    slots: list[Any]
    catching_up_ok: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Repair(Message):
    """Run an anti-entropy pass now over ``slots`` (``[[first, end), ...]``) against the
    slot's other owners, and answer when it is done. ``bytes_per_second`` > 0: the pass
    has a throttle of its own at that rate instead of the node's background one (a slot
    move, cluster/rebalance.py); 0: the node's default."""

    TYPE = 29
    KIND = "request"
    SHAPES = ("list", "int")
    ADDED = 1
    slots: list[Any]
    bytes_per_second: int = 0


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
    """A node claims member ``index`` of the map and announces its addresses.
    ``index`` -1: the node joins as a new member, owning no slots until a rebalance.
    ``replace``: the node takes the place of member ``index``, which died for good."""

    TYPE = 21
    KIND = "request"
    SHAPES = ("int", "list", "bool")
    ADDED = 2
    index: int
    addrs: list[Any]
    replace: bool = False


# --- responses -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Ok(Message):
    TYPE = 40
    KIND = "response"


@dataclass(frozen=True, slots=True, kw_only=True)
class Record(Message):
    """A key's record on one replica. ``state``: 0 nothing known, 1 a value, 2 a
    tombstone. ``value`` is present for a value when it was asked for."""

    TYPE = 41
    KIND = "response"
    SHAPES = ("int", "str", "int", "int", "bytes?")
    hlc: int
    writer: str
    state: int
    size: int
    value: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Written(Message):
    """Per operation of a WriteRecords: ``[applied, hlc, writer]``, the version the node
    now holds for that key."""

    TYPE = 42
    KIND = "response"
    SHAPES = ("list",)
    results: list[Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Digests(Message):
    """``DIGEST_BYTES`` per slot asked, in the order asked."""

    TYPE = 50
    KIND = "response"
    SHAPES = ("bytes",)
    digests: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Size(Message):
    TYPE = 43
    KIND = "response"
    SHAPES = ("int",)
    value: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionPage(Message):
    TYPE = 48
    KIND = "response"
    SHAPES = ("list", "str?")
    entries: list[Any]
    cursor: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairReport(Message):
    TYPE = 49
    KIND = "response"
    SHAPES = ("dict",)
    report: dict[str, Any]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Rebalance(Message):
    """Asks the bootstrapper's move coordinator (cluster/rebalance.py) to ``action``:
    "plan" (a dry run), "start", "abort", "remove" (drain member ``node``, then retire
    it) or "status". ``rate``: bytes a second the moves may copy (0: unthrottled).
    ``weights``: ``{"member index": relative capacity}`` to set before planning."""

    TYPE = 30
    KIND = "request"
    SHAPES = ("str", "int", "int", "dict")
    action: str
    rate: int = 0
    node: int = -1
    weights: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RebalanceStatus(Message):
    TYPE = 51
    KIND = "response"
    SHAPES = ("dict",)
    status: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Admin(Message):
    """An operator's request about the cluster's credentials (cluster/admin.py:
    ``action`` one of its ACTIONS, ``args`` its string arguments); any member answers,
    for the admin token only."""

    TYPE = 35
    KIND = "request"
    SHAPES = ("str", "dict")
    action: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminResult(Message):
    TYPE = 55
    KIND = "response"
    SHAPES = ("dict",)
    result: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretFetch(Message):
    """A member asks another for the cluster secret newer than its ``generation``
    (cluster/rotation.py); answered only to members of the map, over libp2p."""

    TYPE = 36
    KIND = "request"
    SHAPES = ("int",)
    generation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretData(Message):
    """The answering node's secret ``generation``; ``secret`` is b"" unless that is newer
    than the one asked about. The previous secret works until ``deadline_ms`` (Unix ms);
    members dial with the new one from ``switch_ms``."""

    TYPE = 56
    KIND = "response"
    SHAPES = ("int", "bytes", "int", "int")
    generation: int
    secret: bytes
    switch_ms: int
    deadline_ms: int


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello, Challenge, Auth, Welcome,
        CheckBatch, ReadRecord, WriteRecords, StoreHints, SlotDigests, SlotVersions, SlotQuery,
        Repair, Sync, DiskUsage, Stats, GetMap, Join,
        Ok, Record, Written, Digests, Size, VersionPage, RepairReport, QueryPage, MapData,
        StatsData, Error, Rebalance, RebalanceStatus, Admin, AdminResult, SecretFetch,
        SecretData,
    )
}


def decode_message(obj: Any) -> Message:
    """Build the message a peer sent from its decoded msgpack array."""
    if not isinstance(obj, list) or not obj or not _is_int(obj[0]):
        raise RemoteProtocolError("a frame must hold [type, fields...]")
    cls = MESSAGE_TYPES.get(obj[0])
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {obj[0]}")
    names = _spec(cls).names
    least = len(names) if cls.ADDED is None else cls.ADDED
    if not least <= len(obj) - 1 <= len(names):
        counted = (f"{len(names)}" if least == len(names) else f"{least} to {len(names)}")
        raise RemoteProtocolError(
            f"{cls.__name__} has {counted} fields, frame has {len(obj) - 1}"
        )
    try:
        return cls(**dict(zip(names, obj[1:], strict=False)))
    except LocalProtocolError as e:
        raise RemoteProtocolError(str(e)) from None

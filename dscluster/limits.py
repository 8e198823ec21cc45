"""Bounds on everything that arrives from the network.

One place derives the frame limit from the value, key and page limits, so a node and
its clients agree on what fits in a frame without configuring it twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .cluster.versions import MAX_WRITER_CHARS
from .errors import ConfigError
from .keys import MAX_KEY_BYTES, SLOT_COUNT

MiB = 1 << 20

# --- what one received frame may hold (see FrameBounds) ---------------------------------

# Before Welcome only Hello, Challenge, Auth, Welcome and Error travel: the largest is a
# Challenge of two 32-byte fields (~70 bytes), or an Error whose text says why the
# handshake failed (a few hundred), so 4 KiB leaves ample margin and an unauthenticated
# peer can make a node buffer and decode no more than that.
HANDSHAKE_FRAME_BYTES = 4 * 1024
# Error texts are truncated to this many characters before they are sent, so that an
# error answer always fits what its receiver decodes (UTF-8: at most 4 bytes a character).
MAX_ERROR_CHARS = 16 * 1024
HANDSHAKE_ERROR_CHARS = 512
# The longest text in a response: a stats "slots" description of a fully fragmented
# map (~100 KB) or an error text.
MAX_RESPONSE_TEXT_BYTES = 256 * 1024
# Entries of any msgpack map: the largest legitimate map (stats) has 8.
MAX_MAP_ENTRIES = 64
# Besides the lists a message is made of: its own array, envelope fields, small lists.
_SLACK = 16
# A version on the wire: its hlc (a uint64: 9 bytes) and its writer (at most
# MAX_WRITER_CHARS characters, UTF-8, after a str16 header).
_VERSION_BYTES = 9 + 3 + 4 * MAX_WRITER_CHARS


@dataclass(frozen=True, slots=True)
class FrameBounds:
    """What msgpack may build from one received frame; anything more is refused while
    decoding, before it is built. ``max_objects`` counts every array and map as one plus
    its number of entries: it bounds what a frame of tiny nested containers makes,
    which is what would otherwise cost time and memory superlinear in its length."""

    max_frame: int
    max_str: int
    max_bin: int
    max_array: int
    max_map: int
    max_objects: int


HANDSHAKE_BOUNDS = FrameBounds(
    max_frame=HANDSHAKE_FRAME_BYTES, max_str=HANDSHAKE_FRAME_BYTES, max_bin=64,
    max_array=8, max_map=MAX_MAP_ENTRIES, max_objects=8 + MAX_MAP_ENTRIES,
)

# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    max_value_bytes: int = 4 * MiB
    max_key_bytes: int = 2048
    max_batch_ops: int = 1024
    max_page_entries: int = 1000

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"limits.{f.name} must be a positive integer, got {v!r}")
        if self.max_value_bytes > 256 * MiB:
            raise ConfigError("limits.max_value_bytes must be at most 256 MiB")
        if self.max_key_bytes > MAX_KEY_BYTES:
            raise ConfigError(f"limits.max_key_bytes must be at most {MAX_KEY_BYTES} (what "
                              "every store can hold)")

    @property
    def page_bytes(self) -> int:
        """Value bytes a query page or a batch request aims for before it is cut."""
        return self.max_value_bytes

    @property
    def max_frame_bytes(self) -> int:
        # A page or batch is cut once it holds page_bytes of values, so it can hold up to
        # two values' worth, plus every key, per-entry msgpack overhead and (a versioned
        # write, a version page) the entry's version.
        per_entry = self.max_key_bytes + 32 + _VERSION_BYTES
        return 2 * self.max_value_bytes + max(self.max_page_entries, self.max_batch_ops) * (
            per_entry
        ) + 64 * 1024

    # -- decoding bounds, one set for each direction (see FrameBounds) --------------------
    @property
    def request_bounds(self) -> FrameBounds:
        """What a node decodes from an authenticated caller. Any list of a request may
        hold ``entries``: a batch's operations (a few over the limit still decode, so
        that the node answers too_large and the stream goes on), a query's filters, or
        a set of slot ranges, which is as long as SLOT_COUNT ranges when the map is
        fully fragmented (and a node takes up to SLOT_COUNT slots a request). Objects:
        a WriteRecords or StoreHints of n ops makes 5 + 6n, a CheckBatch 4 + 4n, a
        SlotDigests or Repair of s ranges 4 + 4s, a SlotQuery with f filters and s
        ranges 11 + 5f + 4s: 9 per entry lets every list of every request be full. Keys
        get room for twice the limit so that an over-long key is answered invalid_key
        rather than closing the stream."""
        entries = max(self.max_batch_ops, self.max_page_entries, SLOT_COUNT) + _SLACK
        return FrameBounds(
            max_frame=self.max_frame_bytes, max_str=2 * self.max_key_bytes + 4096,
            max_bin=self.max_value_bytes, max_array=entries, max_map=MAX_MAP_ENTRIES,
            max_objects=9 * entries + _SLACK,
        )

    @property
    def response_bounds(self) -> FrameBounds:
        """What a client (or a node asking another) decodes from a node. A QueryPage of n
        entries makes 5 + 5n objects, a VersionPage 5 + 6n, a Written of n results
        4 + 5n (n up to max_batch_ops); a cluster map with as many members as slots,
        each with 16 addresses, and one run of k owners per slot makes 29 + k per slot,
        so 48 allows up to 19 owners. Values and keys are bounded by the frame and the
        stores' own key limit, not by this node's limits: a store may hold values
        written under a larger limit."""
        entries = max(self.max_page_entries, self.max_batch_ops) + _SLACK
        return FrameBounds(
            max_frame=self.max_frame_bytes,
            max_str=max(MAX_KEY_BYTES, MAX_RESPONSE_TEXT_BYTES),
            max_bin=self.max_frame_bytes,
            max_array=max(entries, SLOT_COUNT + _SLACK),
            max_map=MAX_MAP_ENTRIES,
            max_objects=max(6 * entries, 48 * SLOT_COUNT),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Limits:
        d = d or {}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown limits field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


# --- inbound connections and file descriptors --------------------------------------------

# Seconds from accept to a proven role (TLS or Noise and yamux, then our handshake): a
# real peer needs milliseconds, an idle connection holds a descriptor this long at most.
PREAUTH_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one listener (the data lane, libp2p) admits at once; the policy is in
    net/admission.py. A node's ``connections`` config section; each listener gets its
    own, scaled down by ``within`` to that listener's share of the descriptors."""

    preauth_timeout: float = PREAUTH_TIMEOUT
    unauthenticated: int = 256
    unauthenticated_per_source: int = 32
    authenticated: int = 1024
    member_reserve: int = 128

    def __post_init__(self) -> None:
        for name in ("unauthenticated", "unauthenticated_per_source", "authenticated"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"connections.{name} must be a positive integer, got {v!r}")
        r = self.member_reserve
        if not isinstance(r, int) or isinstance(r, bool) or not 0 <= r < self.authenticated:
            raise ConfigError("connections.member_reserve must be an integer from 0 to "
                              f"connections.authenticated - 1, got {r!r}")
        if self.unauthenticated_per_source > self.unauthenticated:
            raise ConfigError("connections.unauthenticated_per_source must not exceed "
                              "connections.unauthenticated")
        t = self.preauth_timeout
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 60:
            raise ConfigError(f"connections.preauth_timeout must be 0-60 seconds, got {t!r}")

    def within(self, fds: int) -> ConnectionLimits:
        """These limits, scaled down in proportion to hold at most ``fds`` connections."""
        total = self.unauthenticated + self.authenticated
        if total <= fds:
            return self
        unauth = max(1, self.unauthenticated * fds // total)
        auth = max(2, fds - unauth)
        return ConnectionLimits(
            preauth_timeout=self.preauth_timeout, unauthenticated=unauth,
            unauthenticated_per_source=min(self.unauthenticated_per_source, unauth),
            authenticated=auth,
            member_reserve=min(self.member_reserve * auth // self.authenticated, auth - 1),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ConnectionLimits:
        d = {} if d is None else d
        if not isinstance(d, dict):
            raise ConfigError("connections must be an object")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown connections field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


# Every connection holds a file descriptor, and running out of them fails accept() and
# the store alike, so every connection cap is sized from the process's limit. Of
# fd_budget(), FD_RESERVED stay for the store (LevelDB keeps up to 1,000 table files open;
# flatfs's key index is a LevelDB too), log files, listening sockets and outbound
# connections (a node pools up to 32 per peer it talks to); the rest is split between what
# accepts connections by FD_SHARES: the data lane 40 %, libp2p 30 %, the S3 gateway 30 %.
FD_RESERVED = 1280
FD_SHARES = {"lane": 0.4, "libp2p": 0.3, "gateway": 0.3}
UNLIMITED_FDS = 1 << 16  # what an "unlimited" descriptor limit is taken for


def fd_limit() -> int:
    """The file descriptors this process may open now (its soft RLIMIT_NOFILE)."""
    import resource  # POSIX only, like the rest of the node

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return UNLIMITED_FDS if soft == resource.RLIM_INFINITY else soft


def fd_budget() -> int:
    """The process's file-descriptor limit, after raising the soft RLIMIT_NOFILE to the
    hard limit (the default soft limit, often 1024, is meant for programs that do not
    say they need more)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # an unlimited hard limit cannot be the soft one (macOS): take a generous number
    want = hard if hard != resource.RLIM_INFINITY else max(soft, UNLIMITED_FDS)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass  # the limit we have is the budget
    return fd_limit()


def fd_share(part: str, budget: int | None = None) -> int:
    """The connections ``part`` ("lane", "libp2p", "gateway") may hold at once."""
    b = fd_budget() if budget is None else budget
    # below FD_RESERVED the listeners still get a quarter of what there is
    return int(max(b - FD_RESERVED, b // 4) * FD_SHARES[part])

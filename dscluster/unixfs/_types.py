"""The option and result types of the UnixFS API, and Kubo's constants."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidArgument
from ._chunker import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, parse_chunker
from ._cid import HASH_CODES, MAX_IDENTITY_SIZE, CidPrefix

# called with the number of content bytes just added or written
Progress = Callable[[int], None]

# Kubo's DefaultLinksPerBlock for the balanced layout.
MAX_LINKS = 174
DEFAULT_WINDOW = 32
# Kubo's HAMTShardingSize: a directory whose estimated block size (sum of each link's
# name length plus CID length) exceeds this becomes a HAMT shard in `ipfs add`.
HAMT_SHARDING_SIZE = 256 * 1024
# Kubo's default HAMT fanout (boxo DefaultShardWidth): 8 bits of the name's hash a level
HAMT_FANOUT = 256
# Kubo's default --inline-limit
DEFAULT_INLINE_LIMIT = 32


@dataclass(frozen=True)
class AddOptions:
    """How files are imported; the defaults are `ipfs add`'s.

    ``chunker`` is a content-defined chunker in Kubo's spelling (``rabin…``,
    ``buzhash``); None cuts fixed chunks of ``chunk_size``. ``cid_version=None`` is Kubo's
    rule: 0, or 1 when ``hash`` is not sha2-256. ``raw_leaves=None`` is Kubo's rule: raw
    leaves exactly when the CID version is 1. ``inline_limit``: blocks of at most this
    many bytes get identity CIDs (Kubo's ``--inline``); None never. ``trickle``: Kubo's
    trickle layout instead of the balanced one. ``window`` is the number of block writes
    in flight. ``hidden`` includes names that start with "." when adding directories.
    """

    chunk_size: int = DEFAULT_CHUNK_SIZE
    cid_version: int | None = None
    raw_leaves: bool | None = None
    only_hash: bool = False
    window: int = DEFAULT_WINDOW
    hidden: bool = False
    chunker: str | None = None
    hash: str = "sha2-256"
    inline_limit: int | None = None
    trickle: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise InvalidArgument(
                f"chunk size must be between 1 and {MAX_CHUNK_SIZE} bytes, not {self.chunk_size}"
            )
        if self.cid_version not in (None, 0, 1):
            raise InvalidArgument(f"CID version must be 0 or 1, not {self.cid_version}")
        if self.hash not in HASH_CODES:
            raise InvalidArgument(
                f"unsupported hash {self.hash!r}; supported: {', '.join(HASH_CODES)}")
        if self.hash != "sha2-256" and self.cid_version == 0:
            raise InvalidArgument("CIDv0 only supports sha2-256")  # Kubo's words
        if self.inline_limit is not None and not 0 <= self.inline_limit <= MAX_IDENTITY_SIZE:
            raise InvalidArgument(
                f"inline limit must be between 0 and {MAX_IDENTITY_SIZE} bytes, "
                f"not {self.inline_limit}")
        if self.chunker is not None:
            parse_chunker(self.chunker)
        check_window(self.window)

    @property
    def read_size(self) -> int:
        """Bytes to read from a file at a time: one chunk, or a content-defined
        chunker's largest."""
        if self.chunker is None:
            return self.chunk_size
        return parse_chunker(self.chunker).max

    @property
    def version(self) -> int:
        if self.cid_version is not None:
            return self.cid_version
        return 0 if self.hash == "sha2-256" else 1

    @property
    def leaves_raw(self) -> bool:
        return self.version == 1 if self.raw_leaves is None else self.raw_leaves

    @property
    def prefix(self) -> CidPrefix:
        return CidPrefix(self.version, HASH_CODES[self.hash], self.inline_limit)


def check_window(window: int) -> None:
    if window < 1:
        raise InvalidArgument(f"window must be at least 1, not {window}")


@dataclass(frozen=True)
class AddedFile:
    """The root CID of an imported file and its content size in bytes."""

    cid: str
    size: int


@dataclass(frozen=True)
class NodeStat:
    """What `stat` tells about a block.

    type: "file", "directory", "symlink", "raw" (a raw block), "hamt-shard", "metadata".
    size: content bytes (a file's length, a symlink's target length, 0 for directories).
    cumulative_size: bytes of this block and every block under it (the sum of link
    Tsizes plus the block, as Kubo's CumulativeSize).
    """

    cid: str
    type: str
    size: int
    cumulative_size: int
    num_links: int
    block_size: int


@dataclass(frozen=True)
class DirEntry:
    """One link of a listed node: a directory entry (or an unnamed chunk of a file)."""

    name: str
    cid: str
    size: int
    type: str

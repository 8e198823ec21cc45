"""The option and result types of the UnixFS API, and Kubo's constants."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidArgument

# called with the number of content bytes just added or written
Progress = Callable[[int], None]

DEFAULT_CHUNK_SIZE = 256 * 1024
# Kubo's ChunkSizeLimit: `ipfs add --chunker size-N` refuses N above 1 MiB, so every block
# stays below the 2 MiB bitswap limit.
MAX_CHUNK_SIZE = 1024 * 1024
# Kubo's DefaultLinksPerBlock for the balanced layout.
MAX_LINKS = 174
DEFAULT_WINDOW = 32
# Kubo's HAMTShardingSize: a directory whose estimated block size (sum of each link's
# name length plus CID length) reaches this becomes a HAMT shard in `ipfs add`.
HAMT_SHARDING_SIZE = 256 * 1024


@dataclass(frozen=True)
class AddOptions:
    """How files are imported; the defaults are `ipfs add`'s.

    ``raw_leaves=None`` means Kubo's rule: raw leaves exactly when ``cid_version`` is 1.
    ``window`` is the number of block writes in flight. ``hidden`` includes names that
    start with "." when adding directories.
    """

    chunk_size: int = DEFAULT_CHUNK_SIZE
    cid_version: int = 0
    raw_leaves: bool | None = None
    only_hash: bool = False
    window: int = DEFAULT_WINDOW
    hidden: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise InvalidArgument(
                f"chunk size must be between 1 and {MAX_CHUNK_SIZE} bytes, not {self.chunk_size}"
            )
        if self.cid_version not in (0, 1):
            raise InvalidArgument(f"CID version must be 0 or 1, not {self.cid_version}")
        check_window(self.window)

    @property
    def leaves_raw(self) -> bool:
        return self.cid_version == 1 if self.raw_leaves is None else self.raw_leaves


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

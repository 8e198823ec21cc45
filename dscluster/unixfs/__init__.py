"""UnixFS: files and directories as IPFS DAGs, with the same CIDs and block keys as
`ipfs add` (Kubo's defaults), streamed with bounded windows of concurrent block
reads and writes. See doc/unixfs.md.

Blocking callers use ``dscluster.unixfs.blocking``.
"""

from ._cid import BlockCid, block_key
from ._errors import (
    BlockNotFound,
    CorruptBlock,
    DirectoryTooLarge,
    InvalidCid,
    LocalFileError,
    MalformedBlock,
    NotAFile,
    UnsupportedCid,
    UnsupportedNode,
)
from ._exporter import get_to_path, ls, read_file, stat, stream_file
from ._importer import add_stream, concat
from ._tree import add_path, check_addable, tree_size, walk_files
from ._types import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_WINDOW,
    HAMT_SHARDING_SIZE,
    MAX_CHUNK_SIZE,
    MAX_LINKS,
    AddedFile,
    AddOptions,
    DirEntry,
    NodeStat,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_WINDOW",
    "HAMT_SHARDING_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_LINKS",
    "AddOptions",
    "AddedFile",
    "BlockCid",
    "BlockNotFound",
    "CorruptBlock",
    "DirEntry",
    "DirectoryTooLarge",
    "InvalidCid",
    "LocalFileError",
    "MalformedBlock",
    "NodeStat",
    "NotAFile",
    "UnsupportedCid",
    "UnsupportedNode",
    "add_path",
    "add_stream",
    "block_key",
    "check_addable",
    "concat",
    "get_to_path",
    "ls",
    "read_file",
    "stat",
    "stream_file",
    "tree_size",
    "walk_files",
]

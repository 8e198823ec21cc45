"""UnixFS: files and directories as IPFS DAGs, with the same CIDs and block keys as
`ipfs add` (Kubo's defaults), streamed with bounded windows of concurrent block
reads and writes. See doc/unixfs.md.

Blocking callers use ``dscluster.unixfs.blocking``.
"""

from ._chunker import parse_chunker
from ._cid import BlockCid, CidPrefix, block_key, check_cid_base, hash_functions
from ._errors import (
    BlockNotFound,
    CorruptBlock,
    InvalidCid,
    LocalFileError,
    MalformedBlock,
    NotAFile,
    PathNotFound,
    UnsupportedCid,
    UnsupportedNode,
)
from ._exporter import get_to_path, ls, read_file, split_path, stat, stream_file
from ._importer import add_stream, concat
from ._node import linked_cids
from ._tree import NamedStream, add_all, add_path, check_addable, tree_size, walk_files
from ._types import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_INLINE_LIMIT,
    DEFAULT_WINDOW,
    HAMT_FANOUT,
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
    "DEFAULT_INLINE_LIMIT",
    "DEFAULT_WINDOW",
    "HAMT_FANOUT",
    "HAMT_SHARDING_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_LINKS",
    "AddOptions",
    "AddedFile",
    "BlockCid",
    "BlockNotFound",
    "CidPrefix",
    "CorruptBlock",
    "DirEntry",
    "InvalidCid",
    "LocalFileError",
    "MalformedBlock",
    "NamedStream",
    "NodeStat",
    "NotAFile",
    "PathNotFound",
    "UnsupportedCid",
    "UnsupportedNode",
    "add_all",
    "add_path",
    "add_stream",
    "block_key",
    "check_addable",
    "check_cid_base",
    "concat",
    "get_to_path",
    "hash_functions",
    "linked_cids",
    "ls",
    "parse_chunker",
    "read_file",
    "split_path",
    "stat",
    "stream_file",
    "tree_size",
    "walk_files",
]

"""Local stores: the Store protocol and its backends, and ``open_store`` to pick one.

- ``flatfs`` (default): go-ds-flatfs files plus a LevelDB key index (``FlatFSStore``);
- ``leveldb``: values inline in LevelDB (``LevelDBStore``);
- ``mongo``: one MongoDB document per key (``MongoStore``);
- ``memory``: for tests (``MemoryStore``).

On-disk formats and what ``sync`` guarantees: doc/storage.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import STORE_KINDS
from ..errors import ConfigError
from .base import DEFAULT_THREADS, ScanPage, ScanQueryMixin, Store
from .flatfs import FlatFSStore
from .keyindex import KeyIndex
from .leveldb import LevelDBStore
from .memory import MemoryStore

if TYPE_CHECKING:
    from .mongo import MongoStore

__all__ = [
    "DEFAULT_THREADS",
    "STORE_KINDS",
    "FlatFSStore",
    "KeyIndex",
    "LevelDBStore",
    "MemoryStore",
    "MongoStore",
    "ScanPage",
    "ScanQueryMixin",
    "Store",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # pymongo takes a fifth of a second to import: only a mongo node or test pays for it,
    # not every dsclient command
    if name == "MongoStore":
        from .mongo import MongoStore
        return MongoStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def open_store(
    kind: str = "flatfs",
    path: Path | None = None,
    *,
    sync: bool = True,
    mongodb_uri: str | None = None,
    mongodb_database: str | None = None,
    mongodb_collection: str = "kv",
    mongo_client: Any = None,
) -> Store:
    """Open the store a node is configured with.

    ``path`` is the store's directory (flatfs: it holds ``blocks/`` and ``keyindex/``;
    leveldb: the LevelDB itself). Raises ConfigError for an unknown kind or missing
    setting, StoreError (one readable line) for a store that cannot be opened.
    """
    if kind not in STORE_KINDS:
        raise ConfigError(f"unknown store kind {kind!r} (expected one of {', '.join(STORE_KINDS)})")
    if kind == "memory":
        return MemoryStore()
    if kind == "mongo":
        from .mongo import MongoStore
        return await MongoStore.open(
            uri=mongodb_uri,
            client=mongo_client,
            database=mongodb_database,
            collection=mongodb_collection,
            sync=sync,
        )
    if path is None:
        raise ConfigError(f"the {kind} store needs a directory (path)")
    if kind == "leveldb":
        return await LevelDBStore.open(Path(path), sync=sync)
    return await FlatFSStore.open(Path(path), sync=sync)

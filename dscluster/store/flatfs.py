"""The embedded default store: go-ds-flatfs's on-disk layout plus a LevelDB key index.

Theory of operation. A store directory holds two things:

- ``blocks/`` — a go-ds-flatfs tree (``SHARDING``, ``_README``, ``<shard>/<NAME>.data``,
  ``.temp/``, ``diskUsage.cache``), byte-compatible with go-ds-flatfs and Kubo: see
  ``flatfs_layout`` for how keys become names;
- ``keyindex/`` — the ``KeyIndex``, a rebuildable cache of the tree, outside the flatfs
  root so that go-ds-flatfs never sees it.

A write is go-ds-flatfs's: the value goes to a temp file in ``.temp/`` (fsynced when
``sync``), is renamed over the key's file, the directory is fsynced (when ``sync``), and
only then is the index updated. A delete unlinks, fsyncs the directory (when ``sync``;
go-ds-flatfs does not, but a delete is a write too), then updates the index. Before a
batch renames or unlinks anything, its keys go to the index's journal, so that after a
kill -9 the next open checks only those files instead of walking the tree (see
``keyindex``). Writes and deletes of one key are serialised by striped locks, so the
index always records the size of the file that won. Nothing is buffered in user space
after a write returns, so even with ``sync`` off a kill -9 of the process loses nothing
acknowledged.

Every path is relative to an open file descriptor of the flatfs root (``dir_fd``): a
2048-byte key needs up to about 3.3 KB of relative path, which must not also carry the
root's own length into PATH_MAX. The same descriptor holds an exclusive ``flock`` so that
two processes never open one tree.

Lookups that only need the index (``has``, ``get_size``, ``count``, ``disk_usage``) run
inline on the trio thread: a plyvel get measured 0.9 µs inline against 200 µs through
``trio.to_thread`` on these machines. File I/O, scans and LevelDB writes go to worker
threads (``BlockingCalls``), at most 16 at a time like go-ds-flatfs's fsync semaphore.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import plyvel
import trio

from ..datastore import BatchOp
from ..errors import ConfigError, NotFound, StoreError
from ..keys import validate_key
from .base import (
    DEFAULT_THREADS,
    KeyRange,
    ScanPage,
    ScanQueryMixin,
    ValueSource,
    checked_ops,
)
from .blocking import BlockingCalls
from .flatfs_layout import (
    CONTINUATION,
    DEFAULT_SHARD,
    DISK_USAGE_FILE,
    EXTENSION,
    MAX_NAME,
    README_DEFAULT_SHARD,
    README_FILE,
    SHARDING_FILE,
    TEMP_DIR,
    ShardFunc,
    is_continuation_dir,
    key_to_name,
    name_to_key,
    name_to_path,
    parse_shard_func,
)
from .keyindex import KeyIndex

log = logging.getLogger(__name__)

# locks that serialise writes of one key; a key maps to one of them by hash
_KEY_LOCKS = 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
T = TypeVar("T")


class FlatFSStore(ScanQueryMixin):
    kind = "flatfs"

    def __init__(
        self,
        *,
        root: Path,
        root_fd: int,
        shard: ShardFunc,
        index: KeyIndex,
        sync: bool,
        threads: int,
    ) -> None:
        self.root = root
        self._fd = root_fd
        self._opener = _opener_at(root_fd)
        self._shard = shard
        self._index = index
        self._sync = sync
        self._calls = BlockingCalls(f"flatfs store at {root}", (OSError, plyvel.Error), threads)
        self._key_locks = [threading.Lock() for _ in range(_KEY_LOCKS)]
        # continuation directories of long names are created and pruned under this lock,
        # so that a delete never removes a directory a concurrent put is renaming into
        self._long_lock = threading.Lock()
        # how the last open found the index: "clean", or why it was reconciled
        # ("rebuild": missing/corrupt/old; "journal": the process died, its journalled
        # keys were checked; "dirty": unclean stop, maybe of the machine, the tree was
        # walked; "changed": the tree changed while closed)
        self.recovery = "clean"

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        sync: bool = True,
        root: Path | None = None,
        index_dir: Path | None = None,
        threads: int = DEFAULT_THREADS,
    ) -> FlatFSStore:
        """Open (creating) the store in directory ``path``: the flatfs tree is
        ``path/blocks`` and the index ``path/keyindex`` unless given (``root`` may be an
        existing Kubo ``blocks`` directory)."""
        root = Path(root) if root is not None else Path(path) / "blocks"
        index_dir = Path(index_dir) if index_dir is not None else Path(path) / "keyindex"
        return await trio.to_thread.run_sync(
            functools.partial(cls._open, root, index_dir, sync=sync, threads=threads)
        )

    @classmethod
    def _open(cls, root: Path, index_dir: Path, *, sync: bool, threads: int) -> FlatFSStore:
        what = f"flatfs store at {root}"
        fd: int | None = None
        index: KeyIndex | None = None
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(root, _DIR_FLAGS)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"{what} is in use by another process") from None
            shard = _prepare_tree(fd, root)
            index = KeyIndex.open(index_dir, f"flatfs key index at {index_dir}")
            store = cls(root=root, root_fd=fd, shard=shard, index=index, sync=sync, threads=threads)
            store._recover()
            return store
        except BaseException as e:
            if index is not None:
                index.close()
            if fd is not None:
                os.close(fd)
            if isinstance(e, OSError | plyvel.Error):
                raise StoreError(f"{what} cannot be opened: {e}") from e
            raise

    def _recover(self) -> None:
        """Wipe ``.temp`` (go-ds-flatfs does too) and reconcile the index if needed."""
        reason = self._index.stale_reason(_tree_fingerprint(self._fd))
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(TEMP_DIR, dir_fd=self._fd)
        os.mkdir(TEMP_DIR, dir_fd=self._fd)
        if reason == "journal":
            checked = self._index.replay_journal(self._size_on_disk)
            log.info(
                "flatfs store at %s: index reconciled (journal): %d journalled keys "
                "checked, %d keys",
                self.root,
                checked,
                self._index.count,
            )
            self.recovery = reason
        elif reason is not None:
            foreign: list[str] = []
            added, dropped = self._index.reconcile(self._walk(foreign), self._exists)
            log.info(
                "flatfs store at %s: index reconciled (%s): %d added, %d dropped, %d keys",
                self.root,
                reason,
                added,
                dropped,
                self._index.count,
            )
            if foreign:
                log.warning(
                    "flatfs store at %s: ignored %d files that map to no key, e.g. %s",
                    self.root,
                    len(foreign),
                    foreign[0],
                )
            self.recovery = reason
        self._index.mark_dirty()

    async def close(self) -> None:
        if await self._calls.drain():
            await trio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        try:
            self._write_disk_usage()
            self._index.close_clean(_tree_fingerprint(self._fd))
        finally:
            os.close(self._fd)  # also releases the flock

    # --- the Store interface -------------------------------------------------------

    async def get(self, key: str) -> bytes:
        return await self._calls.run(self._read, validate_key(key))

    async def has(self, key: str) -> bool:
        return self._calls.inline(self._index.size, validate_key(key)) is not None

    async def get_size(self, key: str) -> int:
        k = validate_key(key)
        size = self._calls.inline(self._index.size, k)
        if size is None:
            raise NotFound(f"key not found: {k}")
        return size

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        # the last op of a key wins, as in a Batch or a LevelDB write batch: the temp
        # files and the index update hold one change per key
        checked = list({key: (key, value) for key, value in checked_ops(ops)}.values())
        if checked:
            await self._calls.run(self._apply, checked)

    @contextlib.contextmanager
    def _scan_items(self, r: KeyRange, *, reverse: bool, keys_only: bool,
                    limit: int) -> Iterator[Iterable[tuple[str, int, ValueSource]]]:
        # sizes come from the index; a value file is read only if the page wants it
        with contextlib.closing(self._index.items(r, reverse=reverse)) as items:
            yield ((k, size, functools.partial(self._read, k)) for k, size in items)

    async def _run_scan(self, page: Callable[[], ScanPage]) -> ScanPage:
        return await self._calls.run(page)

    async def keys_in_slot(self, slot: int) -> list[str]:
        return await self._calls.run(self._index.keys_in_slot, slot)

    async def count(self) -> int:
        self._calls.check_open()
        return self._index.count

    async def disk_usage(self) -> int:
        """Bytes of stored values, from the index (directories are not counted)."""
        self._calls.check_open()
        return self._index.bytes

    async def sync(self, prefix: str = "/") -> None:
        # Nothing to do, as in go-ds-flatfs. With sync on every acknowledged write is
        # fsynced already. With it off every acknowledged write is in the kernel, so it
        # survives a crash of the process, which is what go-datastore's Sync promises;
        # surviving a crash of the machine is what sync off gives up. Not sync(2): that
        # would flush every filesystem of the machine whenever a client asks.
        self._calls.check_open()

    # --- blocking work (worker threads) --------------------------------------------

    def _path(self, key: str) -> str:
        return name_to_path(key_to_name(key), self._shard)

    def _read(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb", opener=self._opener) as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"key not found: {key}") from None

    def _size_on_disk(self, key: str) -> int | None:
        """The size of a key's file, None if it has none."""
        try:
            return os.stat(self._path(key), dir_fd=self._fd, follow_symlinks=False).st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _exists(self, key: str) -> bool:
        return self._size_on_disk(key) is not None

    def _apply(self, ops: list[tuple[str, bytes | None]]) -> None:
        temps: dict[str, str] = {}
        try:
            # the slow part, writing values, runs before any key lock is taken
            self._write_temps([(k, v) for k, v in ops if v is not None], temps)
            keys = [key for key, _ in ops]
            with self._locked(keys):
                # journalled under the locks: a batch of the same keys that finished
                # meanwhile would clear the records of this one
                self._index.journal(keys)
                done: list[tuple[str, int | None]] = []
                try:
                    dirty_dirs: set[str] = set()
                    for key, value in ops:
                        changed_dir = self._apply_one(key, value, temps)
                        done.append((key, None if value is None else len(value)))
                        if changed_dir is not None:
                            dirty_dirs.add(changed_dir)
                    if self._sync:
                        _raise_first(_side_by_side(
                            [functools.partial(_fsync_dir, self._fd, d) for d in dirty_dirs]))
                finally:
                    # even if a later op failed, the index must follow the files that
                    # did change, or it would list a deleted value until the next open;
                    # the ops not done changed no file, so every key leaves the journal
                    self._index.apply(done, keys)
        finally:
            for tmp in temps.values():
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=self._fd)

    def _write_temps(self, values: list[tuple[str, bytes]], temps: dict[str, str]) -> None:
        """Each value to a temp file, into ``temps`` (which holds every file written, for
        the caller to clean up, even when one failed)."""
        futures = _side_by_side([functools.partial(_write_temp, self._fd, value,
                                                   sync=self._sync) for _, value in values])
        for (key, _), future in zip(values, futures, strict=True):
            if future.exception() is None:
                temps[key] = future.result()
        _raise_first(futures)

    def _apply_one(self, key: str, value: bytes | None, temps: dict[str, str]) -> str | None:
        """Put (rename the temp file into place) or delete one key; the directory that
        changed, None if none did."""
        path = self._path(key)
        long = len(key_to_name(key)) > MAX_NAME
        with self._long_lock if long else contextlib.nullcontext():
            if value is None:
                return self._remove(path, long)
            self._make_parents(path)
            os.rename(temps.pop(key), path, src_dir_fd=self._fd, dst_dir_fd=self._fd)
            return os.path.dirname(path)

    @contextlib.contextmanager
    def _locked(self, keys: Iterable[str]) -> Iterator[None]:
        # taking a batch's locks in index order keeps concurrent batches deadlock-free
        with contextlib.ExitStack() as stack:
            for i in sorted({hash(k) % _KEY_LOCKS for k in keys}):
                stack.enter_context(self._key_locks[i])
            yield

    def _make_parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            d = "/".join(parts[:depth])
            try:
                os.mkdir(d, 0o755, dir_fd=self._fd)
            except FileExistsError:
                continue
            if self._sync:
                # a new directory is durable only once its parent is synced (go-ds-flatfs
                # syncs the root after creating a shard directory for the same reason)
                _fsync_dir(self._fd, "/".join(parts[: depth - 1]) or ".")

    def _remove(self, path: str, long: bool) -> str | None:
        """Unlink a key's file; the directory that changed (None if nothing was there).

        Continuation directories left empty are removed, deepest first; then the
        directory that changed is the parent of the last one removed.
        """
        try:
            os.unlink(path, dir_fd=self._fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        changed = os.path.dirname(path)
        while long and os.path.basename(changed).startswith(CONTINUATION):
            try:
                os.rmdir(changed, dir_fd=self._fd)
            except OSError:  # not empty: another long name shares this chunk
                break
            changed = os.path.dirname(changed)
        return changed

    def _walk(self, foreign: list[str]) -> Iterator[tuple[str, int]]:
        """Every (key, size) stored in the tree; files that map to no key at the place
        they are in go to ``foreign`` (go-ds-flatfs's own non-block files are skipped)."""
        with os.scandir(self._fd) as top:
            shards = sorted(
                e.name
                for e in top
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
            )
        for shard in shards:
            yield from self._walk_dir(shard, "", foreign)

    def _walk_dir(self, rel: str, chunks: str, foreign: list[str]) -> Iterator[tuple[str, int]]:
        fd = os.open(rel, _DIR_FLAGS, dir_fd=self._fd)
        try:
            with os.scandir(fd) as it:
                entries = sorted(it, key=lambda e: e.name)
            for e in entries:
                path = f"{rel}/{e.name}"
                if is_continuation_dir(e.name) and e.is_dir(follow_symlinks=False):
                    yield from self._walk_dir(path, chunks + e.name[len(CONTINUATION) :], foreign)
                elif e.name.endswith(EXTENSION) and e.is_file(follow_symlinks=False):
                    name = chunks + e.name[: -len(EXTENSION)]
                    key = name_to_key(name)
                    if key is None or name_to_path(name, self._shard) != path:
                        foreign.append(path)
                        continue
                    yield key, e.stat(follow_symlinks=False).st_size
        finally:
            os.close(fd)

    def _write_disk_usage(self) -> None:
        """Leave go-ds-flatfs a diskUsage.cache in its own format (JSON + newline). The
        number is the bytes of values, without directories, hence "approximate"."""
        doc = {"diskUsage": self._index.bytes, "accuracy": "initial-approximate"}
        tmp = _write_temp(
            self._fd, (json.dumps(doc, separators=(",", ":")) + "\n").encode(), sync=True
        )
        os.rename(tmp, DISK_USAGE_FILE, src_dir_fd=self._fd, dst_dir_fd=self._fd)
        _fsync_dir(self._fd, ".")


def _prepare_tree(fd: int, root: Path) -> ShardFunc:
    """Read SHARDING, or make a new tree in an empty directory (go-ds-flatfs's Create)."""
    try:
        with open(SHARDING_FILE, encoding="utf-8", opener=_opener_at(fd)) as f:
            return parse_shard_func(f.read())
    except FileNotFoundError:
        pass
    with os.scandir(fd) as it:
        # ".temp" alone is what an interrupted creation of ours leaves behind
        if any(e.name != TEMP_DIR for e in it):
            raise ConfigError(
                f"{root} is not empty and has no {SHARDING_FILE} file: not a flatfs tree"
            )
    with contextlib.suppress(FileExistsError):
        os.mkdir(TEMP_DIR, 0o755, dir_fd=fd)
    # SHARDING is created exclusively and whole: written aside, then hard-linked, which
    # fails if it exists and never exposes a half-written file
    tmp = _write_temp(fd, (DEFAULT_SHARD + "\n").encode(), sync=True, mode=0o644)
    try:
        os.link(tmp, SHARDING_FILE, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.unlink(tmp, dir_fd=fd)
    tmp = _write_temp(fd, README_DEFAULT_SHARD.encode(), sync=True, mode=0o444)
    os.rename(tmp, README_FILE, src_dir_fd=fd, dst_dir_fd=fd)
    _fsync_dir(fd, ".")
    return parse_shard_func(DEFAULT_SHARD)


def _opener_at(fd: int) -> Callable[[str, int], int]:
    """An ``opener`` for open() that resolves paths relative to the directory ``fd``."""
    return lambda path, flags: os.open(path, flags | os.O_CLOEXEC, dir_fd=fd)


# The threads that write a batch's values and sync its directories at once, shared by
# every store of the process: as many as go-ds-flatfs lets fsync at once
_TEMP_WRITERS = concurrent.futures.ThreadPoolExecutor(max_workers=16,
                                                      thread_name_prefix="flatfs-write")


def _side_by_side(calls: list[Callable[[], T]]) -> list[concurrent.futures.Future[T]]:
    """Run ``calls`` at once and wait for all (one runs inline): each waits on its own
    fsync, and one after the other a batch of N would cost N fsync latencies."""
    futures: list[concurrent.futures.Future[T]] = []
    if len(calls) == 1:
        futures.append(concurrent.futures.Future())
        try:
            futures[0].set_result(calls[0]())
        except Exception as e:
            futures[0].set_exception(e)
        return futures
    futures = [_TEMP_WRITERS.submit(call) for call in calls]
    concurrent.futures.wait(futures)
    return futures


def _raise_first(futures: list[concurrent.futures.Future[T]]) -> None:
    for future in futures:
        if (error := future.exception()) is not None:
            raise error


def _write_temp(fd: int, data: bytes, *, sync: bool, mode: int = 0o600) -> str:
    """Write ``data`` to a new file in ``.temp/`` (fsynced if ``sync``); its path.

    0600 is what go-ds-flatfs's temp files (and so its data files) get.
    """
    path = f"{TEMP_DIR}/temp-{secrets.token_hex(8)}"
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode, dir_fd=fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(out, view) :]
        if sync:
            os.fsync(out)
    except BaseException:
        os.close(out)
        os.unlink(path, dir_fd=fd)
        raise
    os.close(out)
    return path


def _fsync_dir(fd: int, rel: str) -> None:
    d = os.open(rel, _DIR_FLAGS, dir_fd=fd)
    try:
        os.fsync(d)
    finally:
        os.close(d)


def _tree_fingerprint(fd: int) -> bytes:
    """A digest of the tree's top-level entries (see keyindex): it changes when a file
    is added to or removed from any shard directory, or diskUsage.cache is replaced."""
    h = hashlib.sha256()
    with os.scandir(fd) as it:
        for e in sorted(it, key=lambda e: e.name):
            if e.name == TEMP_DIR:
                continue
            st = e.stat(follow_symlinks=False)
            h.update(
                f"{e.name}\0{st.st_ino}\0{st.st_mtime_ns}\0{st.st_size}\n".encode(
                    errors="surrogateescape"
                )
            )
    return h.digest()

"""Subprocess of the UnixFS memory tests: add, get and read SIZE bytes through a store on
disk, and report the peak RSS of doing so.

    python unixfs_soak_worker.py DIR SIZE

Prints one JSON line: the CID, whether every copy matched the source, the peak RSS.

On Linux a process inherits the RSS high-water mark of the process it was forked from,
through exec: started from pytest (hundreds of MB), its own ru_maxrss would be pytest's.
So this small process runs the work in a child of its own (``--child``) and reads the
child's peak with RUSAGE_CHILDREN.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import trio

from dscluster.datastore import BatchOp
from dscluster.errors import NotFound
from dscluster.unixfs import add_stream, get_to_path, read_file

PIECE = 256 * 1024


class DiskBlocks:
    """The part of the Datastore interface the importer and exporter use, one file per
    key: a store that does not hold the data in this process's memory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key.strip("/").replace("/", "_")

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        def write() -> None:
            for op in ops:
                assert op.value is not None  # the importer only puts
                self._path(op.key).write_bytes(op.value)

        await trio.to_thread.run_sync(write)

    async def get(self, key: str) -> bytes:
        try:
            return await trio.to_thread.run_sync(self._path(key).read_bytes)
        except FileNotFoundError:
            raise NotFound(key) from None


async def main(workdir: Path, size: int) -> dict:
    blocks = workdir / "blocks"
    blocks.mkdir()
    ds = DiskBlocks(blocks)
    source_hash = hashlib.sha256()

    async def source() -> AsyncIterator[bytes]:
        for i in range(0, size, PIECE):
            piece = random.Random(i).randbytes(min(PIECE, size - i))
            source_hash.update(piece)
            yield piece

    added = await add_stream(ds, source())  # type: ignore[arg-type]
    out = workdir / "copy"
    await get_to_path(ds, added.cid, out)  # type: ignore[arg-type]
    copy_hash = hashlib.sha256()
    with out.open("rb") as f:
        while piece := f.read(PIECE):
            copy_hash.update(piece)
    os.unlink(out)
    read_hash = hashlib.sha256()
    async for piece in read_file(ds, added.cid):  # type: ignore[arg-type]
        read_hash.update(piece)
    return {
        "cid": added.cid,
        "size": added.size,
        "ok": source_hash.digest() == copy_hash.digest() == read_hash.digest(),
    }


def measure(workdir: str, size: str) -> dict:
    child = subprocess.run(
        [sys.executable, __file__, "--child", workdir, size],
        capture_output=True, text=True, check=False,
    )
    if child.returncode != 0:
        raise SystemExit(child.stderr)
    result = json.loads(child.stdout)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return result


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        print(json.dumps(trio.run(main, Path(sys.argv[2]), int(sys.argv[3]))))
    else:
        print(json.dumps(measure(sys.argv[1], sys.argv[2])))

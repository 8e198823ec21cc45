"""The C allocator's settings for a node process (glibc malloc).

glibc gives each new thread that allocates an arena of its own, up to 8 per core. A
node's store calls run in worker threads (up to 16 for the flatfs store and its key
index, 16 for the replica records), and LevelDB allocates its memtables and write
batches in whichever thread writes, so a loaded node ended up with 15 arenas on 2 cores
that kept what their threads had freed: with 120,000 keys written, malloc held 152 MB of
which 55 MB was in use, and the node's RSS grew by 210-480 MB per million keys written
while a restarted node holding the same keys was back at its empty size
(doc/performance.md, "Scale"). Two arenas keep the main thread and the workers from
contending on one lock, and let freed memory be reused by the next writer.
"""

from __future__ import annotations

import ctypes
import os

MALLOC_ARENAS = 2
# mallopt's parameter number for the arena limit (glibc's malloc.h)
_M_ARENA_MAX = -8


def bound_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Limit glibc malloc to ``arenas`` arenas, unless MALLOC_ARENA_MAX already set it;
    False where there is no glibc mallopt (macOS) or it refused. Call it before the
    process starts threads: glibc fixes its limit once 8 arenas exist."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False  # the operator's choice, which glibc read at start
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))

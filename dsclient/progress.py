"""How dsclient shows sizes: binary units (KiB, MiB…), in progress bars as everywhere else.

tqdm's own byte formatting divides the amount done by ``unit_divisor`` but the rate by
1000 and names both without the "i" ("MB" and "MB/s"), so the bar formats its sizes
here instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
# longer names are shortened in the bar, so that the bar itself keeps some room
NAME_WIDTH = 30

_WITH_TOTAL = "{desc}: {percentage:3.0f}%|{bar}| {done}/{size} [{elapsed}<{remaining}, {speed}]"
_WITHOUT_TOTAL = "{desc}: {done} [{elapsed}, {speed}]"


def human_bytes(n: float, digits: int = 1) -> str:
    """``n`` bytes in binary units: "512B", "1.5KiB", "3.0GiB" (``digits`` decimals)."""
    size = float(n)
    for unit in _UNITS:
        if size < 1024 or unit == _UNITS[-1]:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.{digits}f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


def short_name(name: str) -> str:
    return name if len(name) <= NAME_WIDTH else name[:NAME_WIDTH - 1] + "…"


class _ByteBar(tqdm):
    @property
    def format_dict(self) -> dict[str, Any]:
        d = super().format_dict
        # the smoothed rate, or before there is one, the average so far (as tqdm does)
        rate = d["rate"] or (d["n"] / d["elapsed"] if d["elapsed"] else None)
        # two decimals, so that the numbers move while a big file goes through
        d.update(
            bar_format=_WITH_TOTAL if d["total"] else _WITHOUT_TOTAL,
            done=human_bytes(d["n"], 2),
            size=human_bytes(d["total"] or 0, 2),
            speed="?B/s" if rate is None else f"{human_bytes(rate, 2)}/s",
        )
        return d


@contextmanager
def byte_progress(show: bool, name: str, total: int | None = None) -> Iterator[tqdm | None]:
    """A bar on stderr counting the bytes of ``name`` (None when not ``show``)."""
    if not show:
        yield None
        return
    with _ByteBar(total=total, desc=short_name(name), file=sys.stderr,
                  dynamic_ncols=True) as bar:
        yield bar

"""Durations on the command line (``90s``, ``15m``, ``2h``, ``1d``), for --grace options."""

from __future__ import annotations

import re

import click

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """A click callback: ``value`` in seconds."""
    m = _DURATION.fullmatch(value.strip())
    if m is None:
        raise click.BadParameter(f"{value!r} is not a duration such as 90s, 15m or 2h")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def describe_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:g}s"

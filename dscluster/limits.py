"""Bounds on everything that arrives from the network.

One place derives the frame limit from the value, key and page limits, so a node and
its clients agree on what fits in a frame without configuring it twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import ConfigError
from .keys import MAX_KEY_BYTES

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    max_value_bytes: int = 4 * MiB
    max_key_bytes: int = 2048
    max_batch_ops: int = 1024
    max_page_entries: int = 1000

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"limits.{f.name} must be a positive integer, got {v!r}")
        if self.max_value_bytes > 256 * MiB:
            raise ConfigError("limits.max_value_bytes must be at most 256 MiB")
        if self.max_key_bytes > MAX_KEY_BYTES:
            raise ConfigError(f"limits.max_key_bytes must be at most {MAX_KEY_BYTES} (what "
                              "every store can hold)")

    @property
    def page_bytes(self) -> int:
        """Value bytes a query page or a batch request aims for before it is cut."""
        return self.max_value_bytes

    @property
    def max_frame_bytes(self) -> int:
        # A page or batch is cut once it holds page_bytes of values, so it can hold up to
        # two values' worth, plus every key and per-entry msgpack overhead.
        per_entry = self.max_key_bytes + 32
        return 2 * self.max_value_bytes + max(self.max_page_entries, self.max_batch_ops) * (
            per_entry
        ) + 64 * 1024

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Limits:
        d = d or {}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown limits field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

"""Queries with go-datastore's semantics, and the naive engine that applies them.

Theory of operation: a backend (or the cluster client) does what it can natively —
prefix, key order, keys-only — and hands the rest to ``naive_query_apply``, which applies
the steps in go-datastore's fixed order: prefix (strict children, on a `/` boundary),
filters, orders, offset, limit. Filters and orders here are plain data (not closures) so
that they can be sent to nodes and applied there, close to the data.

The naive engine is also the oracle of the combinatorial conformance test.
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidArgument
from .keys import clean_path, prefix_bound

CompareOp = Literal["=", "!=", ">", ">=", "<", "<="]
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One query result. ``value`` is None for keys-only queries; ``size`` is -1 unless
    sizes were asked for (as in go-datastore)."""

    key: str
    value: bytes | None = None
    size: int = -1


@dataclass(frozen=True, slots=True)
class FilterKeyCompare:
    op: CompareOp
    key: str

    def __call__(self, e: Entry) -> bool:
        return _OPS[self.op](e.key, self.key)


@dataclass(frozen=True, slots=True)
class FilterKeyPrefix:
    """Raw string prefix, as go-datastore's FilterKeyPrefix (no segment boundary)."""

    prefix: str

    def __call__(self, e: Entry) -> bool:
        return e.key.startswith(self.prefix)


@dataclass(frozen=True, slots=True)
class FilterValueCompare:
    op: CompareOp
    value: bytes

    needs_value = True

    def __call__(self, e: Entry) -> bool:
        return e.value is not None and _OPS[self.op](e.value, self.value)


Filter = FilterKeyCompare | FilterKeyPrefix | FilterValueCompare

ORDERS = ("key", "-key", "value", "-value")
Order = Literal["key", "-key", "value", "-value"]


def _check_op(op: str) -> None:
    if op not in _OPS:
        raise InvalidArgument(f"unknown compare operator {op!r}")


@dataclass(frozen=True, slots=True)
class Query:
    prefix: str = "/"
    filters: tuple[Filter, ...] = field(default_factory=tuple)
    orders: tuple[Order, ...] = field(default_factory=tuple)
    limit: int = 0
    offset: int = 0
    keys_only: bool = False
    returns_sizes: bool = False

    def __post_init__(self) -> None:
        if self.limit < 0 or self.offset < 0:
            raise InvalidArgument("limit and offset must not be negative")
        for o in self.orders:
            if o not in ORDERS:
                raise InvalidArgument(f"unknown order {o!r} (expected one of {ORDERS})")
        for f in self.filters:
            if isinstance(f, FilterKeyCompare | FilterValueCompare):
                _check_op(f.op)
            elif not isinstance(f, FilterKeyPrefix):
                raise InvalidArgument(f"unknown filter {f!r}")

    @property
    def clean_prefix(self) -> str:
        return clean_path(self.prefix)

    def needs_values(self) -> bool:
        """Whether values must be read even for a keys-only result."""
        return not self.keys_only or any(
            isinstance(f, FilterValueCompare) for f in self.filters
        ) or any(o in ("value", "-value") for o in self.orders)

    def key_ordered(self) -> Literal["key", "-key"] | None:
        """The key order a sorted scan gives directly, if the orders ask for no other."""
        if not self.orders:
            return "key"
        if self.orders[0] in ("key", "-key"):
            # key is unique: later orders never break a tie
            return self.orders[0]  # type: ignore[return-value]
        return None


def matches(q: Query, e: Entry) -> bool:
    """Prefix and filters of `q`, in go-datastore's order."""
    bound = prefix_bound(q.prefix)
    if bound and not e.key.startswith(bound):
        return False
    return all(f(e) for f in q.filters)


def _sort_key(order: str) -> tuple[Callable[[Entry], Any], bool]:
    if order in ("key", "-key"):
        return (lambda e: e.key), order == "-key"
    return (lambda e: e.value or b""), order == "-value"


def sort_entries(entries: list[Entry], orders: Iterable[str]) -> list[Entry]:
    """Stable multi-key sort: the first order decides, later ones break ties."""
    for order in reversed(tuple(orders)):
        keyf, rev = _sort_key(order)
        entries.sort(key=keyf, reverse=rev)
    return entries


def finish_entry(q: Query, e: Entry) -> Entry:
    """Shape an entry as the query asked: drop the value for keys-only, sizes or -1."""
    size = e.size if e.size >= 0 else (len(e.value) if e.value is not None else -1)
    return Entry(
        e.key,
        None if q.keys_only else e.value,
        size if q.returns_sizes else -1,
    )


def naive_query_apply(q: Query, entries: Iterable[Entry]) -> Iterator[Entry]:
    """Apply the whole query to entries in any order."""
    selected: Iterable[Entry] = (e for e in entries if matches(q, e))
    if q.orders:
        selected = sort_entries(list(selected), q.orders)
    yield from _window(q, selected)


def _window(q: Query, entries: Iterable[Entry]) -> Iterator[Entry]:
    skipped = returned = 0
    for e in entries:
        if skipped < q.offset:
            skipped += 1
            continue
        yield finish_entry(q, e)
        returned += 1
        if q.limit and returned >= q.limit:
            return


async def anaive_query_apply(
    q: Query, entries: AsyncIterable[Entry], *, presorted: bool = False
) -> AsyncIterator[Entry]:
    """The async form: streams when `entries` already come in the query's order
    (``presorted``), otherwise collects and sorts like go-datastore's NaiveOrder."""
    if q.orders and not presorted:
        collected = [e async for e in entries if matches(q, e)]
        for e in _window(q, sort_entries(collected, q.orders)):
            yield e
        return
    skipped = returned = 0
    async for e in entries:
        if not matches(q, e):
            continue
        if skipped < q.offset:
            skipped += 1
            continue
        yield finish_entry(q, e)
        returned += 1
        if q.limit and returned >= q.limit:
            return


def filter_to_wire(f: Filter) -> list[Any]:
    if isinstance(f, FilterKeyCompare):
        return ["key_compare", f.op, f.key]
    if isinstance(f, FilterKeyPrefix):
        return ["key_prefix", "", f.prefix]
    return ["value_compare", f.op, f.value]


def filter_from_wire(raw: Any) -> Filter:
    """Rebuild a filter a peer sent; anything malformed is an InvalidArgument."""
    if not isinstance(raw, list | tuple) or len(raw) != 3:
        raise InvalidArgument("filter must be [kind, op, operand]")
    kind, op, operand = raw
    if kind == "key_prefix" and isinstance(operand, str):
        return FilterKeyPrefix(operand)
    if kind == "key_compare" and isinstance(operand, str) and op in _OPS:
        return FilterKeyCompare(op, operand)
    if kind == "value_compare" and isinstance(operand, bytes) and op in _OPS:
        return FilterValueCompare(op, operand)
    raise InvalidArgument(f"invalid filter {kind!r} {op!r}")


def seek_after(q: Query, reverse: bool) -> str | None:
    """The key a sorted scan may start strictly after, taken from the query's filters.

    A forward scan can skip straight past ``FilterKeyCompare(">", k)`` (a reverse scan
    past ``"<"``); paging S3 listings and continuation tokens rely on this to avoid
    re-reading everything before the start. The filter is still applied afterwards.
    """
    op = "<" if reverse else ">"
    bounds = [f.key for f in q.filters if isinstance(f, FilterKeyCompare) and f.op == op]
    if not bounds:
        return None
    return min(bounds) if reverse else max(bounds)

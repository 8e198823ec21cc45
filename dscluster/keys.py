"""Datastore keys with go-datastore's semantics, and the hash slot of a key.

A Key is a cleaned, `/`-separated path: "/a//b/./c/" becomes "/a/b/c". Cleaning follows
Go's ``path.Clean`` exactly (Python's ``posixpath.normpath`` keeps a leading "//", Go does
not), so a key cleaned here equals the key go-datastore would make. Ancestry needs a `/`
boundary: "/a" is an ancestor of "/a/b" but not of "/ab".

Key subclasses ``str`` so that keys sort, hash and compare exactly like their strings —
the cluster's merged query order is plain string order, which for UTF-8 equals byte order.
"""

from __future__ import annotations

from collections.abc import Iterable

import xxhash

from .errors import InvalidKey

SLOT_COUNT = 16384
# protocol limit on a key's UTF-8 length; stores rely on it (flatfs path lengths)
MAX_KEY_BYTES = 2048


def clean_path(p: str) -> str:
    """Go's path.Clean for a path that is made rooted first (go-datastore Key.Clean)."""
    if not p:
        return "/"
    out: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    return "/" + "/".join(out)


class Key(str):
    """A cleaned datastore key."""

    __slots__ = ()

    def __new__(cls, value: str = "/") -> Key:
        if isinstance(value, Key):
            return value
        return str.__new__(cls, clean_path(value))

    @classmethod
    def from_clean(cls, value: str) -> Key:
        """Wrap a string already known to be clean (no copy, no check)."""
        return str.__new__(cls, value)

    @classmethod
    def with_namespaces(cls, *namespaces: str) -> Key:
        return cls("/" + "/".join(namespaces))

    def is_clean(self) -> bool:
        return clean_path(self) == str(self)

    def namespaces(self) -> list[str]:
        return [] if self == "/" else self[1:].split("/")

    def name(self) -> str:
        """The last segment ("" for the root)."""
        return self.rsplit("/", 1)[-1]

    def parent(self) -> Key:
        if self == "/":
            return self
        head = self.rsplit("/", 1)[0]
        return Key.from_clean(head or "/")

    def child(self, name: str) -> Key:
        return Key(self + "/" + name)

    def is_ancestor_of(self, other: str) -> bool:
        if self == "/":
            return other != "/" and other.startswith("/")
        return other.startswith(self + "/")

    def is_descendant_of(self, other: str) -> bool:
        return Key(other).is_ancestor_of(self)

    def is_top_level(self) -> bool:
        return self != "/" and "/" not in self[1:]

    def __repr__(self) -> str:
        return f"Key({str(self)!r})"


def validate_key(key: str) -> Key:
    """The cleaned Key for ``key`` (go-datastore's NewKey cleans too).

    Raises InvalidKey for a non-string, a string that is not valid UTF-8 (lone
    surrogates) or a key longer than MAX_KEY_BYTES once encoded.
    """
    if not isinstance(key, str):
        raise InvalidKey(f"key must be a string, not {type(key).__name__}")
    k = Key(key)
    try:
        size = len(k.encode())
    except UnicodeEncodeError:
        raise InvalidKey("key is not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"key is {size} bytes long, the limit is {MAX_KEY_BYTES}")
    return k


def slot_of(key: str) -> int:
    """The hash slot of a key: xxhash64 (seed 0) of its UTF-8 bytes, mod 16384.

    This is the only place the hash function is chosen.
    """
    return xxhash.xxh64_intdigest(key.encode()) % SLOT_COUNT


def prefix_bound(prefix: str) -> str:
    """The string every strict descendant of `prefix` starts with ("" for the root)."""
    p = clean_path(prefix)
    return "" if p == "/" else p + "/"


def slot_ranges(slots: Iterable[int]) -> list[list[int]]:
    """Sorted slots as ``[first, end)`` ranges (how slot sets travel on the wire)."""
    out: list[list[int]] = []
    for s in slots:
        if out and out[-1][1] == s:
            out[-1][1] = s + 1
        else:
            out.append([s, s + 1])
    return out

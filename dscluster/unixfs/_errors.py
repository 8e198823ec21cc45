"""Errors of the UnixFS importer and exporter.

Each is a subclass of the core hierarchy, so front ends that map core classes (the CLI's
one-line errors, the S3 gateway's error table) handle these without knowing them: a
missing block is a NotFound, a bad CID an InvalidArgument, a corrupt block a StoreError.
Every message names the CID (or local path) it is about.
"""

from __future__ import annotations

from ..errors import InvalidArgument, NotFound, StoreError


class InvalidCid(InvalidArgument):
    """invalid CID"""


class UnsupportedCid(InvalidArgument):
    """CID version, codec or hash function not supported"""


class BlockNotFound(NotFound):
    """block not found"""


class CorruptBlock(StoreError):
    """block content does not match its CID"""


class MalformedBlock(InvalidArgument):
    """block is not a valid dag-pb / UnixFS node"""


class NotAFile(InvalidArgument):
    """not a UnixFS file"""


class UnsupportedNode(InvalidArgument):
    """UnixFS node type not supported (metadata nodes)"""


class PathNotFound(NotFound):
    """no directory entry of that name"""


class LocalFileError(InvalidArgument):
    """a local file or directory cannot be read or written"""


def local_error(action: str, path: object, err: OSError) -> LocalFileError:
    """A LocalFileError for an OSError, e.g. "cannot read ./x: Permission denied"."""
    return LocalFileError(f"cannot {action} {path}: {err.strerror or err}")

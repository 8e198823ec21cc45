"""go-ds-flatfs's on-disk contract, and how any datastore key becomes a flatfs file name.

Theory of operation. go-ds-flatfs stores key ``/NAME`` (NAME in ``[0-9A-Z+\\-_=]+``) in
``<root>/<shard(NAME)>/<NAME>.data``; ``SHARDING`` names the shard function, by default
``next-to-last/2``: the two characters before the last one, left-padded with ``_``.

Our keys are arbitrary cleaned paths, so the flatfs root stands for the ``/blocks``
namespace, exactly as Kubo mounts it:

- ``/blocks/X`` with X flatfs-safe and not starting with ``_`` is stored under name X, so
  Kubo's blocks and ours are the same files;
- every other key is stored under ``_`` + unpadded upper-case RFC 4648 base32 of its UTF-8
  bytes. Base32 upper-case is flatfs-safe (and safe on case-insensitive file systems).

Raw names never start with ``_`` and encoded ones always do, so the mapping is injective,
and a name decodes back to its key from the disk alone.

A name longer than MAX_NAME (240) characters is cut into 240-character chunks: every
chunk but the last becomes a directory named ``.`` + chunk under the shard directory,
nested in order, and the last is the file: ``<shard>/.<c1>/.<c2>/<c3>.data``. The shard
is still computed over the whole name. go-ds-flatfs skips names starting with ``.``
inside shard directories, so it ignores such keys instead of misreading them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

from ..errors import ConfigError
from ..keys import MAX_KEY_BYTES, clean_path

SHARDING_FILE = "SHARDING"
README_FILE = "_README"
DISK_USAGE_FILE = "diskUsage.cache"
TEMP_DIR = ".temp"
EXTENSION = ".data"
SHARD_PREFIX = "/repo/flatfs/shard/"
DEFAULT_SHARD = SHARD_PREFIX + "v1/next-to-last/2"

# a file is NAME + ".data": 245 bytes, under the usual 255-byte limit with room to spare
MAX_NAME = 240
# leading character of a continuation directory; go-ds-flatfs skips such entries
CONTINUATION = "."

BLOCKS_NAMESPACE = "/blocks/"
_SAFE = re.compile(r"[0-9A-Z+\-_=]+")
_BASE32 = re.compile(r"[A-Z2-7]+")
_ENCODED = "_"

# go-ds-flatfs's README_IPFS_DEF_SHARD, byte for byte (typos included): it is written
# next to SHARDING when a tree with the default shard function is created
README_DEFAULT_SHARD = """\
This is a repository of IPLD objects. Each IPLD object is in a single file,
named <base32 encoding of cid>.data. Where <base32 encoding of cid> is the
"base32" encoding of the CID (as specified in
https://github.com/multiformats/multibase) without the 'B' prefix.
All the object files are placed in a tree of directories, based on a
function of the CID. This is a form of sharding similar to
the objects directory in git repositories. Previously, we used
prefixes, we now use the next-to-last two charters.

    func NextToLast(base32cid string) {
      nextToLastLen := 2
      offset := len(base32cid) - nextToLastLen - 1
      return str[offset : offset+nextToLastLen]
    }

For example, an object with a CIDv1 of

    BAFKREIA22FLID5AJ2KU7URG47MDLROZIH6YF2KALU2PWEFPVI37YLKRSCA

Will be placed at

    SC/AFKREIA22FLID5AJ2KU7URG47MDLROZIH6YF2KALU2PWEFPVI37YLKRSCA.data

with 'SC' being the last-to-next two characters and the 'B' at the
beginning of the CIDv1 string is the multibase prefix that is not
stored in the filename.
"""

ShardFunc = Callable[[str], str]


def next_to_last(n: int) -> ShardFunc:
    padding = "_" * (n + 1)

    def shard(name: str) -> str:
        s = padding + name
        offset = len(s) - n - 1
        return s[offset : offset + n]

    return shard


def prefix(n: int) -> ShardFunc:
    padding = "_" * n
    return lambda name: (name + padding)[:n]


def suffix(n: int) -> ShardFunc:
    padding = "_" * n
    return lambda name: (padding + name)[-n:]


_SHARD_FUNCS: dict[str, Callable[[int], ShardFunc]] = {
    "next-to-last": next_to_last,
    "prefix": prefix,
    "suffix": suffix,
}


def parse_shard_func(text: str) -> ShardFunc:
    """The shard function a SHARDING file names (go-ds-flatfs's ParseShardFunc)."""
    spec = text.strip()
    rest = spec.removeprefix(SHARD_PREFIX)
    parts = rest.split("/")
    if rest == spec or len(parts) != 3 or parts[0] != "v1":
        raise ConfigError(f"invalid flatfs shard identifier {spec!r}")
    fun, param = parts[1], parts[2]
    if fun not in _SHARD_FUNCS or not param.isdigit() or int(param) < 1:
        raise ConfigError(f"unsupported flatfs shard function {spec!r}")
    return _SHARD_FUNCS[fun](int(param))


def key_to_name(key: str) -> str:
    """The flatfs name (without ``.data``) a key is stored under."""
    if key.startswith(BLOCKS_NAMESPACE):
        raw = key[len(BLOCKS_NAMESPACE) :]
        if _SAFE.fullmatch(raw) and not raw.startswith(_ENCODED):
            return raw
    return _ENCODED + base64.b32encode(key.encode()).decode().rstrip("=")


def name_to_key(name: str) -> str | None:
    """The key stored under ``name``, or None if no key maps to it (a foreign file)."""
    if not name.startswith(_ENCODED):
        return BLOCKS_NAMESPACE + name if _SAFE.fullmatch(name) else None
    payload = name[len(_ENCODED) :]
    if not _BASE32.fullmatch(payload):
        return None
    try:
        key = base64.b32decode(payload + "=" * (-len(payload) % 8)).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        return None
    # a name that is not the canonical encoding of a key we accept (non-zero trailing
    # bits, a key that would be stored raw, an unclean or too long key) was not written
    # by us: ignore it
    if key_to_name(key) != name or clean_path(key) != key or len(key.encode()) > MAX_KEY_BYTES:
        return None
    return key


def chunks(name: str) -> list[str]:
    """The name cut into MAX_NAME-character pieces (one piece for short names)."""
    return [name[i : i + MAX_NAME] for i in range(0, len(name), MAX_NAME)]


def name_to_path(name: str, shard: ShardFunc) -> str:
    """The file of a name, relative to the flatfs root."""
    *dirs, last = chunks(name)
    return "/".join([shard(name), *(CONTINUATION + d for d in dirs), last + EXTENSION])


def is_continuation_dir(entry_name: str) -> bool:
    return entry_name.startswith(CONTINUATION) and len(entry_name) == len(CONTINUATION) + MAX_NAME

"""Kubo's content-defined chunkers: ``rabin[-AVG | -MIN-AVG-MAX]`` and ``buzhash``.

Theory of operation: a chunker decides where each chunk ends from the bytes themselves,
so an insertion early in a file moves only the chunk boundaries near it. Both look at
the bytes from a chunk's start only (never across a cut), so ``content_chunks`` keeps a
buffer of at most MAX bytes past the last cut, asks the scanner where the next chunk ends,
and drops that chunk from the buffer. The scanning loops are the small C extension
``_cdc`` (pure Python manages about 2 MB/s; these several hundred); the parameters and
tables, facts of Kubo's implementation, are here:

- buzhash (boxo chunker/buzhash.go): chunks of 128 KiB to 512 KiB; a 32-bit buzhash of the
  32 bytes before each candidate end, with boxo's byte table, ends the chunk where its low
  17 bits are zero.
- rabin (whyrusleeping/chunker, which boxo uses): a Rabin fingerprint modulo Kubo's
  degree-53 polynomial over a 16-byte window; a chunk ends where the fingerprint's low
  floor(log2(AVG)) bits are zero, between MIN and MAX bytes. ``rabin`` is AVG 256 KiB,
  ``rabin-AVG`` sets MIN = AVG/3 and MAX = AVG + AVG/2.
"""

from __future__ import annotations

from array import array
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass

from ..errors import InvalidArgument
from . import _cdc

DEFAULT_CHUNK_SIZE = 256 * 1024
# Kubo v0.22's ChunkSizeLimit (`ipfs add --chunker size-N` refused N above 1 MiB; later
# Kubos allow 2 MiB - 256): every block stays well below the 2 MiB bitswap limit.
MAX_CHUNK_SIZE = 1024 * 1024

BUZHASH_MIN = 128 << 10
BUZHASH_MAX = 512 << 10
_BUZHASH_MASK = (1 << 17) - 1
_BUZHASH_TABLE = array("I", (
    0x6236e7d5, 0x10279b0b, 0x72818182, 0xdc526514, 0x2fd41e3d, 0x777ef8c8, 0x83ee5285, 0x2c8f3637,
    0x2f049c1a, 0x57df9791, 0x9207151f, 0x9b544818, 0x74eef658, 0x2028ca60, 0x0271d91a, 0x27ae587e,
    0xecf9fa5f, 0x236e71cd, 0xf43a8a2e, 0xbb13380, 0x9e57912c, 0x89a26cdb, 0x9fcf3d71, 0xa86da6f1,
    0x9c49f376, 0x346aecc7, 0xf094a9ee, 0xea99e9cb, 0xb01713c6, 0x88acffb, 0x2960a0fb, 0x344a626c,
    0x7ff22a46, 0x6d7a1aa5, 0x6a714916, 0x41d454ca, 0x8325b830, 0xb65f563, 0x447fecca, 0xf9d0ea5e,
    0xc1d9d3d4, 0xcb5ec574, 0x55aae902, 0x86edc0e7, 0xd3a9e33, 0xe70dc1e1, 0xe3c5f639, 0x9b43140a,
    0xc6490ac5, 0x5e4030fb, 0x8e976dd5, 0xa87468ea, 0xf830ef6f, 0xcc1ed5a5, 0x611f4e78, 0xddd11905,
    0xf2613904, 0x566c67b9, 0x905a5ccc, 0x7b37b3a4, 0x4b53898a, 0x6b8fd29d, 0xaad81575, 0x511be414,
    0x3cfac1e7, 0x8029a179, 0xd40efeda, 0x7380e02, 0xdc9beffd, 0x2d049082, 0x99bc7831, 0xff5002a8,
    0x21ce7646, 0x1cd049b, 0xf43994f, 0xc3c6c5a5, 0xbbda5f50, 0xec15ec7, 0x9adb19b6, 0xc1e80b9,
    0xb9b52968, 0xae162419, 0x2542b405, 0x91a42e9d, 0x6be0f668, 0x6ed7a6b9, 0xbc2777b4, 0xe162ce56,
    0x4266aad5, 0x60fdb704, 0x66f832a5, 0x9595f6ca, 0xfee83ced, 0x55228d99, 0x12bf0e28, 0x66896459,
    0x789afda, 0x282baa8, 0x2367a343, 0x591491b0, 0x2ff1a4b1, 0x410739b6, 0x9b7055a0, 0x2e0eb229,
    0x24fc8252, 0x3327d3df, 0xb0782669, 0x1c62e069, 0x7f503101, 0xf50593ae, 0xd9eb275d, 0xe00eb678,
    0x5917ccde, 0x97b9660a, 0xdd06202d, 0xed229e22, 0xa9c735bf, 0xd6316fe6, 0x6fc72e4c, 0x206dfa2,
    0xd6b15c5a, 0x69d87b49, 0x9c97745, 0x13445d61, 0x35a975aa, 0x859aa9b9, 0x65380013, 0xd1fb6391,
    0xc29255fd, 0x784a3b91, 0xb9e74c26, 0x63ce4d40, 0xc07cbe9e, 0xe6e4529e, 0xfb3632f, 0x9438d9c9,
    0x682f94a8, 0xf8fd4611, 0x257ec1ed, 0x475ce3d6, 0x60ee2db1, 0x2afab002, 0x2b9e4878, 0x86b340de,
    0x1482fdca, 0xfe41b3bf, 0xd4a412b0, 0xe09db98c, 0xc1af5d53, 0x7e55e25f, 0xd3346b38, 0xb7a12cbd,
    0x9c6827ba, 0x71f78bee, 0x8c3a0f52, 0x150491b0, 0xf26de912, 0x233e3a4e, 0xd309ebba, 0xa0a9e0ff,
    0xca2b5921, 0xeeb9893c, 0x33829e88, 0x9870cc2a, 0x23c4b9d0, 0xeba32ea3, 0xbdac4d22, 0x3bc8c44c,
    0x1e8d0397, 0xf9327735, 0x783b009f, 0xeb83742, 0x2621dc71, 0xed017d03, 0x5c760aa1, 0x5a69814b,
    0x96e3047f, 0xa93c9cde, 0x615c86f5, 0xb4322aa5, 0x4225534d, 0xd2e2de3, 0xccfccc4b, 0xbac2a57,
    0xf0a06d04, 0xbc78d737, 0xf2d1f766, 0xf5a7953c, 0xbcdfda85, 0x5213b7d5, 0xbce8a328, 0xd38f5f18,
    0xdb094244, 0xfe571253, 0x317fa7ee, 0x4a324f43, 0x3ffc39d9, 0x51b3fa8e, 0x7a4bee9f, 0x78bbc682,
    0x9f5c0350, 0x2fe286c, 0x245ab686, 0xed6bf7d7, 0xac4988a, 0x3fe010fa, 0xc65fe369, 0xa45749cb,
    0x2b84e537, 0xde9ff363, 0x20540f9a, 0xaa8c9b34, 0x5bc476b3, 0x1d574bd7, 0x929100ad, 0x4721de4d,
    0x27df1b05, 0x58b18546, 0xb7e76764, 0xdf904e58, 0x97af57a1, 0xbd4dc433, 0xa6256dfd, 0xf63998f3,
    0xf1e05833, 0xe20acf26, 0xf57fd9d6, 0x90300b4d, 0x89df4290, 0x68d01cbc, 0xcf893ee3, 0xcc42a046,
    0x778e181b, 0x67265c76, 0xe981a4c4, 0x82991da1, 0x708f7294, 0xe6e2ae62, 0xfc441870, 0x95e1b0b6,
    0x445f825, 0x5a93b47f, 0x5e9cf4be, 0x84da71e7, 0x9d9582b0, 0x9bf835ef, 0x591f61e2, 0x43325985,
    0x5d2de32e, 0x8d8fbf0f, 0x95b30f38, 0x7ad5b6e, 0x4e934edf, 0x3cd4990e, 0x9053e259, 0x5c41857d,
)).tobytes()

# boxo's IpfsRabinPoly, irreducible of degree 53
RABIN_POLY = 17437180132763653
_RABIN_WINDOW = 16
RABIN_MIN_MIN = 16  # Kubo: "rabin min must be greater than 16" (it accepts 16)


def _pol_mod(x: int, p: int) -> int:
    """x mod p, both polynomials over GF(2) as bit sets."""
    deg = p.bit_length()
    while x.bit_length() >= deg:
        x ^= p << (x.bit_length() - deg)
    return x


def _rabin_tables(p: int) -> tuple[bytes, bytes]:
    """whyrusleeping/chunker's tables: ``out[b]`` is b's share of the fingerprint as the
    window's oldest byte, ``mod[b]`` reduces the 8 bits that overflow the degree."""
    out = array("Q")
    for b in range(256):
        h = _pol_mod(b, p)
        for _ in range(_RABIN_WINDOW - 1):
            h = _pol_mod(h << 8, p)
        out.append(h)
    k = p.bit_length() - 1
    mod = array("Q", (_pol_mod(b << k, p) | (b << k) for b in range(256)))
    return out.tobytes(), mod.tobytes()


_RABIN_OUT, _RABIN_MOD = _rabin_tables(RABIN_POLY)
_RABIN_SHIFT = RABIN_POLY.bit_length() - 1 - 8


@dataclass(frozen=True, slots=True)
class Chunker:
    """A parsed ``--chunker``: ``kind`` "size", "rabin" or "buzhash" with its sizes."""

    kind: str
    min: int
    avg: int
    max: int


def _number(spec: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"chunker {spec!r}: {text!r} is not a number") from None


def _label(spec: str, part: str, label: str) -> int:
    """A rabin size, optionally labelled ``min:N`` as Kubo allows."""
    name, colon, value = part.rpartition(":")
    if colon and name != label:
        raise InvalidArgument(f"chunker {spec!r}: expected {label}:N, not {part!r}")
    return _number(spec, value)


def parse_chunker(spec: str) -> Chunker:
    """Kubo's ``--chunker`` values: ``size-N``, ``rabin``, ``rabin-AVG``,
    ``rabin-MIN-AVG-MAX`` (each optionally ``min:``/``avg:``/``max:`` labelled),
    ``buzhash``; sizes up to MAX_CHUNK_SIZE. Raises InvalidArgument."""
    if spec in ("", "default"):
        return Chunker("size", DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE)
    parts = spec.split("-")
    kind = parts[0]
    if kind == "size" and len(parts) == 2:
        size = _number(spec, parts[1])
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise InvalidArgument(f"chunker {spec!r}: N must be between 1 and {MAX_CHUNK_SIZE}")
        return Chunker("size", size, size, size)
    if kind == "buzhash" and len(parts) == 1:
        return Chunker("buzhash", BUZHASH_MIN, BUZHASH_MIN, BUZHASH_MAX)
    if kind == "rabin" and len(parts) in (1, 2):
        avg = DEFAULT_CHUNK_SIZE if len(parts) == 1 else _number(spec, parts[1])
        lo, hi = avg // 3, avg + avg // 2
        if lo < RABIN_MIN_MIN or hi > MAX_CHUNK_SIZE:
            raise InvalidArgument(
                f"chunker {spec!r}: AVG must be between {3 * RABIN_MIN_MIN} and "
                f"{MAX_CHUNK_SIZE * 2 // 3}")
        return Chunker("rabin", lo, avg, hi)
    if kind == "rabin" and len(parts) == 4:
        lo, avg, hi = (_label(spec, p, n) for p, n in zip(parts[1:], ("min", "avg", "max"),
                                                           strict=True))
        if not RABIN_MIN_MIN <= lo < avg < hi <= MAX_CHUNK_SIZE:
            raise InvalidArgument(
                f"chunker {spec!r}: need {RABIN_MIN_MIN} <= MIN < AVG < MAX <= "
                f"{MAX_CHUNK_SIZE}")
        return Chunker("rabin", lo, avg, hi)
    if kind in ("size", "rabin", "buzhash"):
        raise InvalidArgument(
            f"chunker {spec!r}: expected size-N, rabin, rabin-AVG, rabin-MIN-AVG-MAX or "
            "buzhash")
    raise InvalidArgument(f"unrecognized chunker {spec!r}")


def _cut(chunker: Chunker, data: memoryview) -> int:
    if chunker.kind == "buzhash":
        return _cdc.buzhash_cut(data, _BUZHASH_TABLE, chunker.min, _BUZHASH_MASK)
    mask = (1 << (chunker.avg.bit_length() - 1)) - 1
    return _cdc.rabin_cut(data, _RABIN_OUT, _RABIN_MOD, _RABIN_SHIFT, chunker.min,
                          chunker.max, mask)


async def content_chunks(source: AsyncIterable[bytes], chunker: Chunker
                         ) -> AsyncGenerator[bytes, None]:
    """The chunks ``chunker`` (rabin or buzhash) cuts from pieces of any size."""
    buf = bytearray()
    async for piece in source:
        buf += piece
        while len(buf) >= chunker.max:
            with memoryview(buf) as view:
                n = _cut(chunker, view[: chunker.max])
            yield bytes(buf[:n])
            del buf[:n]
    while buf:
        with memoryview(buf) as view:
            n = _cut(chunker, view[: chunker.max])
        yield bytes(buf[:n])
        del buf[:n]

"""Queries against the naive engine as oracle (go-datastore's SubtestCombinations).

The same data goes into the datastore and, as plain entries, into ``naive_query_apply``;
a deterministic sample of prefixes x filters x orders x offset x limit x keys_only x
returns_sizes must give exactly the oracle's answer. Values are distinct, so every order
is total and the expected sequence is unique.
"""

from __future__ import annotations

import itertools
import random

import trio

from dscluster.datastore import Datastore
from dscluster.query import (
    Entry,
    FilterKeyCompare,
    FilterKeyPrefix,
    FilterValueCompare,
    Query,
    naive_query_apply,
)

SAMPLES = 400
CONCURRENT = 8


def dataset() -> dict[str, bytes]:
    rnd = random.Random(1234)
    keys = {"/a", "/a0", "/ab/x", "/0", "/0key0", "/0/0", "/b/a", "/é/x"}
    keys |= {f"/a/{i:02d}" for i in range(14)}
    keys |= {f"/a/b/{c}" for c in "klmnop"}
    keys |= {f"/0/{rnd.randrange(1000):03d}" for _ in range(10)}
    values = rnd.sample(range(1 << 16), len(keys))
    # distinct values of different lengths, some sharing prefixes, so value orders and
    # value comparisons are exercised on more than the first byte
    return {
        k: v.to_bytes(2, "big") * (1 + v % 3) for k, v in zip(sorted(keys), values, strict=True)
    }


PREFIXES = ["/", "/a", "/a/b", "/0", "/nope"]
FILTERS = [
    (),
    (FilterKeyCompare(">", "/a/05"),),
    (FilterKeyCompare(">=", "/a/05"), FilterKeyCompare("<", "/a/b/n")),
    (FilterKeyCompare("<=", "/a/b/m"),),
    (FilterKeyCompare("!=", "/a/03"),),
    (FilterKeyPrefix("/a/1"),),
    (FilterValueCompare(">=", b"\x80"),),
    (FilterValueCompare("<", b"\x40"), FilterKeyPrefix("/a")),
]
ORDERS = [(), ("key",), ("-key",), ("value",), ("-value",), ("-value", "key"), ("key", "value")]
OFFSETS = [0, 3]
LIMITS = [0, 1, 7]
FLAGS = [False, True]


def sample_queries() -> list[Query]:
    combos = list(itertools.product(PREFIXES, FILTERS, ORDERS, OFFSETS, LIMITS, FLAGS, FLAGS))
    picked = random.Random(99).sample(combos, SAMPLES)
    return [
        Query(
            prefix=p,
            filters=f,
            orders=o,
            offset=off,
            limit=lim,
            keys_only=ko,
            returns_sizes=rs,
        )
        for p, f, o, off, lim, ko, rs in picked
    ]


async def test_query_combinations(ds: Datastore) -> None:
    data = dataset()
    batch = ds.batch()
    for k, v in data.items():
        batch.put(k, v)
    await batch.commit()
    oracle_input = [Entry(k, v) for k, v in sorted(data.items())]
    queries = sample_queries()
    answers: list[list[Entry]] = [[] for _ in queries]
    # the queries only read, so a few run at a time: through a cluster each one waits on
    # round trips to every node, one after another they took most of a minute
    limit = trio.CapacityLimiter(CONCURRENT)

    async def run(i: int) -> None:
        async with limit:
            answers[i] = [e async for e in ds.query(queries[i])]

    async with trio.open_nursery() as n:
        for i in range(len(queries)):
            n.start_soon(run, i)
    nonempty = 0
    for q, got in zip(queries, answers, strict=True):
        expected = list(naive_query_apply(q, oracle_input))
        assert got == expected, q
        nonempty += bool(expected)
    # the sample is not degenerate: most queries do return something
    assert nonempty > SAMPLES // 2

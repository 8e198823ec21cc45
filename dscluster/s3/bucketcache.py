"""Bucket records kept for a moment, so that most requests cost no round trip to find
their bucket (its existence, owner and ACL).

Theory of operation. A record read from the datastore is kept for ``seconds``
(``s3.bucket_cache_seconds``) and then read again; absence is never kept, so a bucket
created anywhere is usable at once. What this gateway itself writes is applied here as
it is written: CreateBucket and PutBucketAcl keep their new record, DeleteBucket drops
it, so through this gateway a deleted bucket is refused and a changed ACL applies from
the next request. A change made through another node's gateway (or around the gateways)
is seen here within ``seconds``; until then this gateway still answers from the old
record, as S3 itself propagates a bucket's deletion and ACLs with a delay.

A read that started before DeleteBucket and ends after it must not bring the deleted
record back: every ``forget`` starts a new generation, and a read keeps its result only
if no generation began while it was in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..datastore import Datastore
from .meta import BucketRecord
from .storage import bucket_record

# records kept at most; more buckets in use than this only cost round trips
MAX_ENTRIES = 4096


class BucketCache:
    def __init__(self, ds: Datastore, seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ds = ds
        self._seconds = seconds
        self._clock = clock
        # bucket -> (expiry, record), oldest first
        self._entries: dict[str, tuple[float, BucketRecord]] = {}
        self._generation = 0

    async def get(self, bucket: str) -> BucketRecord | None:
        """The bucket's record, None when there is no such bucket."""
        hit = self._entries.get(bucket)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        generation = self._generation
        record = await bucket_record(self._ds, bucket)
        if record is None:
            self._entries.pop(bucket, None)
        elif generation == self._generation:
            self.keep(bucket, record)
        return record

    def keep(self, bucket: str, record: BucketRecord) -> None:
        """``record`` is the bucket's, just read or written by this gateway."""
        if self._seconds <= 0:
            return
        self._entries.pop(bucket, None)
        while len(self._entries) >= MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]
        self._entries[bucket] = (self._clock() + self._seconds, record)

    def forget(self, bucket: str) -> None:
        """The bucket was deleted (or its record is otherwise no longer known)."""
        self._generation += 1
        self._entries.pop(bucket, None)

"""How an object's record and bytes are written (storage.commit): two concurrent writes,
which on write-once (``disable_delete``) nodes still leave an object as it was when an
overwrite is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
from botocore.exceptions import ClientError

from dscluster.datastore import BatchOp, Datastore
from dscluster.errors import Forbidden, NotFound
from dscluster.store.memory import MemoryStore

from .support import code_of, gateway_settings, run_gateway

pytestmark = pytest.mark.timeout(30)


class WriteOnceStore(MemoryStore):
    """A MemoryStore that refuses to overwrite a value with another, as a node with
    ``disable_delete`` does, and notes the largest batch it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.largest_batch = 0

    async def apply(self, ops: Sequence[BatchOp]) -> None:
        self.largest_batch = max(self.largest_batch, len(ops))
        for op in ops:
            try:
                held = await self.get(op.key)
            except NotFound:
                continue
            if held != op.value:
                raise Forbidden(f"{op.key} already holds a different value")
        await super().apply(ops)


def test_a_refused_overwrite_leaves_the_object_as_it_was() -> None:
    store = WriteOnceStore()

    @asynccontextmanager
    async def open_store() -> AsyncIterator[Datastore]:
        yield store

    with run_gateway(gateway_settings(), open_store) as g:
        s3 = g.client()
        name = g.bucket(s3)
        first = s3.put_object(Bucket=name, Key="k", Body=b"one", ContentType="text/a")
        for body in (b"two", b"one"):  # other bytes of the same size, and the same bytes
            with pytest.raises(ClientError) as e:
                s3.put_object(Bucket=name, Key="k", Body=body, ContentType="text/b")
            assert code_of(e) == ("AccessDenied", 403)
        got = s3.get_object(Bucket=name, Key="k")
        assert got["Body"].read() == b"one"
        assert got["ETag"] == first["ETag"] and got["ContentType"] == "text/a"
        # the record and the bytes go as two writes, not as one batch of both
        assert store.largest_batch == 1

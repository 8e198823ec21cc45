"""mongomock clients that work with the installed pymongo.

mongomock 4.3 predates pymongo 4.11, whose ReplaceOne/UpdateOne pass ``sort`` to the bulk
builder; ``mongomock_client`` first teaches mongomock to accept (and ignore) it — our
requests never set it. Only tests use mongomock; the store's code path is pymongo's.
"""

from __future__ import annotations

from typing import Any

import mongomock


def _patch() -> None:
    builder = mongomock.collection.BulkOperationBuilder
    if getattr(builder, "_dscluster_patched", False):
        return
    for name in ("add_replace", "add_update"):
        original = getattr(builder, name)

        def compatible(
            self: Any, *args: Any, _original: Any = original, sort: Any = None, **kwargs: Any
        ) -> Any:
            assert sort is None
            return _original(self, *args, **kwargs)

        setattr(builder, name, compatible)
    builder._dscluster_patched = True


def mongomock_client() -> mongomock.MongoClient:
    _patch()
    return mongomock.MongoClient()

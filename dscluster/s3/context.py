"""What every handler is given: the datastore, the settings and the bucket records
kept for a moment (bucketcache.py), and its signature."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..datastore import Datastore
from .bucketcache import BucketCache
from .http import Request, Response
from .router import Route
from .settings import S3Settings


@dataclass(frozen=True, slots=True)
class Gateway:
    ds: Datastore
    settings: S3Settings
    buckets: BucketCache


Handler = Callable[[Gateway, Request, Route], Awaitable[Response]]

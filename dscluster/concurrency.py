"""Nurseries whose failures read like the failure of one call.

trio wraps every error that leaves a nursery in an ExceptionGroup. Callers of the
library expect ``Unavailable`` or ``NotFound``, not a group, so ``open_nursery`` re-raises
the first of our own errors when a group holds one (its siblings were cancelled
because of it). Groups of pure cancellation pass through untouched so trio's cancel
scopes still catch them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .errors import DSClusterError


def first_error(eg: BaseExceptionGroup) -> BaseException | None:
    """The first DSClusterError in a (nested) group, else its only leaf, else None."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(eg)
    for leaf in leaves:
        if isinstance(leaf, DSClusterError):
            return leaf
    real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    if len(real) == 1:
        return real[0]
    return None


@asynccontextmanager
async def open_nursery() -> AsyncIterator[trio.Nursery]:
    try:
        async with trio.open_nursery() as n:
            yield n
    except BaseExceptionGroup as eg:
        err = first_error(eg)
        if err is None:
            raise
        raise err from None

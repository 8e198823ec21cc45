"""Asking a node for what `dsclient s3-key` and `dsclient admin tokens` do (the node's
side: cluster/admin.py). Any serving member answers; one that cannot be reached is
skipped for the next."""

from __future__ import annotations

from typing import Any

from .. import wire
from ..cluster.caller import MemberCaller
from ..errors import RemoteProtocolError, Unavailable


async def ask_admin(caller: MemberCaller, action: str, **args: str) -> dict[str, Any]:
    failures: list[str] = []
    for index in caller.state.map.serving_members():
        try:
            ans = await caller.ask(index, wire.Admin(action=action, args=args))
        except Unavailable as e:
            failures.append(str(e))
            continue
        if not isinstance(ans, wire.AdminResult):
            raise RemoteProtocolError(f"node {index} answered Admin with "
                                      f"{type(ans).__name__}")
        return ans.result
    raise Unavailable("no node answered: " + "; ".join(failures))

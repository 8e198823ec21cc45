"""Asking the move coordinator (cluster/rebalance.py): what `dsclient rebalance`,
`remove-node` and `status` send. The coordinator runs in the bootstrapper, member 0;
everything but "status" needs the admin token, which the node checks."""

from __future__ import annotations

from typing import Any

from .. import wire
from ..cluster.caller import MemberCaller
from ..errors import RemoteProtocolError

# member 0 provisions the cluster and holds the authoritative map (dscfg cluster)
COORDINATOR = 0


async def ask_coordinator(caller: MemberCaller, action: str, *, rate: int = 0,
                          node: int = -1, weights: dict[str, float] | None = None
                          ) -> dict[str, Any]:
    """``action`` ("plan", "start", "abort", "remove", "status"); the coordinator's
    answer: the plan for "plan", else the job's status."""
    ans = await caller.ask(COORDINATOR, wire.Rebalance(action=action, rate=rate, node=node,
                                                       weights=dict(weights or {})))
    if not isinstance(ans, wire.RebalanceStatus):
        raise RemoteProtocolError(f"node {COORDINATOR} answered Rebalance with "
                                  f"{type(ans).__name__}")
    return ans.status

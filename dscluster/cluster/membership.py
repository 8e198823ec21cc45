"""A data node's side of membership: join through the bootstrapper, then follow the map.

A node that has never joined must reach the bootstrapper before it can serve, so it
retries for a while and then stops with a clear error. A node that has a cached map it
appears in starts serving at once and re-announces itself in the background, so a
restart does not depend on the bootstrapper being up. Afterwards the node polls the
bootstrapper for newer epochs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from .. import wire
from ..clustermap import ClusterMap
from ..errors import DSClusterError, Forbidden, InvalidArgument, Unauthorized, Unavailable
from ..net.pool import ChannelPool
from .state import ClusterState

log = logging.getLogger(__name__)
FOLLOW_INTERVAL = 2.0
JOIN_RETRY = 0.5


class Membership:
    def __init__(self, pool: ChannelPool, bootstrapper: tuple[str, Sequence[str]],
                 index: int, addrs: Sequence[str], request_timeout: float) -> None:
        self.pool = pool
        self.boot_peer, self.boot_addrs = bootstrapper
        self.index = index
        self.addrs = list(addrs)
        self.timeout = request_timeout

    async def _ask(self, msg: wire.Message) -> wire.MapData:
        with trio.fail_after(self.timeout):
            async with self.pool.channel(self.boot_peer, self.boot_addrs) as chan:
                ans = await chan.request(msg)
        assert isinstance(ans, wire.MapData)
        return ans

    async def join_once(self) -> ClusterMap:
        ans = await self._ask(wire.Join(index=self.index, addrs=self.addrs))
        assert ans.map is not None
        return ClusterMap.from_dict(ans.map)

    async def join(self, deadline_s: float) -> ClusterMap:
        """Join, retrying while the bootstrapper is unreachable, for ``deadline_s``."""
        last: Exception | None = None
        with trio.move_on_after(deadline_s):
            while True:
                try:
                    return await self.join_once()
                except (Forbidden, InvalidArgument, Unauthorized):
                    raise  # the bootstrapper said no: retrying will not change that
                except (DSClusterError, trio.TooSlowError) as e:
                    last = e
                    log.info("bootstrapper not reachable yet (%s); retrying", e or "timeout")
                    await self.pool.forget(self.boot_peer)
                    await trio.sleep(JOIN_RETRY)
        raise Unavailable(
            f"cannot join: bootstrapper {self.boot_peer} at {', '.join(self.boot_addrs)} "
            f"did not accept us within {deadline_s:g}s ({last or 'timeout'})"
        )

    async def follow(self, state: ClusterState, *, rejoin: bool) -> None:
        """Keep ``state`` current; first re-announce ourselves if asked (after a restart)."""
        warned = False
        while True:
            try:
                if rejoin:
                    state.offer(await self.join_once())
                    rejoin = False
                ans = await self._ask(wire.GetMap(known_epoch=state.epoch))
                if ans.map is not None:
                    state.offer(ClusterMap.from_dict(ans.map))
                warned = False
            except (Forbidden, InvalidArgument) as e:
                log.error("the bootstrapper refused this node: %s", e)
                rejoin = False
            except (DSClusterError, trio.TooSlowError) as e:
                if not warned:
                    log.warning("cannot reach the bootstrapper: %s", e or "timeout")
                    warned = True
                await self.pool.forget(self.boot_peer)
            await trio.sleep(FOLLOW_INTERVAL)

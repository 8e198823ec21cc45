"""Multiaddrs as the configuration and the cluster map spell them.

Kept apart from the libp2p transport so that reading configs and maps does not import
py-libp2p (~0.6 s).
"""

from __future__ import annotations

import multiaddr

from ..errors import ConfigError


def parse_maddr(text: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(text)
    except Exception as e:  # multiaddr raises several types for bad input
        raise ConfigError(f"invalid multiaddr {text!r}: {e}") from None


def split_p2p_maddr(text: str) -> tuple[str, str]:
    """'/ip4/…/tcp/…/p2p/ID' -> ('/ip4/…/tcp/…', 'ID')."""
    ma = parse_maddr(text)
    try:
        peer = ma.value_for_protocol("p2p")
    except LookupError:  # multiaddr's ProtocolLookupError: no /p2p part
        peer = None
    if not peer:
        raise ConfigError(f"multiaddr {text!r} has no /p2p/<peer id> part")
    return str(ma.decapsulate(multiaddr.Multiaddr(f"/p2p/{peer}"))), str(peer)

"""Multiaddrs as the configuration and the cluster map spell them.

Kept apart from the libp2p transport so that reading configs and maps does not import
py-libp2p (~0.6 s).
"""

from __future__ import annotations

import ipaddress

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


def announced(listen: list[str], host: str | None) -> list[str]:
    """The addresses peers are told to dial: ``listen`` with its host replaced by
    ``host`` when one is set (a node that binds 0.0.0.0 behind an address of its own).
    An unspecified host (0.0.0.0, ::) cannot be dialed, so announcing one is refused."""
    out = []
    for a in listen:
        parts = a.split("/")  # "", "ip4", host, "tcp", port, …
        if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
            out.append(a)
            continue
        if host is not None:
            parts[1:3] = [_ip_proto(host), host]
        elif ipaddress.ip_address(parts[2]).is_unspecified:
            raise ConfigError(
                f"this node listens on {a}, and no peer can dial {parts[2]}: give "
                "--announce-host (addresses.announce_host in config.json) with this "
                "machine's address as the other nodes reach it")
        out.append("/".join(parts))
    return out


def _ip_proto(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"the announced host must be an IP address, got {host!r}") from None
    if ip.is_unspecified:
        raise ConfigError(f"the announced host must be one that peers can dial, not {host}")
    return "ip4" if ip.version == 4 else "ip6"


def check_announce_host(host: str | None) -> None:
    if host is not None:
        _ip_proto(host)

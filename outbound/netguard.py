"""The private-network (SSRF) guard shared by the fetcher and every outbound channel.

Pure decision (`refusal_reason`) apart from the one I/O step (`resolve`).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

SETTING = "security.allow_private_networks"


class PrivateNetworkRefused(Exception):
    """The target resolves to an address the configuration does not allow."""


def _is_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def refusal_reason(host: str, addresses: list[str]) -> str | None:
    """Return why a host resolving to `addresses` is refused, or None when all are public."""
    for raw in addresses:
        address = ipaddress.ip_address(raw.split("%", 1)[0])
        if _is_private(address):
            return (
                f"{host} resolves to {address}, a private, loopback, link-local or reserved "
                f"address; refused because allow_private_networks is false "
                f"(set {SETTING}: true or MP_SECURITY__ALLOW_PRIVATE_NETWORKS=true to allow it)"
            )
    return None


def resolve(host: str, port: int | None = None) -> list[str]:
    """Every address `host` resolves to (blocking DNS look-up in the caller's thread)."""
    infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    return sorted({info[4][0] for info in infos})


def allowed_explicitly(
    host: str, port: int | None, addresses: list[str], allowed: tuple[str, ...]
) -> bool:
    """True when an entry of security.allowed_private_targets names this destination.

    Entries are a host, host:port, or a CIDR that every resolved address falls in.
    """
    host = host.lower()
    for entry in allowed:
        entry = entry.lower().strip()
        if "/" in entry:
            network = ipaddress.ip_network(entry, strict=False)
            if addresses and all(
                ipaddress.ip_address(a.split("%", 1)[0]) in network for a in addresses
            ):
                return True
        elif entry in (host, f"{host}:{port}"):
            return True
    return False


def check_url(url: str, allow_private_networks: bool, allowed: tuple[str, ...] = ()) -> None:
    """Raise PrivateNetworkRefused when `url`'s host is private and that is not allowed.

    `allowed` lists destinations an operator opened on purpose (allowed_private_targets).
    Raises ValueError for a URL without a host and OSError when the name does not resolve.
    """
    if allow_private_networks:
        return
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    addresses = resolve(parts.hostname, parts.port)
    reason = refusal_reason(parts.hostname, addresses)
    if reason and not allowed_explicitly(parts.hostname, parts.port, addresses, allowed):
        raise PrivateNetworkRefused(reason)

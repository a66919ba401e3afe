"""Addresses: the one ``Address`` type, and which addresses are local networks."""

from __future__ import annotations

import ipaddress
from typing import Final

#: ``(host, port)``: an IP address in text and a UDP port.
Address = tuple[str, int]

#: Networks a LAN address may be in (RFC 1918, RFC 6598 shared, link-local, loopback,
#: RFC 4193 unique local). Python's is_private also admits documentation and other
#: special ranges, which are not local networks.
LOCAL_NETWORKS: Final = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "127.0.0.0/8", "fc00::/7", "fe80::/10", "::1/128"))


def is_local_address(host: str) -> bool:
    """True for an address of a local network: a datagram sent there stays inside the
    sender's own network, so a peer may name one as its LAN address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in net for net in LOCAL_NETWORKS if net.version == ip.version)

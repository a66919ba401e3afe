"""Which addresses of a player the handshake server passes on, and in what order.

A peer reports its own candidate addresses; the handshake server never trusts them as given, since
the other player will send datagrams to whatever it is told (a "packet cannon"):

- PUBLIC: the source address of the request as the handshake server saw it, added by it;
  PUBLIC entries a peer reports are ignored.
- LAN: kept only in a local range (RFC 1918, 6598, 4193, link-local, loopback), where
  a stray datagram stays inside the player's own network.
- MAPPED: a port mapping on the player's router, kept only if its IP is the source IP
  (the router's public address): a peer can aim only at its own router.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from framework.protocol.addresses import Address, is_local_address
from framework.protocol.constants import MAX_CANDIDATES
from framework.protocol.wire import CandidateKind

Candidate = list[Any]  # [ip: str, port: int, kind: int], as on the wire

def _same_ip(a: str, b: str) -> bool:
    try:
        x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    if isinstance(x, ipaddress.IPv6Address) and x.ipv4_mapped is not None:
        x = x.ipv4_mapped
    if isinstance(y, ipaddress.IPv6Address) and y.ipv4_mapped is not None:
        y = y.ipv4_mapped
    return x == y


def candidates_of(source: Address, reported: list[Candidate]) -> list[Candidate]:
    """The candidates to pass on for a peer at ``source`` that reported ``reported``
    (already checked by the wire's schema): PUBLIC first, then LAN, then MAPPED."""
    public: Candidate = [source[0], source[1], int(CandidateKind.PUBLIC)]
    lan: list[Candidate] = []
    mapped: list[Candidate] = []
    seen = {(source[0], source[1])}
    for ip, port, kind in reported:
        if (ip, port) in seen:
            continue
        if kind == CandidateKind.LAN and is_local_address(ip):
            lan.append([ip, port, int(CandidateKind.LAN)])
        elif kind == CandidateKind.MAPPED and _same_ip(ip, source[0]):
            mapped.append([ip, port, int(CandidateKind.MAPPED)])
        else:
            continue
        seen.add((ip, port))
    room = MAX_CANDIDATES - 1
    # One mapping keeps its place even beside many LAN addresses: behind a NAT that
    # defeats punching, it is the path that works.
    keep_mapped = mapped[:1]
    lan = lan[:room - len(keep_mapped)]
    mapped = mapped[:room - len(lan)]
    return [public, *lan, *mapped]

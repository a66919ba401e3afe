"""The people of a session, as the state machine sees them, and its constants."""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import crypto
from .connection import Connection

Address = tuple[str, int]
RandomBytes = Callable[[int], bytes]

# System messages on SYSTEM_CHANNEL: msgpack arrays whose first element is one of these.
SYS_PING = 0
SYS_PEERS = 1
SYS_FORWARD = 2
SYS_FORWARDED = 3
SYS_FORWARD_FAILED = 4
SYS_BYE = 5

#: Clients a server player may be connecting to at once (introduced, not yet confirmed).
MAX_PENDING = 8
#: After a wrong password, the same IP address is not heard for 2^(failures-1) seconds,
#: up to this many: online guessing gets slow fast.
MAX_AUTH_PENALTY = 60.0

#: While a peer is reached through the relay, try the direct path again this often.
DIRECT_RETRY_INTERVAL = 5.0


#: Networks a LAN address may be in (RFC 1918, RFC 6598 shared, link-local, loopback,
#: RFC 4193 unique local). Python's is_private also admits documentation and other
#: special ranges, which are not local networks.
LOCAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    "127.0.0.0/8", "fc00::/7", "fe80::/10", "::1/128"))


def is_local_address(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in net for net in LOCAL_NETWORKS if net.version == ip.version)


def relay_address(relay_id: bytes) -> Address:
    """The stand-in address of a peer reached through the handshake server's relay."""
    return (f"relay-{relay_id.hex()}", 0)


class Role(enum.Enum):
    NONE = "none"
    SERVER = "server"
    CLIENT = "client"


class PeerState(enum.Enum):
    PUNCHING = "punching"
    HANDSHAKE = "handshake"  # path found; proving the password
    CONNECTED = "connected"


@dataclass
class Remote:
    """Another player we are connecting or connected to directly."""

    name: str
    intro_nonce: bytes
    candidates: list[tuple[Address, str]]
    deadline: float
    password_required: bool = False
    state: PeerState = PeerState.PUNCHING
    address: Address | None = None
    path: str = "direct"
    next_punch: float = 0.0
    punch_count: int = 0
    client_nonce: bytes = b""
    server_nonce: bytes = b""
    next_resend: float = 0.0
    attempts: int = 0
    connection: Connection | None = None
    punch_started: float = 0.0
    relay_id: bytes | None = None
    relay_requested: bool = False
    next_direct_try: float = 0.0
    # When our last handshake datagram left, and whether it was a resend (Karn: a
    # resent exchange gives no round-trip sample).
    sent_at: float = 0.0
    resent: bool = False

    @property
    def punch_id(self) -> bytes:
        return crypto.punch_id(self.intro_nonce)


@dataclass
class Known:
    """A peer of the session we only reach through the server player."""

    name: str
    address: Address


@dataclass
class ListQuery:
    address: Address
    servers: list[dict[str, Any]] = field(default_factory=list)



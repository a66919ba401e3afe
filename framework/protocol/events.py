"""What the engine tells the game: one small frozen dataclass per signal of the Godot
Holepunch API (the original this engine is a Python form of).

The ``Peer`` shell turns each into a pygame event of the matching type
(``framework.events``); the dataclass fields become the event's attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .addresses import Address


@dataclass(frozen=True, slots=True)
class ClientConfirmed:
    """On the server player: a client joined and proved the password."""

    new_peer: str  #: name of the new client


@dataclass(frozen=True, slots=True)
class ConfirmedAsClient:
    """On a client: the server player accepted us; the session is on."""

    server_address: Address  #: the address we reach the server player at


@dataclass(frozen=True, slots=True)
class ConfirmedAsServer:
    """On the server player: the handshake server registered us (or, hosting on the
    local network only, the game is open at once)."""

    #: the handshake server that registered us; None when hosting with none (LAN only)
    handshake_address: Address | None


@dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong; ``message`` says what, for a person to read."""

    message: str


@dataclass(frozen=True, slots=True)
class PacketBlocked:
    """A datagram was dropped: malformed, unexpected, or from an address not allowed."""

    sender_address: Address


@dataclass(frozen=True, slots=True)
class PacketReceived:
    """A datagram arrived (only with ``Config.emit_packet_events``)."""

    packet_data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PacketSent:
    """A datagram was sent (only with ``Config.emit_packet_events``)."""

    packet_data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PeerConnectionFailed:
    """No path to a peer could be found (hole punching and the handshake both failed)."""

    peer_name: str


@dataclass(frozen=True, slots=True)
class PeerListUpdated:
    """The session's peers changed; ``peer_names`` are the others, without us."""

    peer_names: list[str]


@dataclass(frozen=True, slots=True)
class PeerTimeout:
    """A peer stopped answering peer checks."""

    peer_name: str


@dataclass(frozen=True, slots=True)
class ReceivedReliableMessageFromPeer:
    """A reliable message arrived: ``packet_data`` has from, to, message, message_id
    (and channel, delivery)."""

    packet_data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReceivedServerList:
    """The handshake server's list of registered servers, or the games that answered on
    the local network (their entries also have ``address`` and ``lan: True``)."""

    server_names: list[str]
    servers: list[dict[str, Any]] = field(default_factory=list)
    #: True for the answer to ``request_lan_server_list()`` (even an empty one)
    lan: bool = False


@dataclass(frozen=True, slots=True)
class ReceivedUnreliableMessageFromPeer:
    """An unreliable message arrived: ``packet_data`` has from, to, message (and channel,
    delivery)."""

    packet_data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReliableMessageTimeout:
    """A reliable message was never acknowledged: ``packet_data`` has from, to, message,
    message_id."""

    packet_data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SessionTerminated:
    """The session ended; ``reason`` says why."""

    reason: str


@dataclass(frozen=True, slots=True)
class PathChanged:
    """The way datagrams reach a peer changed ("direct", "lan", "relay", "server-player")."""

    peer_name: str
    path: str


EngineEvent = (
    ClientConfirmed | ConfirmedAsClient | ConfirmedAsServer | Error | PacketBlocked
    | PacketReceived | PacketSent | PeerConnectionFailed | PeerListUpdated | PeerTimeout
    | ReceivedReliableMessageFromPeer | ReceivedServerList | ReceivedUnreliableMessageFromPeer
    | ReliableMessageTimeout | SessionTerminated | PathChanged
)

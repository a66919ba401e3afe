"""The engine's pygame event types.

Each name is a pygame event type reserved with ``pygame.event.custom_type()``; the
event's attributes are the fields of the matching dataclass in
``framework.protocol.events``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pygame

from .protocol import events as ev

CLIENT_CONFIRMED: int = pygame.event.custom_type()
CONFIRMED_AS_CLIENT: int = pygame.event.custom_type()
CONFIRMED_AS_SERVER: int = pygame.event.custom_type()
ERROR: int = pygame.event.custom_type()
PACKET_BLOCKED: int = pygame.event.custom_type()
PACKET_RECEIVED: int = pygame.event.custom_type()
PACKET_SENT: int = pygame.event.custom_type()
PEER_CONNECTION_FAILED: int = pygame.event.custom_type()
PEER_LIST_UPDATED: int = pygame.event.custom_type()
PEER_TIMEOUT: int = pygame.event.custom_type()
RECEIVED_RELIABLE_MESSAGE_FROM_PEER: int = pygame.event.custom_type()
RECEIVED_SERVER_LIST: int = pygame.event.custom_type()
RECEIVED_UNRELIABLE_MESSAGE_FROM_PEER: int = pygame.event.custom_type()
RELIABLE_MESSAGE_TIMEOUT: int = pygame.event.custom_type()
SESSION_TERMINATED: int = pygame.event.custom_type()
#: Not in the Godot Holepunch API: the way datagrams reach a peer changed (attributes
#: peer_name, path).
PATH_CHANGED: int = pygame.event.custom_type()

EVENT_TYPES: dict[type[Any], int] = {
    ev.ClientConfirmed: CLIENT_CONFIRMED,
    ev.ConfirmedAsClient: CONFIRMED_AS_CLIENT,
    ev.ConfirmedAsServer: CONFIRMED_AS_SERVER,
    ev.Error: ERROR,
    ev.PacketBlocked: PACKET_BLOCKED,
    ev.PacketReceived: PACKET_RECEIVED,
    ev.PacketSent: PACKET_SENT,
    ev.PeerConnectionFailed: PEER_CONNECTION_FAILED,
    ev.PeerListUpdated: PEER_LIST_UPDATED,
    ev.PeerTimeout: PEER_TIMEOUT,
    ev.ReceivedReliableMessageFromPeer: RECEIVED_RELIABLE_MESSAGE_FROM_PEER,
    ev.ReceivedServerList: RECEIVED_SERVER_LIST,
    ev.ReceivedUnreliableMessageFromPeer: RECEIVED_UNRELIABLE_MESSAGE_FROM_PEER,
    ev.ReliableMessageTimeout: RELIABLE_MESSAGE_TIMEOUT,
    ev.SessionTerminated: SESSION_TERMINATED,
    ev.PathChanged: PATH_CHANGED,
}

#: Event type -> its name, for logging and debugging.
NAMES: dict[int, str] = {
    value: name for name, value in globals().items() if name.isupper() and isinstance(value, int)
}


_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in EVENT_TYPES
}


def to_pygame(event: ev.EngineEvent) -> pygame.event.Event:
    """Turn an engine event into a pygame event of the matching type."""
    cls = type(event)
    return pygame.event.Event(EVENT_TYPES[cls], {n: getattr(event, n) for n in _FIELDS[cls]})


__all__ = [name for name in NAMES.values()] + ["EVENT_TYPES", "NAMES", "to_pygame"]

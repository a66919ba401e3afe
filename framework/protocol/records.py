"""What the connection keeps about its messages and datagrams."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .delivery import Delivery

if TYPE_CHECKING:
    from .reliable import ReliableSender


class Group:
    """One reliable message as the game sent it (one or more fragments)."""

    __slots__ = ("channel", "expired", "expires", "message", "message_id", "mode", "parts")

    def __init__(self, message_id: int, message: object, mode: Delivery, channel: int,
                 expires: bool = True) -> None:
        self.expires = expires
        self.message_id = message_id
        self.message = message
        self.mode = mode
        self.channel = channel
        self.parts: list[Outgoing] = []
        self.expired = False


class Outgoing:
    """One reliable item on the wire (a whole message or one fragment)."""

    __slots__ = ("acked", "count", "due", "failed", "first_sent", "flags", "group", "index",
                 "item", "key", "last_sent", "sender", "seq")

    def __init__(self, key: int, seq: int, flags: int, item: bytes, group: Group,
                 index: int, count: int, sender: ReliableSender) -> None:
        self.key = key
        self.sender = sender  # the stream it belongs to, which is told of its ack
        self.seq = seq
        self.flags = flags
        self.item = item
        self.group = group
        self.index = index
        self.count = count
        self.due = math.inf
        self.failed = 0
        self.first_sent = math.inf
        self.last_sent = math.inf
        self.acked = False


@dataclass(slots=True)
class SentPacket:
    seq: int
    time: float
    reliable: list[Outgoing]
    acked: bool = False
    settled: bool = False  # acknowledged or counted lost
    prompt: bool = False  # the other side acks it at once: a fair round-trip sample


class Delivered:
    """A message that arrived and may be handed to the game (or the engine).

    A plain class, not a dataclass: one is made per message, and a compiled dataclass
    keeps the interpreted ``__init__`` that ``dataclasses`` generates."""

    __slots__ = ("channel", "message_id", "mode", "value")

    def __init__(self, channel: int, mode: Delivery, message_id: int | None,
                 value: Any) -> None:
        self.channel = channel
        self.mode = mode
        self.message_id = message_id
        self.value = value

    def __repr__(self) -> str:
        return (f"Delivered(channel={self.channel!r}, mode={self.mode!r}, "
                f"message_id={self.message_id!r}, value={self.value!r})")


@dataclass(slots=True)
class Counters:
    packets_sent: int = 0
    packets_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    messages_resent: int = 0
    messages_expired: int = 0
    packets_lost: int = 0
    packets_acked: int = 0
    duplicates: int = 0  # copies (or replays) of datagrams already accepted

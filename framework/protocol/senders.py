"""Send side of the message streams: one small class per delivery mode (LiteNetLib's
channels behind ``BaseChannel``), the counterpart of channels.py's receive classes.

Every (channel, mode) pair has its own sender. ``send`` turns an encoded message into
wire items (wire.data) and queues them in the connection's ``Outbox``; the connection
takes the items when it builds datagrams, and hands acks back to the reliable senders.
A new delivery mode is a new ``SendChannel`` subclass in its own file, listed in
``connection.SENDERS``, plus its receive class in channels.py.
"""

from __future__ import annotations

from itertools import count
from typing import TYPE_CHECKING

from .delivery import Delivery
from .errors import MessageTooLarge
from .records import Group
from .sequence import SEQ_MASK
from .wire import ITEM_ROOM, encode_sequenced, encode_unreliable, message_flags

if TYPE_CHECKING:
    from .reliable import ReliableSender


class Outbox:
    """What the senders of one connection queue for its next datagrams."""

    __slots__ = ("active", "keys", "max_size", "unreliable")

    def __init__(self, max_size: int) -> None:
        #: Items sent once, in the order they were sent.
        self.unreliable: list[bytes] = []
        #: Reliable senders with messages waiting for their first trip, by stream key.
        self.active: dict[int, ReliableSender] = {}
        #: Numbers every reliable piece of the connection (unique timer tie-breakers).
        self.keys = count()
        #: Largest reliable message, in encoded bytes.
        self.max_size = max_size


class SendChannel:
    """The send side of one stream."""

    __slots__ = ("channel", "flags", "mode", "outbox")

    #: Whether this mode is resent until acknowledged (its sender keeps what is in flight).
    reliable = False

    def __init__(self, mode: Delivery, channel: int, outbox: Outbox) -> None:
        self.mode = mode
        self.channel = channel
        self.flags = message_flags(mode, channel)
        self.outbox = outbox

    def send(self, payload: bytes, message_id: int, message: object,
             expires: bool | None) -> Group | None:
        """Queue one encoded message; return its Group when it is reliable."""
        raise NotImplementedError


def _fits(item: bytes) -> bytes:
    if len(item) > ITEM_ROOM:
        raise MessageTooLarge(
            f"unreliable message of {len(item)} bytes does not fit one datagram "
            f"({ITEM_ROOM} bytes of room); send it reliably to have it fragmented")
    return item


class UnreliableSender(SendChannel):
    """Delivery.UNRELIABLE: one item, sent once."""

    __slots__ = ()

    def send(self, payload: bytes, message_id: int, message: object,
             expires: bool | None) -> Group | None:
        self.outbox.unreliable.append(_fits(encode_unreliable(self.flags, payload)))
        return None


class SequencedSender(SendChannel):
    """Delivery.UNRELIABLE_SEQUENCED: one item, sent once, numbered so that the receiver
    drops anything older than what it already has."""

    __slots__ = ("_seq",)

    def __init__(self, mode: Delivery, channel: int, outbox: Outbox) -> None:
        super().__init__(mode, channel, outbox)
        self._seq = 0

    def send(self, payload: bytes, message_id: int, message: object,
             expires: bool | None) -> Group | None:
        seq = self._seq
        self._seq = (seq + 1) & SEQ_MASK
        self.outbox.unreliable.append(_fits(encode_sequenced(self.flags, seq, payload)))
        return None

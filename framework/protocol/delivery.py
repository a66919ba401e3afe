"""Delivery modes. Each mode's guarantee is stated here, once."""

from __future__ import annotations

import enum
from typing import Final


class Delivery(enum.IntEnum):
    """How a message travels. Every channel has one independent stream per mode.

    The value is the two low bits of a message's flags on the wire.
    """

    #: Sent once. May be lost, duplicated or arrive out of order. Must fit one datagram.
    UNRELIABLE = 0
    #: Sent once. May be lost; never delivered after a newer message of the same channel
    #: (stale and duplicate ones are dropped). Must fit one datagram. For state snapshots
    #: and inputs, where only the latest matters.
    UNRELIABLE_SEQUENCED = 1
    #: Resent until acknowledged; delivered exactly once, as soon as it arrives, in any
    #: order. Large messages are fragmented.
    RELIABLE_UNORDERED = 2
    #: Resent until acknowledged; delivered exactly once and in the order sent within its
    #: channel. A gap on one channel never holds back another channel. Large messages are
    #: fragmented.
    RELIABLE_ORDERED = 3

    @property
    def reliable(self) -> bool:
        return self in _RELIABLE


#: Flag bits next to the mode in a message's flags byte: bit 2 fragment, bit 3 cancelled,
#: bits 4-7 channel.
FLAG_FRAGMENT: Final = 0x04
FLAG_CANCEL: Final = 0x08
MODE_MASK: Final = 0x03
CHANNEL_SHIFT: Final = 4


_RELIABLE: Final = frozenset({Delivery.RELIABLE_UNORDERED, Delivery.RELIABLE_ORDERED})

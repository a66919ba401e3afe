"""What one connection owes the other side: which of its datagrams arrived, and when to
say so.

Every datagram we send carries the newest packet sequence received and a 32-bit field
for the 32 before it (Glenn Fiedler's "reliable" scheme), so acks ride on ordinary
traffic. When more than 33 datagrams arrived between two of ours, extra ack-only
datagrams cover the ones the field cannot reach.
"""

from __future__ import annotations

import math

from .constants import ACK_DELAY, SENT_BUFFER
from .sequence import HALF, SEQ_MASK, seq_greater


class AckTracker:
    """Packet sequences received, and the deadline of a lone ack."""

    __slots__ = ("_received", "_unacked", "bits", "due", "newest")

    def __init__(self) -> None:
        self.newest = -1  # newest packet sequence received; -1 before any
        self.bits = 0
        # Which packet sequences arrived (slot seq % SENT_BUFFER holds seq): for extra
        # acks when more than 33 packets arrive between two datagrams of ours.
        self._received: list[int] = [-1] * SENT_BUFFER
        self._unacked: list[int] = []  # sequences received since our last poll
        self.due = math.inf  # when a lone ack must go out, if nothing else does

    def field(self) -> tuple[int, int]:
        """(ack, ack_bits) for the next datagram."""
        return self.newest & SEQ_MASK, self.bits

    def received(self, seq: int, now: float, items: bool, prompt: bool) -> None:
        """A datagram arrived. ``prompt``: it carried reliable messages or a ping, which
        are acknowledged at the next poll; other items within ACK_DELAY."""
        self._received[seq % SENT_BUFFER] = seq
        self._unacked.append(seq)
        newest = self.newest
        if newest < 0:
            self.newest = seq
            self.bits = 0
        elif seq_greater(seq, newest):
            shift = (seq - newest) & SEQ_MASK
            bits = (self.bits << shift) | (1 << (shift - 1)) if shift <= 32 else 0
            self.bits = bits & 0xFFFFFFFF
            self.newest = seq
        else:
            d = (newest - seq) & SEQ_MASK
            if 0 < d <= 32:
                self.bits |= 1 << (d - 1)
        if prompt:
            self.due = now
        elif items and self.due == math.inf:
            self.due = now + ACK_DELAY

    def pending(self) -> bool:
        return bool(self._unacked)

    def extra_fields(self) -> list[tuple[int, int]]:
        """Ack fields for packets received since the last poll that the newest field
        cannot reach (more than 32 behind it)."""
        newest = self.newest
        pending = sorted({(newest - s) & SEQ_MASK for s in self._unacked})
        self._unacked = []
        fields: list[tuple[int, int]] = []
        anchor = None
        received = self._received
        for back in pending:
            if back <= 32 or back >= HALF:
                continue
            if anchor is not None and back - anchor <= 32:
                continue
            anchor = back
            a = (newest - back) & SEQ_MASK
            bits = 0
            for i in range(1, 33):
                s = (a - i) & SEQ_MASK
                if received[s % SENT_BUFFER] == s:
                    bits |= 1 << (i - 1)
            fields.append((a, bits))
        return fields

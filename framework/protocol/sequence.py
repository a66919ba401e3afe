"""16-bit sequence numbers that wrap (RFC 1982 serial number arithmetic).

Packet sequences, message sequences and acks are all 16 bits on the wire. Wrapping
arithmetic is written inline as ``(a + n) & SEQ_MASK`` (it runs per item and per ack
bit, where a function call would cost more than the sum); comparison, the part that is
easy to get wrong, is ``seq_greater``.
"""

from __future__ import annotations

from typing import Final

SEQ_MASK: Final = 0xFFFF
HALF: Final = 1 << 15


def seq_greater(a: int, b: int) -> bool:
    """True when ``a`` is newer than ``b``, across the wrap from 65535 to 0."""
    return a != b and ((a - b) & SEQ_MASK) < HALF

"""16-bit sequence numbers that wrap (RFC 1982 serial number arithmetic)."""

from __future__ import annotations

SEQ_MOD = 1 << 16
HALF = 1 << 15


def seq_greater(a: int, b: int) -> bool:
    """True when ``a`` is newer than ``b``, across the wrap from 65535 to 0."""
    return a != b and ((a - b) & 0xFFFF) < HALF


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in the range -32768 .. 32767."""
    d = (a - b) & 0xFFFF
    return d - SEQ_MOD if d >= HALF else d


def seq_next(a: int) -> int:
    return (a + 1) & 0xFFFF

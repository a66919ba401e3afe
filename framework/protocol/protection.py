"""Packet protection of a session's DATA datagrams: encryption, packet numbers, replays.

As in WireGuard and QUIC: each direction has its own ChaCha20-Poly1305 key from the
handshake; the nonce is the datagram's full 64-bit packet number, of which the wire
carries the low 16 bits (the receiver takes the value nearest the highest it has seen,
RFC 9000 appendix A.3). The header and those 16 bits are authenticated as associated
data; everything after them is encrypted. A packet number is accepted once: a sliding
window (RFC 6479's idea) remembers the last 1024, and anything older is refused, so a
replayed or duplicated datagram changes nothing, not even a timer.
"""

from __future__ import annotations

from .constants import REPLAY_WINDOW
from .crypto import AEAD_TAG_SIZE, KEY_SIZE, Aead, CryptoError, RandomBytes
from .errors import ProtocolError
from .sequence import HALF, SEQ_MASK
from .wire import DATA_PREFIX_SIZE, data_prefix


class Duplicate(Exception):
    """A datagram whose packet number was already accepted (a copy or a replay)."""


class ReplayWindow:
    """Which of the last REPLAY_WINDOW packet numbers have been accepted."""

    __slots__ = ("_bits", "highest")

    def __init__(self) -> None:
        self.highest = -1
        self._bits = 0  # bit i: packet number highest - i was accepted

    def check(self, number: int) -> None:
        """Raise Duplicate or ProtocolError unless ``number`` may be accepted."""
        if number > self.highest:
            return
        back = self.highest - number
        if back >= REPLAY_WINDOW:
            raise ProtocolError("DATA too old to tell from a replay")
        if (self._bits >> back) & 1:
            raise Duplicate

    def accept(self, number: int) -> None:
        if number > self.highest:
            shift = number - self.highest
            self._bits = ((self._bits << shift) | 1) & ((1 << REPLAY_WINDOW) - 1) \
                if shift < REPLAY_WINDOW else 1
            self.highest = number
        else:
            self._bits |= 1 << (self.highest - number)


class PacketProtection:
    """Seal and open one session's DATA datagrams (one per peer connection)."""

    __slots__ = ("_open", "_seal", "next_number", "window")

    def __init__(self, send_key: bytes, receive_key: bytes) -> None:
        if send_key == receive_key:
            raise ValueError("each direction needs its own key")
        self._seal = Aead(send_key)
        self._open = Aead(receive_key)
        self.next_number = 0
        self.window = ReplayWindow()

    @classmethod
    def pair(cls, random_bytes: RandomBytes) -> tuple[PacketProtection, PacketProtection]:
        """Two matching ends with fresh keys (for tests and benchmarks of a connection)."""
        a, b = random_bytes(KEY_SIZE), random_bytes(KEY_SIZE)
        return cls(a, b), cls(b, a)

    def seal(self, plaintext: bytes) -> bytes:
        """A whole DATA datagram carrying ``plaintext``, under the next packet number."""
        number = self.next_number
        self.next_number = number + 1
        head = data_prefix(number)
        return head + self._seal.seal_counter(number, plaintext, head)

    def open(self, data: bytes) -> tuple[int, bytes]:
        """(full packet number, plaintext) of a DATA datagram.

        Raises Duplicate for a copy of one already accepted, ProtocolError for anything
        forged, damaged or too old. Nothing changes until ``accept`` is called.
        """
        if len(data) < DATA_PREFIX_SIZE + AEAD_TAG_SIZE:
            raise ProtocolError("DATA too short for its tag")
        head = data[:DATA_PREFIX_SIZE]
        low = int.from_bytes(head[-2:], "big")
        expected = self.window.highest + 1
        number = (expected & ~SEQ_MASK) | low
        if number < expected - HALF:
            number += SEQ_MASK + 1
        elif number > expected + HALF and number > SEQ_MASK:
            number -= SEQ_MASK + 1
        self.window.check(number)
        try:
            plaintext = self._open.open_counter(number, data[DATA_PREFIX_SIZE:], head)
        except CryptoError as exc:
            raise ProtocolError("DATA that does not decrypt") from exc
        return number, plaintext

    def accept(self, number: int) -> None:
        """Mark a packet number as seen, once its datagram proved valid."""
        self.window.accept(number)

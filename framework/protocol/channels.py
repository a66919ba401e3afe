"""Receive side of the message streams: ordering, deduplication and reassembly.

Every (channel, mode) pair is its own stream with its own 16-bit message sequence, so a
gap on one never holds back another. Reliable streams keep a window of
``RELIABLE_WINDOW`` sequence numbers from ``base`` (the oldest one not yet settled);
the sender never runs ahead of that window, so the buffer is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .constants import RELIABLE_WINDOW
from .errors import ProtocolError
from .sequence import HALF, seq_greater
from .values import decode_value

WHOLE = 0
FRAGMENT = 1
CANCEL = 2
DONE = 3


@dataclass(slots=True)
class Entry:
    """One received reliable item waiting in a stream's buffer."""

    kind: int
    message_id: int
    payload: Any = None  # the value (WHOLE) or the chunk bytes (FRAGMENT)
    index: int = 0
    count: int = 1


_DONE = Entry(DONE, -1)


class ReassemblyBudget:
    """Bytes of fragments buffered across all peers, against a cap."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class ReliableReceiver:
    """One reliable stream's receive state (ordered or unordered)."""

    __slots__ = ("base", "buf", "buffered_bytes", "ordered")

    def __init__(self, ordered: bool) -> None:
        self.ordered = ordered
        self.base = 0
        self.buf: dict[int, Entry] = {}
        self.buffered_bytes = 0

    def check(self, seq: int) -> bool:
        """Whether ``seq`` is new (in the window). Raises for a sequence past the window."""
        d = (seq - self.base) & 0xFFFF
        if d >= HALF:
            return False  # older than base: a duplicate of something settled
        if d >= RELIABLE_WINDOW:
            raise ProtocolError("reliable message beyond the receive window")
        return seq not in self.buf

    def release(self) -> int:
        """Drop everything buffered; return the fragment bytes freed."""
        freed = self.buffered_bytes
        self.buf.clear()
        self.buffered_bytes = 0
        return freed

    def receive(self, seq: int, entry: Entry, out: list[tuple[int, Any]]) -> int:
        """Take one item; append deliverable (message_id, value) pairs to ``out``.

        Returns the change in buffered fragment bytes (positive or negative).
        """
        if not self.check(seq):
            return 0
        before = self.buffered_bytes
        if entry.kind == FRAGMENT:
            self.buffered_bytes += len(entry.payload)
        if self.ordered:
            self.buf[seq] = entry
            self._deliver_ordered(out)
        else:
            self._receive_unordered(seq, entry, out)
        return self.buffered_bytes - before

    def _pop(self, seq: int) -> Entry:
        e = self.buf.pop(seq)
        if e.kind == FRAGMENT:
            self.buffered_bytes -= len(e.payload)
        return e

    def _deliver_ordered(self, out: list[tuple[int, Any]]) -> None:
        buf = self.buf
        while True:
            base = self.base
            e = buf.get(base)
            if e is None:
                return
            if e.kind == WHOLE:
                del buf[base]
                out.append((e.message_id, e.payload))
                self.base = (base + 1) & 0xFFFF
                continue
            if e.kind != FRAGMENT or e.index != 0:
                # A cancelled message, or a piece of a message whose start was cancelled.
                self._pop(base)
                self.base = (base + 1) & 0xFFFF
                continue
            seqs = [(base + i) & 0xFFFF for i in range(e.count)]
            parts = [buf.get(s) for s in seqs]
            if any(p is None for p in parts):
                return  # wait for the rest
            whole = all(
                p is not None and p.kind == FRAGMENT and p.message_id == e.message_id
                and p.index == i
                for i, p in enumerate(parts)
            )
            chunks = [self._pop(s).payload for s in seqs]
            self.base = (base + e.count) & 0xFFFF
            if whole:
                self._deliver_joined(e.message_id, chunks, out)

    def _receive_unordered(self, seq: int, entry: Entry, out: list[tuple[int, Any]]) -> None:
        buf = self.buf
        if entry.kind == WHOLE:
            buf[seq] = _DONE
            out.append((entry.message_id, entry.payload))
        elif entry.kind == CANCEL:
            first = (seq - entry.index) & 0xFFFF
            for i in range(entry.count):
                s = (first + i) & 0xFFFF
                d = (s - self.base) & 0xFFFF
                if d >= RELIABLE_WINDOW:
                    continue
                if s in buf:
                    if buf[s].kind == FRAGMENT:
                        self._pop(s)
                        buf[s] = _DONE
                else:
                    buf[s] = _DONE
        else:
            buf[seq] = entry
            first = (seq - entry.index) & 0xFFFF
            seqs = [(first + i) & 0xFFFF for i in range(entry.count)]
            parts = [buf.get(s) for s in seqs]
            if all(
                p is not None and p.kind == FRAGMENT and p.message_id == entry.message_id
                and p.index == i
                for i, p in enumerate(parts)
            ):
                chunks = []
                for s in seqs:
                    chunks.append(self._pop(s).payload)
                    buf[s] = _DONE
                self._deliver_joined(entry.message_id, chunks, out)
        while buf.get(self.base) is _DONE:
            del buf[self.base]
            self.base = (self.base + 1) & 0xFFFF

    @staticmethod
    def _deliver_joined(message_id: int, chunks: list[Any], out: list[tuple[int, Any]]) -> None:
        try:
            value = decode_value(b"".join(chunks))
        except ProtocolError:
            return  # a peer sent a fragmented message that does not decode: dropped
        out.append((message_id, value))


class SequencedReceiver:
    """Unreliable-sequenced stream: only messages newer than the newest seen pass."""

    __slots__ = ("latest",)

    def __init__(self) -> None:
        self.latest: int | None = None

    def accept(self, seq: int) -> bool:
        if self.latest is None or seq_greater(seq, self.latest):
            self.latest = seq
            return True
        return False

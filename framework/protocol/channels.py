"""Receive side of the message streams: ordering, deduplication and reassembly.

Every (channel, mode) pair is its own stream with its own 16-bit message sequence, so a
gap on one never holds back another. Reliable streams keep a window of
``RELIABLE_WINDOW`` sequence numbers from ``base`` (the oldest one not yet settled);
the sender never runs ahead of that window, so the buffer is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .constants import RELIABLE_WINDOW
from .delivery import Delivery
from .errors import ProtocolError
from .records import Delivered
from .sequence import HALF, SEQ_MASK, seq_greater
from .values import decode_value
from .wire import CANCEL, FRAGMENT, SYSTEM_UNRELIABLE, WHOLE, Parsed, stream_key

#: A settled sequence of an unordered stream, kept until ``base`` passes it.
DONE: Final = 3


@dataclass(slots=True)
class Entry:
    """One received reliable item waiting in a stream's buffer."""

    kind: int
    message_id: int
    payload: Any = None  # the value (WHOLE) or the chunk bytes (FRAGMENT)
    index: int = 0
    count: int = 1


_DONE: Final = Entry(DONE, -1)


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
        d = (seq - self.base) & SEQ_MASK
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
                self.base = (base + 1) & SEQ_MASK
                continue
            if e.kind != FRAGMENT or e.index != 0:
                # A cancelled message, or a piece of a message whose start was cancelled.
                self._pop(base)
                self.base = (base + 1) & SEQ_MASK
                continue
            seqs = [(base + i) & SEQ_MASK for i in range(e.count)]
            parts = [buf.get(s) for s in seqs]
            if any(p is None for p in parts):
                return  # wait for the rest
            whole = all(
                p is not None and p.kind == FRAGMENT and p.message_id == e.message_id
                and p.index == i
                for i, p in enumerate(parts)
            )
            chunks = [self._pop(s).payload for s in seqs]
            self.base = (base + e.count) & SEQ_MASK
            if whole:
                self._deliver_joined(e.message_id, chunks, out)

    def _receive_unordered(self, seq: int, entry: Entry, out: list[tuple[int, Any]]) -> None:
        buf = self.buf
        if entry.kind == WHOLE:
            buf[seq] = _DONE
            out.append((entry.message_id, entry.payload))
        elif entry.kind == CANCEL:
            first = (seq - entry.index) & SEQ_MASK
            for i in range(entry.count):
                s = (first + i) & SEQ_MASK
                d = (s - self.base) & SEQ_MASK
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
            first = (seq - entry.index) & SEQ_MASK
            seqs = [(first + i) & SEQ_MASK for i in range(entry.count)]
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
            self.base = (self.base + 1) & SEQ_MASK

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


_UNRELIABLE: Final = int(Delivery.UNRELIABLE)
_SEQUENCED: Final = int(Delivery.UNRELIABLE_SEQUENCED)
_ORDERED: Final = int(Delivery.RELIABLE_ORDERED)
_MODES: Final = tuple(Delivery(i) for i in range(4))
_SYSTEM_KEY: Final = stream_key(SYSTEM_UNRELIABLE)


class Receivers:
    """The receive side of every stream of one connection, created as streams appear."""

    __slots__ = ("_budget", "_limit", "_reliable", "_sequenced")

    def __init__(self, budget: ReassemblyBudget, limit_per_peer: int) -> None:
        self._budget = budget
        self._limit = limit_per_peer
        self._reliable: dict[int, ReliableReceiver] = {}
        self._sequenced: dict[int, SequencedReceiver] = {}

    def admit(self, parsed: list[Parsed]) -> bool:
        """Raise ProtocolError, changing nothing, if an item is past its stream's window or
        the fragments would pass a reassembly limit. Returns whether the datagram asks
        for a prompt ack (reliable messages, or an engine message such as a ping)."""
        extra = 0
        prompt = False
        receivers = self._reliable
        for key, mode, seq, _, value, piece in parsed:
            if mode < 2:
                if key == _SYSTEM_KEY:
                    prompt = True
                continue
            prompt = True
            receiver = receivers.get(key)
            if receiver is not None:
                receiver.check(seq)  # raises beyond the window
            elif seq >= RELIABLE_WINDOW:
                raise ProtocolError("reliable message beyond the receive window")
            if piece is not None and piece[0] == FRAGMENT:
                extra += len(value)
        if extra:
            mine = sum(r.buffered_bytes for r in receivers.values())
            if mine + extra > self._limit:
                raise ProtocolError("reassembly limit for this peer reached")
            if self._budget.used + extra > self._budget.limit:
                raise ProtocolError("reassembly limit for all peers reached")
        return prompt

    def deliver(self, parsed: list[Parsed]) -> list[Delivered]:
        delivered: list[Delivered] = []
        append = delivered.append
        receivers = self._reliable
        for key, mode, seq, mid, value, piece in parsed:
            channel = key >> 2
            if mode == _UNRELIABLE:
                append(Delivered(channel, Delivery.UNRELIABLE, None, value))
                continue
            if mode == _SEQUENCED:
                sr = self._sequenced.get(key)
                if sr is None:
                    sr = self._sequenced[key] = SequencedReceiver()
                if sr.accept(seq):
                    append(Delivered(channel, Delivery.UNRELIABLE_SEQUENCED, None, value))
                continue
            receiver = receivers.get(key)
            if receiver is None:
                receiver = receivers[key] = ReliableReceiver(mode == _ORDERED)
            dmode = _MODES[mode]
            if piece is None and seq == receiver.base and not receiver.buf:
                # The common case: the next message of its stream, nothing waiting.
                receiver.base = (seq + 1) & SEQ_MASK
                append(Delivered(channel, dmode, mid, value))
                continue
            entry = Entry(WHOLE, mid, value) if piece is None else \
                Entry(piece[0], mid, value, piece[1], piece[2])
            ready: list[tuple[int, Any]] = []
            self._budget.used += receiver.receive(seq, entry, ready)
            for rid, rvalue in ready:
                append(Delivered(channel, dmode, rid, rvalue))
        return delivered

    def release(self) -> None:
        """Free reassembly memory held against the shared budget."""
        for r in self._reliable.values():
            self._budget.used -= r.release()

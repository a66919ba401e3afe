"""Packet assembly (aioquic's packet_builder.py): items into DATA datagrams.

Items are batched into as few datagrams as they fit (ITEM_ROOM each); the spare room of
the last one carries copies of reliable messages still unacknowledged (redundancy that
costs bytes, never a datagram). Every datagram gets the current ack field, is sealed by
the packet protection, and is registered with loss recovery.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .acks import AckTracker
from .constants import REDUNDANCY_GAP, REDUNDANCY_MIN_ROOM, REDUNDANCY_SCAN
from .protection import PacketProtection
from .records import Counters, Outgoing
from .recovery import Recovery
from .reliable import ReliableSender
from .sequence import SEQ_MASK
from .stats import RateMeter
from .wire import ITEM_ROOM, encode_data_plaintext


class PacketBuilder:
    """Builds one connection's datagrams and counts what leaves."""

    def __init__(self, protection: PacketProtection, recovery: Recovery, acks: AckTracker,
                 counters: Counters, now: float) -> None:
        self._protection = protection
        self._recovery = recovery
        self._acks = acks
        self._counters = counters
        self._seq = 0
        self.last_sent = now
        self.rate = RateMeter(now)

    def pack(self, items: list[tuple[bytes, Outgoing | None]], now: float, prompt: bool,
             streams: Iterable[ReliableSender]) -> list[bytes]:
        """Datagrams carrying ``items`` in order, the last one filled with copies."""
        datagrams: list[bytes] = []
        batch: list[bytes] = []
        batch_reliable: list[Outgoing] = []
        size = 0
        for item, out in items:
            n = len(item)
            if batch and size + n > ITEM_ROOM:
                datagrams.append(self.build(batch, batch_reliable, now, prompt=prompt))
                batch, batch_reliable, size = [], [], 0
            batch.append(item)
            if out is not None:
                batch_reliable.append(out)
            size += n
        if batch:
            self._fill(batch, batch_reliable, ITEM_ROOM - size, now, streams)
            datagrams.append(self.build(batch, batch_reliable, now, prompt=prompt))
        return datagrams

    @staticmethod
    def _fill(batch: list[bytes], reliable: list[Outgoing], room: int, now: float,
              streams: Iterable[ReliableSender]) -> None:
        """Use the room left in a datagram that goes out anyway for copies of messages
        still unacknowledged: if the datagram that carried one was lost, the copy arrives a
        frame or two later instead of a round trip later."""
        used = 0
        gap = REDUNDANCY_GAP
        for stream in streams:
            for looked, out in enumerate(stream.in_flight.values()):
                if looked >= REDUNDANCY_SCAN or room - used < REDUNDANCY_MIN_ROOM:
                    break
                n = len(out.item)
                # (what went out in this poll has last_sent == now, so is never copied twice)
                if now - out.last_sent >= gap and out.due > now and n <= room - used:
                    batch.append(out.item)
                    reliable.append(out)
                    out.last_sent = now
                    used += n

    def build(self, batch: list[bytes], reliable: list[Outgoing], now: float,
              anchor: tuple[int, int] | None = None, prompt: bool = False) -> bytes:
        """One sealed datagram of these items; ``anchor`` replaces the ack field."""
        seq = self._seq
        self._seq = (seq + 1) & SEQ_MASK
        ack, ack_bits = anchor if anchor is not None else self._acks.field()
        data = self._protection.seal(encode_data_plaintext(ack, ack_bits, batch))
        self._recovery.on_sent(seq, now, reliable, not batch, prompt)
        self._acks.due = math.inf
        self.last_sent = now
        c = self._counters
        c.packets_sent += 1
        c.bytes_sent += len(data)
        self.rate.add(len(data), now)
        return data

    def extra_acks(self, datagrams: list[bytes], now: float) -> None:
        """Lone acks for packets the newest ack field could not reach."""
        for anchor in self._acks.extra_fields():
            datagrams.append(self.build([], [], now, anchor))

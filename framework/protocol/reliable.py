"""The reliable delivery modes' send side: resent until acknowledged.

``ReliableSender`` is one stream (RELIABLE_UNORDERED or RELIABLE_ORDERED: ordering is
the receiver's business, so both send alike): message sequences, fragmenting, the
window of RELIABLE_WINDOW unacknowledged messages. ``Retransmissions`` keeps the timers
of every reliable piece of a connection (RFC 6298: the RTO, doubled per attempt) and
gives up on a message after ``attempts_before_expiration`` failed attempts.
"""

from __future__ import annotations

import heapq
from collections import deque

from .config import Config
from .constants import FRAGMENT_SIZE, MAX_BACKOFF, RELIABLE_WINDOW, SYSTEM_CHANNEL
from .delivery import Delivery
from .errors import MessageTooLarge
from .records import Counters, Group, Outgoing
from .recovery import Recovery
from .senders import Outbox, SendChannel
from .sequence import SEQ_MASK
from .wire import ITEM_ROOM, encode_cancel, encode_fragment, encode_reliable


class ReliableSender(SendChannel):
    """One reliable stream: messages waiting for their first trip, and those in flight."""

    __slots__ = ("in_flight", "key", "next_seq", "waiting")

    reliable = True

    def __init__(self, mode: Delivery, channel: int, outbox: Outbox) -> None:
        super().__init__(mode, channel, outbox)
        self.key = channel << 2 | mode
        self.next_seq = 0
        self.waiting: deque[Outgoing] = deque()
        self.in_flight: dict[int, Outgoing] = {}  # by message sequence, oldest first

    def send(self, payload: bytes, message_id: int, message: object,
             expires: bool | None) -> Group | None:
        """A reliable message expires after ``attempts_before_expiration`` failed
        attempts (``expires`` defaults to True on user channels); engine messages on the
        system channel are resent until the peer times out instead."""
        outbox = self.outbox
        size = len(payload)
        if size > outbox.max_size:
            raise MessageTooLarge(f"message of {size} bytes exceeds "
                                  f"max_message_size ({outbox.max_size})")
        if expires is None:
            expires = self.channel != SYSTEM_CHANNEL
        group = Group(message_id, message, self.mode, self.channel, expires)
        outbox.active[self.key] = self
        if size < ITEM_ROOM:
            seq = self.next_seq
            item = encode_reliable(self.flags, seq, message_id, payload)
            if len(item) <= ITEM_ROOM:  # the common case: one item
                out = Outgoing(next(outbox.keys), seq, self.flags, item, group, 0, 1, self)
                self.next_seq = (seq + 1) & SEQ_MASK
                self.waiting.append(out)
                group.parts.append(out)
                return group
        self._fragment(payload, group)
        return group

    def _fragment(self, payload: bytes, group: Group) -> None:
        """A message too large for one datagram, in pieces of FRAGMENT_SIZE bytes."""
        count = -(-len(payload) // FRAGMENT_SIZE)
        keys = self.outbox.keys
        for i in range(count):
            seq = self.next_seq
            chunk = payload[i * FRAGMENT_SIZE:(i + 1) * FRAGMENT_SIZE]
            item = encode_fragment(self.flags, seq, group.message_id, i, count, chunk)
            out = Outgoing(next(keys), seq, self.flags, item, group, i, count, self)
            self.next_seq = (seq + 1) & SEQ_MASK
            self.waiting.append(out)
            group.parts.append(out)

    def take_new(self, now: float, room: int, batch: list[Outgoing],
                 items: list[tuple[bytes, Outgoing | None]]) -> int:
        """Move waiting messages in flight, within ``room`` bytes and the window; returns
        the room left."""
        waiting = self.waiting
        in_flight = self.in_flight
        # how many more the window allows, from the oldest unacknowledged message
        if in_flight:
            allowed = RELIABLE_WINDOW - ((waiting[0].seq - next(iter(in_flight))) & SEQ_MASK)
        else:
            allowed = RELIABLE_WINDOW
        while waiting and room > 0 and allowed > 0:
            out = waiting.popleft()
            allowed -= 1
            out.first_sent = out.last_sent = now
            in_flight[out.seq] = out
            batch.append(out)
            items.append((out.item, out))
            room -= len(out.item)
        return room

    def in_flight_count(self) -> int:
        return len(self.in_flight) + len(self.waiting)


class Retransmissions:
    """Retransmission timers of one connection's reliable pieces, and their expiry."""

    def __init__(self, config: Config, recovery: Recovery, counters: Counters) -> None:
        self._config = config
        self._recovery = recovery
        self._counters = counters
        # (due, tie-breaker, the piece or pieces first sent together)
        self._timers: list[tuple[float, int, list[Outgoing]]] = []
        self.expired: list[Group] = []  # drained by the connection's owner

    def started(self, batch: list[Outgoing], now: float) -> None:
        """Pieces that went out for the first time now: one timer for all of them."""
        due = now + min(self._recovery.rto, self._config.secs_to_await_reply)
        for out in batch:
            out.due = due
        heapq.heappush(self._timers, (due, batch[0].key, batch))

    def lost(self, reliable: list[Outgoing], now: float) -> None:
        """A datagram that carried these was lost: resend them at the next poll."""
        for out in reliable:
            if not out.acked and out.due > now:
                out.due = now
                heapq.heappush(self._timers, (now, out.key, [out]))

    def collect(self, now: float, items: list[tuple[bytes, Outgoing | None]]) -> None:
        """The pieces whose timer ran out, to go out again now."""
        timers = self._timers
        attempts = self._config.attempts_before_expiration
        # Resends follow the round trip, but a message is given up only when it has failed
        # that many times *and* the whole budget of the Godot Holepunch API (attempts x
        # secs_to_await_reply) has passed: a fast link must not turn a one-second hiccup
        # into lost messages.
        patience = attempts * self._config.secs_to_await_reply
        while timers and timers[0][0] <= now:
            due, _, entry = heapq.heappop(timers)
            for out in entry:
                if out.acked or out.due != due:
                    continue
                out.failed += 1
                group = out.group
                if (group.expires and not group.expired and out.failed >= attempts
                        and now - out.first_sent >= patience):
                    self._expire(group)
                self._counters.messages_resent += 1
                self._schedule(out, now)
                items.append((out.item, out))

    def _expire(self, group: Group) -> None:
        """The message failed: stand a small cancel notice in for each unacked piece.

        The notice keeps the sequence numbers contiguous, so the receiver's stream moves on
        past the expired message instead of waiting for it forever.
        """
        group.expired = True
        self._counters.messages_expired += 1
        self.expired.append(group)
        for out in group.parts:
            if out.acked:
                continue
            out.item = encode_cancel(out.flags, out.seq, group.message_id, out.index,
                                     out.count)
            out.failed = 0

    def _schedule(self, out: Outgoing, now: float) -> None:
        out.last_sent = now
        limit = self._config.secs_to_await_reply
        wait = min(self._recovery.rto * (2 ** min(out.failed, MAX_BACKOFF)), limit)
        out.due = now + wait
        heapq.heappush(self._timers, (out.due, out.key, [out]))

    def next_due(self) -> float | None:
        return self._timers[0][0] if self._timers else None

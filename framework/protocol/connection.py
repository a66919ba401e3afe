"""One peer-to-peer connection: the owner that composes its parts.

Pure: no socket, no clock. ``send`` queues a message, ``poll(now)`` returns the
datagrams to send, ``receive(data, now)`` takes a DATA datagram and returns the
messages it completes. The work is done by parts, each with one job:

- senders.py, reliable.py: the send side of each stream, one class per delivery mode,
  and the retransmission timers of reliable messages;
- builder.py: items into sealed datagrams, with redundancy in their spare room;
- acks.py: which of the other side's datagrams arrived, and when to say so;
- recovery.py: what became of ours (RTT, loss, congestion window);
- channels.py: the receive side of each stream (ordering, dedup, reassembly);
- protection.py: encryption and replay protection; wire/data.py: every byte layout.

A message goes down ``send`` -> its sender's items -> ``poll`` -> ``PacketBuilder.pack``
-> ``PacketProtection.seal``; and up ``receive`` -> ``open`` -> ``wire.parse_data`` ->
``Receivers.deliver``. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
import math

from .acks import AckTracker
from .builder import PacketBuilder
from .channels import ReassemblyBudget, Receivers
from .config import Config
from .constants import CWND_PACKET_SLACK, FRAGMENT_SIZE, RTT_PROBE_INTERVAL
from .delivery import Delivery
from .peers import PathKind
from .protection import Duplicate, PacketProtection
from .records import Counters, Delivered, Group, Outgoing
from .recovery import Recovery
from .reliable import ReliableSender, Retransmissions
from .senders import Outbox, SendChannel, SequencedSender, UnreliableSender
from .sequence import SEQ_MASK
from .stats import PeerStats, RateMeter
from .wire import ITEM_ROOM, PING_ITEM, encode_system, parse_data

log = logging.getLogger(__name__)

#: The sender class of each delivery mode (the receive side is in channels.py).
SENDERS: dict[Delivery, type[SendChannel]] = {
    Delivery.UNRELIABLE: UnreliableSender,
    Delivery.UNRELIABLE_SEQUENCED: SequencedSender,
    Delivery.RELIABLE_UNORDERED: ReliableSender,
    Delivery.RELIABLE_ORDERED: ReliableSender,
}


class Connection:
    """Reliable and unreliable messaging with one remote peer."""

    def __init__(self, config: Config, now: float, protection: PacketProtection,
                 budget: ReassemblyBudget | None = None, path: PathKind = PathKind.DIRECT,
                 initial_rtt: float | None = None, checks_peer: bool = True) -> None:
        self.config = config
        #: Who keeps a quiet path open. False: while the peer's checks keep coming, leave
        #: the checking to it (one check and one answer per interval cross the NATs, not
        #: two of each), and check only if it stops for half an interval more.
        self._checks_peer = checks_peer
        self._checked_at = -math.inf  # when the peer last asked for an answer
        self._peer_timeout = config.peer_timeout
        # Every datagram is encrypted and authenticated; a copy or replay of one is
        # refused before it can change anything (protection.py).
        self._protection = protection
        self.path = path
        self.budget = budget if budget is not None else ReassemblyBudget(64 << 20)
        self._max_fragments = -(-config.max_message_size // FRAGMENT_SIZE)
        self.counters = Counters()
        self._outbox = Outbox(config.max_message_size)
        self._senders: dict[int, SendChannel] = {}
        self._streams: dict[int, ReliableSender] = {}  # the reliable ones among them
        self._receivers = Receivers(self.budget, config.reassembly_limit_per_peer)
        self._acks = AckTracker()
        self.recovery = Recovery(config.secs_to_await_reply, self.counters)
        self._resends = Retransmissions(config, self.recovery, self.counters)
        self._builder = PacketBuilder(protection, self.recovery, self._acks, self.counters,
                                      now)
        self._ping_pending = False
        self.last_received = now
        #: When the first datagram asking for an answer (messages, pings; not acks
        #: alone) left since the peer's last datagram; None: none since. "We talk and
        #: hear nothing" is told apart from a quiet session by this.
        self.unanswered_since: float | None = None
        #: Smoothed time between the peer's datagrams (1/8 gain, as RFC 6298's SRTT):
        #: a peer that streamed and went silent is told apart from a quiet one.
        self.receive_gap = config.secs_between_peer_checks
        self._last_ping = now
        self._last_traffic = -math.inf  # when messages last went out (pings aside)
        self._rate_in = RateMeter(now)
        if initial_rtt is not None:
            self.recovery.update_rtt(initial_rtt)  # measured during the handshake

    # --- sending ------------------------------------------------------------------

    def send(self, mode: Delivery, channel: int, payload: bytes, message_id: int = 0,
             message: object = None, expires: bool | None = None) -> Group | None:
        """Queue an encoded message. Returns its Group when reliable.

        Raises MessageTooLarge for an unreliable message over one datagram, or for a
        reliable one over ``max_message_size``.
        """
        key = channel << 2 | mode
        sender = self._senders.get(key)
        if sender is None:
            sender = self._open(mode, channel, key)
        group = sender.send(payload, message_id, message, expires)
        self.counters.messages_sent += 1
        return group

    def _open(self, mode: Delivery, channel: int, key: int) -> SendChannel:
        sender = self._senders[key] = SENDERS[mode](mode, channel, self._outbox)
        if isinstance(sender, ReliableSender):
            self._streams[key] = sender
        return sender

    def probe(self, payload: bytes, now: float) -> bytes:
        """A datagram carrying one engine message (already encoded), built now for a path
        being validated: the caller sends it to that path, not the connection's."""
        return self._builder.build([encode_system(payload)], [], now)

    def in_flight(self) -> int:
        return sum(s.in_flight_count() for s in self._streams.values())

    def poll(self, now: float) -> list[bytes]:
        """Everything to send now: resends that are due, new messages, acks, pings."""
        items: list[tuple[bytes, Outgoing | None]] = []
        self.recovery.detect_by_time(now)
        self._resends.collect(now, items)
        if self._outbox.active:
            self._collect_new(now, items)
        unreliable = self._outbox.unreliable
        if unreliable:
            items.extend([(item, None) for item in unreliable])
            unreliable.clear()
        if items:
            self._last_traffic = now
        self._keepalive(now)
        prompt = False
        if self._ping_pending:
            items.append((PING_ITEM, None))
            self._ping_pending = False
            self._last_ping = now
            prompt = True
        if items:
            datagrams = self._builder.pack(items, now, prompt, self._streams.values())
        elif now >= self._acks.due:
            datagrams = [self._builder.build([], [], now)]
        else:
            datagrams = []
        if self._acks.pending():
            self._builder.extra_acks(datagrams, now)
        if items and self.unanswered_since is None:  # acks alone ask for no answer
            self.unanswered_since = now
        return datagrams

    def _collect_new(self, now: float, items: list[tuple[bytes, Outgoing | None]]) -> None:
        """Messages waiting for their first trip, as many as the congestion window allows."""
        budget = self.recovery.send_budget
        if budget <= 0:
            return
        room = budget * (ITEM_ROOM - CWND_PACKET_SLACK)  # rough bytes allowed this poll
        batch: list[Outgoing] = []
        active = self._outbox.active
        done: list[int] = []
        for key, stream in active.items():
            room = stream.take_new(now, room, batch, items)
            if not stream.waiting:
                done.append(key)
        for key in done:
            del active[key]
        if batch:
            self._resends.started(batch, now)

    def _keepalive(self, now: float) -> None:
        cfg = self.config
        silent = now - self.last_received
        if silent >= self._check_interval(now):
            # The peer is quiet: check on it every reply interval until it answers.
            if now - self._last_ping >= cfg.secs_to_await_reply:
                self._ping_pending = True
        elif now - self._builder.last_sent >= self._check_interval(now):
            self._ping_pending = True
        elif (now - self._last_ping >= RTT_PROBE_INTERVAL
              and now - self._last_traffic < RTT_PROBE_INTERVAL):
            self._ping_pending = True  # active: keep the round-trip estimate fresh

    def _check_interval(self, now: float) -> float:
        interval = self.config.secs_between_peer_checks
        if not self._checks_peer and now - self._checked_at < 1.5 * interval:
            return 1.5 * interval
        return interval

    # --- receiving ----------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[Delivered]:
        """Take one DATA datagram.

        Raises ProtocolError, before changing any state, when the datagram is forged,
        malformed or would overrun the reassembly limits; the caller drops and counts it.
        A copy of a datagram already accepted returns nothing and changes nothing.
        """
        try:
            number, plain = self._protection.open(data)
        except Duplicate:
            self.counters.duplicates += 1
            return []
        ack, bits, parsed = parse_data(plain, self._max_fragments)
        prompt = self._receivers.admit(parsed)
        self._protection.accept(number)
        if prompt:
            self._checked_at = now
        acked, lost = self.recovery.on_acks(ack, bits, now)
        for p in acked:
            for out in p.reliable:
                if not out.acked:  # hand the ack back to its stream
                    out.acked = True
                    out.sender.in_flight.pop(out.seq, None)
        for p in lost:
            self._resends.lost(p.reliable, now)
        self.receive_gap += (now - self.last_received - self.receive_gap) / 8
        self.last_received = now
        self.unanswered_since = None
        c = self.counters
        c.packets_received += 1
        c.bytes_received += len(data)
        self._rate_in.add(len(data), now)
        self._acks.received(number & SEQ_MASK, now, bool(parsed), prompt)
        delivered = self._receivers.deliver(parsed)
        c.messages_received += len(delivered)
        return delivered

    # --- housekeeping -------------------------------------------------------------

    @property
    def expired(self) -> list[Group]:
        """Reliable messages given up since the last ``take_expired``."""
        return self._resends.expired

    def take_expired(self) -> list[Group]:
        groups, self._resends.expired = self._resends.expired, []
        return groups

    def timed_out(self, now: float) -> bool:
        return now - self.last_received > self._peer_timeout

    def next_timer(self, now: float) -> float:
        """The next moment poll() has work to do (for callers that sleep between ticks)."""
        if self._outbox.unreliable or self._ping_pending or self._outbox.active:
            return now
        if self._acks.due < math.inf:
            return self._acks.due
        t = self._builder.last_sent + self._check_interval(now)
        t = min(t, self.last_received + self._peer_timeout)
        resend = self._resends.next_due()
        return t if resend is None else min(t, resend)

    def close(self) -> None:
        """Free reassembly memory held against the shared budget."""
        self._receivers.release()

    def stats(self, now: float) -> PeerStats:
        c, r = self.counters, self.recovery
        return PeerStats(
            rtt=r.srtt, rtt_var=r.rttvar, rto=r.rto, packet_loss=r.packet_loss,
            bytes_in_per_sec=self._rate_in.value(now),
            bytes_out_per_sec=self._builder.rate.value(now),
            messages_in_flight=self.in_flight(),
            packets_sent=c.packets_sent, packets_received=c.packets_received,
            bytes_sent=c.bytes_sent, bytes_received=c.bytes_received,
            messages_sent=c.messages_sent, messages_received=c.messages_received,
            messages_resent=c.messages_resent, messages_expired=c.messages_expired,
            path=self.path.value,
        )

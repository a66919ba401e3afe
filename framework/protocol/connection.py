"""One peer-to-peer connection: packet acks, reliable streams, batching, fragmentation.

Pure: no socket, no clock. ``receive(data, now)`` takes a DATA datagram, ``poll(now)``
returns the datagrams to send. Every datagram carries its own sequence number, the
newest sequence received from the other side and a 32-bit field acknowledging the 32
before it (the scheme of Glenn Fiedler's "reliable"), so acknowledgements ride on
ordinary traffic and a lone ack is sent only when there is nothing else to send.
Reliable messages are kept until a packet that carried them is acknowledged, and are
put again into later packets when their retransmission timeout (RFC 6298) expires.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgpack

from .channels import (
    CANCEL,
    FRAGMENT,
    WHOLE,
    Entry,
    ReassemblyBudget,
    ReliableReceiver,
    SequencedReceiver,
)
from .config import Config
from .constants import (
    FRAGMENT_SIZE,
    MAX_DATAGRAM,
    MIN_RTO,
    RELIABLE_WINDOW,
    SYSTEM_CHANNEL,
)
from .crypto import AEAD_TAG_SIZE
from .delivery import CHANNEL_SHIFT, FLAG_CANCEL, FLAG_FRAGMENT, MODE_MASK, Delivery
from .errors import MessageTooLarge, ProtocolError
from .protection import Duplicate, PacketProtection
from .records import Counters, Delivered, Group, Outgoing, SendStream, SentPacket
from .sequence import seq_greater
from .stats import PeerStats, RateMeter
from .values import check_depth, numpy_ext_hook
from .wire import ACKS, DATA_PREFIX_SIZE, RELAY_OVERHEAD

log = logging.getLogger(__name__)

#: Room for items in one datagram: the clear prefix, the acks, a 3-byte array header, the
#: AEAD tag, and the wrapping a relay adds, so that a relayed datagram stays within
#: MAX_DATAGRAM too. Also the largest message item that needs no fragmenting.
ITEM_ROOM = (MAX_DATAGRAM - DATA_PREFIX_SIZE - ACKS.size - 3 - AEAD_TAG_SIZE
             - RELAY_OVERHEAD)
_SENT_BUFFER = 1024
#: A datagram that carried only unreliable messages is acknowledged within this time,
#: riding on our own traffic if there is any; reliable messages and pings are
#: acknowledged at the next poll. Lone acks for a stream of inputs would otherwise double
#: the datagrams a game sends.
ACK_DELAY = 0.1
#: How often an active connection asks for a prompt ack, to keep the round-trip time fresh
#: when no reliable traffic flows.
RTT_PROBE_INTERVAL = 1.0
#: A message still unacknowledged this long after it last went out rides again in the
#: spare room of the next datagram (two frames at 60 FPS).
REDUNDANCY_GAP = 0.03
#: A packet is lost once this many later packets have been acknowledged (RFC 9002).
PACKET_THRESHOLD = 3
#: Packets whose fate the loss figure covers.
LOSS_WINDOW = 256
#: System message sent unreliably to make the other side answer (a peer check).
PING = msgpack.packb([0])
_SYSTEM_ITEM_HEAD = b"\x92" + msgpack.packb(SYSTEM_CHANNEL << CHANNEL_SHIFT)
_PING_ITEM = _SYSTEM_ITEM_HEAD + PING
_SYSTEM_UNRELIABLE = SYSTEM_CHANNEL << 2 | Delivery.UNRELIABLE
# Plain ints for the receive path (comparing enum members costs more).
_UNRELIABLE = int(Delivery.UNRELIABLE)
_SEQUENCED = int(Delivery.UNRELIABLE_SEQUENCED)
_UNORDERED = int(Delivery.RELIABLE_UNORDERED)
_ORDERED = int(Delivery.RELIABLE_ORDERED)
_MODES = tuple(Delivery(i) for i in range(4))
_FRAG_OR_CANCEL = FLAG_FRAGMENT | FLAG_CANCEL
_MAX_ID = 1 << 63
#: A checked message item: (key, mode, seq, message_id, value, fragment-or-cancel entry).
_Parsed = tuple[int, int, int, int, Any, "Entry | None"]


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """The knobs of one connection, derived from the engine's Config."""

    secs_to_await_reply: float = 1.0
    attempts_before_expiration: int = 5
    secs_between_peer_checks: float = 15.0
    max_message_size: int = (1 << 20) + 1024  # encoded bytes: 1 MiB of data plus framing
    reassembly_limit_per_peer: int = 4 << 20
    initial_cwnd: int = 64
    max_cwnd: int = 1024

    @classmethod
    def from_config(cls, config: Config) -> ConnectionConfig:
        return cls(secs_to_await_reply=config.secs_to_await_reply,
                   attempts_before_expiration=config.attempts_before_expiration,
                   secs_between_peer_checks=config.secs_between_peer_checks,
                   max_message_size=config.max_message_size,
                   reassembly_limit_per_peer=config.reassembly_limit_per_peer)

    @property
    def peer_timeout(self) -> float:
        checks = self.attempts_before_expiration * self.secs_to_await_reply
        return self.secs_between_peer_checks + checks


class Connection:
    """Reliable and unreliable messaging with one remote peer."""

    def __init__(self, config: ConnectionConfig, now: float, protection: PacketProtection,
                 budget: ReassemblyBudget | None = None, path: str = "direct",
                 initial_rtt: float | None = None) -> None:
        self.config = config
        self._packer = msgpack.Packer(use_bin_type=True)  # its own: packb makes one a call
        self._max_size = config.max_message_size
        # Every datagram is encrypted and authenticated; a copy or replay of one is
        # refused before it can change anything (protection.py).
        self._protection = protection
        self.path = path
        self.budget = budget if budget is not None else ReassemblyBudget(64 << 20)
        self._seq = 0
        self._sent: list[SentPacket | None] = [None] * _SENT_BUFFER
        self._remote_seq = -1  # newest packet sequence received; -1 before any
        self._remote_bits = 0
        # Which packet sequences arrived (slot seq % 1024 holds seq): for duplicates and for
        # extra acks when more than 33 packets arrive between two datagrams of ours.
        self._received: list[int] = [-1] * _SENT_BUFFER
        self._unacked: list[int] = []  # sequences received since our last datagram
        self._ack_due = math.inf  # when a lone ack must go out, if nothing else does
        self._ping_pending = False
        self._streams: dict[int, SendStream] = {}
        self._active: dict[int, SendStream] = {}  # streams with waiting messages
        self._receivers: dict[int, ReliableReceiver] = {}
        self._sequenced: dict[int, SequencedReceiver] = {}
        self._seq_counters: dict[int, int] = {}
        self._unreliable: list[bytes] = []
        # Retransmission timers: (due, tie-breaker, message or messages first sent together).
        self._timers: list[tuple[float, int, list[Outgoing]]] = []
        self._next_key = 0
        self._loss_check = 0  # oldest sent sequence not yet settled
        self.expired: list[Group] = []  # drained by the owner
        self.srtt = 0.0
        self.rttvar = 0.0
        self.rto = min(1.0, config.secs_to_await_reply)
        self.cwnd = float(config.initial_cwnd)
        self._reliable_in_flight = 0  # packets with reliable items, not settled
        self._loss_window: deque[int] = deque(maxlen=LOSS_WINDOW)
        self._loss_sum = 0
        self.last_received = now
        self.last_sent = now
        self._last_ping = now
        self._last_traffic = -math.inf  # when messages last went out (pings aside)
        self.counters = Counters()
        self._rate_in = RateMeter(now)
        self._rate_out = RateMeter(now)
        if initial_rtt is not None:
            self._update_rtt(initial_rtt)  # measured during the handshake

    # --- sending ------------------------------------------------------------------

    def send(self, mode: Delivery, channel: int, payload: bytes, message_id: int = 0,
             message: object = None, expires: bool | None = None) -> Group | None:
        """Queue an encoded message. Returns its Group when reliable.

        A reliable message expires after ``attempts_before_expiration`` failed attempts
        (``expires`` defaults to True on user channels); engine messages on the system
        channel are resent until the peer times out instead.

        Raises MessageTooLarge for an unreliable message over one datagram, or for a
        reliable one over ``max_message_size``.
        """
        key = channel << 2 | mode
        flags = mode | (channel << CHANNEL_SHIFT)
        if mode < _UNORDERED:  # the two unreliable modes
            if mode == _UNRELIABLE:
                item = b"\x92" + self._packer.pack(flags) + payload
            else:
                seq = self._seq_counters.get(key, 0)
                item = b"\x93" + self._packer.pack([flags, seq])[1:] + payload
                self._seq_counters[key] = (seq + 1) & 0xFFFF
            if len(item) > ITEM_ROOM:
                raise MessageTooLarge(
                    f"unreliable message of {len(item)} bytes does not fit one datagram "
                    f"({ITEM_ROOM} bytes of room); send it reliably to have it "
                    "fragmented")
            self._unreliable.append(item)
            self.counters.messages_sent += 1
            return None
        if len(payload) > self._max_size:
            raise MessageTooLarge(
                f"message of {len(payload)} bytes exceeds max_message_size "
                f"({self.config.max_message_size})"
            )
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = SendStream()
        if expires is None:
            expires = channel != SYSTEM_CHANNEL
        group = Group(message_id, message, mode, channel, expires)
        seq = stream.next_seq
        head = self._packer.pack([flags, seq, message_id])
        if len(head) + len(payload) <= ITEM_ROOM:
            # the common case, inline: one item, one Outgoing
            out = Outgoing(self._next_key, seq, flags, b"\x94" + head[1:] + payload, group, 0, 1)
            self._next_key += 1
            stream.next_seq = (seq + 1) & 0xFFFF
            stream.waiting.append(out)
            group.parts.append(out)
        else:
            count = -(-len(payload) // FRAGMENT_SIZE)
            fflags = flags | FLAG_FRAGMENT
            for i in range(count):
                chunk = payload[i * FRAGMENT_SIZE:(i + 1) * FRAGMENT_SIZE]
                item = msgpack.packb([fflags, stream.next_seq, message_id, i, count, chunk])
                self._append(stream, group, fflags, item, i, count)
        self._active[key] = stream
        self.counters.messages_sent += 1
        return group

    def _append(self, stream: SendStream, group: Group, flags: int, item: bytes,
                index: int, count: int) -> None:
        out = Outgoing(self._next_key, stream.next_seq, flags, item, group, index, count)
        self._next_key += 1
        stream.next_seq = (stream.next_seq + 1) & 0xFFFF
        stream.waiting.append(out)
        group.parts.append(out)

    def probe(self, payload: bytes, now: float) -> bytes:
        """A datagram carrying one engine message (already encoded), built now for a path
        being validated: the caller sends it to that path, not the connection's."""
        return self._finish([_SYSTEM_ITEM_HEAD + payload], [], now)

    def in_flight(self) -> int:
        return sum(len(s.in_flight) + len(s.waiting) for s in self._streams.values())

    # --- building datagrams -------------------------------------------------------

    def poll(self, now: float) -> list[bytes]:
        """Everything to send now: resends that are due, new messages, acks, pings."""
        items: list[tuple[bytes, Outgoing | None]] = []
        self._detect_losses(now)
        self._collect_resends(now, items)
        self._collect_new(now, items)
        if self._unreliable:
            items.extend((item, None) for item in self._unreliable)
            self._unreliable = []
        if items:
            self._last_traffic = now
        self._keepalive(now)
        prompt = False
        if self._ping_pending:
            items.append((_PING_ITEM, None))
            self._ping_pending = False
            self._last_ping = now
            prompt = True
        if not items:
            datagrams = [self._finish([], [], now)] if now >= self._ack_due else []
        else:
            datagrams = self._pack(items, now, prompt)
        if self._unacked:
            self._extra_acks(datagrams, now)
        return datagrams

    def _extra_acks(self, datagrams: list[bytes], now: float) -> None:
        """Acknowledge packets that the newest ack's 32-bit field could not reach."""
        newest = self._remote_seq
        pending = sorted({(newest - s) & 0xFFFF for s in self._unacked})
        self._unacked = []
        anchor = None
        for back in pending:
            if back <= 32 or back >= 0x8000:
                continue
            if anchor is not None and back - anchor <= 32:
                continue
            anchor = back
            a = (newest - back) & 0xFFFF
            bits = 0
            received = self._received
            for i in range(1, 33):
                s = (a - i) & 0xFFFF
                if received[s % _SENT_BUFFER] == s:
                    bits |= 1 << (i - 1)
            datagrams.append(self._finish([], [], now, (a, bits)))

    def _keepalive(self, now: float) -> None:
        cfg = self.config
        silent = now - self.last_received
        if silent >= cfg.secs_between_peer_checks:
            # The peer is quiet: check on it every reply interval until it answers.
            if now - self._last_ping >= cfg.secs_to_await_reply:
                self._ping_pending = True
        elif now - self.last_sent >= cfg.secs_between_peer_checks:
            self._ping_pending = True
        elif (now - self._last_ping >= RTT_PROBE_INTERVAL
              and now - self._last_traffic < RTT_PROBE_INTERVAL):
            self._ping_pending = True  # active: keep the round-trip estimate fresh

    def _collect_resends(self, now: float, items: list[tuple[bytes, Outgoing | None]]) -> None:
        timers = self._timers
        attempts = self.config.attempts_before_expiration
        # Resends follow the round trip, but a message is given up only when it has failed
        # that many times *and* the seed's whole budget (attempts x secs_to_await_reply)
        # has passed: a fast link must not turn a one-second hiccup into lost messages.
        patience = attempts * self.config.secs_to_await_reply
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
                self.counters.messages_resent += 1
                self._schedule(out, now)
                items.append((out.item, out))

    def _expire(self, group: Group) -> None:
        """The message failed: stand a small cancel notice in for each unacked piece.

        The notice keeps the sequence numbers contiguous, so the receiver's stream moves on
        past the expired message instead of waiting for it forever.
        """
        group.expired = True
        self.counters.messages_expired += 1
        self.expired.append(group)
        for out in group.parts:
            if out.acked:
                continue
            cflags = (out.flags & ~FLAG_FRAGMENT) | FLAG_CANCEL
            out.item = msgpack.packb([cflags, out.seq, group.message_id, out.index, out.count])
            out.failed = 0

    def _schedule(self, out: Outgoing, now: float) -> None:
        out.last_sent = now
        limit = self.config.secs_to_await_reply
        wait = min(self.rto * (2 ** min(out.failed, 16)), limit)
        out.due = now + wait
        heapq.heappush(self._timers, (out.due, out.key, [out]))

    def _collect_new(self, now: float, items: list[tuple[bytes, Outgoing | None]]) -> None:
        if not self._active:
            return
        budget = int(self.cwnd) - self._reliable_in_flight
        if budget <= 0:
            return
        room = budget * (ITEM_ROOM - 64)  # rough bytes allowed this poll
        done: list[int] = []
        batch: list[Outgoing] = []
        due = now + min(self.rto, self.config.secs_to_await_reply)
        for key, stream in self._active.items():
            waiting = stream.waiting
            in_flight = stream.in_flight
            # how many more the window allows, from the oldest unacknowledged message
            if in_flight:
                allowed = RELIABLE_WINDOW - ((waiting[0].seq - next(iter(in_flight))) & 0xFFFF)
            else:
                allowed = RELIABLE_WINDOW
            while waiting and room > 0 and allowed > 0:
                out = waiting.popleft()
                allowed -= 1
                out.first_sent = out.last_sent = now
                out.due = due
                in_flight[out.seq] = out
                batch.append(out)
                items.append((out.item, out))
                room -= len(out.item)
            if not waiting:
                done.append(key)
        for key in done:
            del self._active[key]
        if batch:
            # one timer for everything first sent now
            heapq.heappush(self._timers, (due, batch[0].key, batch))

    def _pack(self, items: list[tuple[bytes, Outgoing | None]], now: float,
              prompt: bool) -> list[bytes]:
        datagrams: list[bytes] = []
        batch: list[bytes] = []
        batch_reliable: list[Outgoing] = []
        size = 0
        for item, out in items:
            n = len(item)
            if batch and size + n > ITEM_ROOM:
                datagrams.append(self._finish(batch, batch_reliable, now, prompt=prompt))
                batch, batch_reliable, size = [], [], 0
            batch.append(item)
            if out is not None:
                batch_reliable.append(out)
            size += n
        if batch:
            size += self._fill(batch, batch_reliable, ITEM_ROOM - size, now)
            datagrams.append(self._finish(batch, batch_reliable, now, prompt=prompt))
        return datagrams

    def _fill(self, batch: list[bytes], reliable: list[Outgoing], room: int, now: float) -> int:
        """Use the room left in a datagram that goes out anyway for copies of messages
        still unacknowledged: if the datagram that carried one was lost, the copy arrives a
        frame or two later instead of a round trip later. Costs bytes, never a datagram."""
        used = 0
        gap = REDUNDANCY_GAP
        for stream in self._streams.values():
            for looked, out in enumerate(stream.in_flight.values()):
                if looked >= 32 or room - used < 24:
                    break
                n = len(out.item)
                # (what went out in this poll has last_sent == now, so is never copied twice)
                if now - out.last_sent >= gap and out.due > now and n <= room - used:
                    batch.append(out.item)
                    reliable.append(out)
                    out.last_sent = now
                    used += n
        return used

    def _finish(self, batch: list[bytes], reliable: list[Outgoing], now: float,
                anchor: tuple[int, int] | None = None, prompt: bool = False) -> bytes:
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        ack, ack_bits = anchor if anchor is not None else (self._remote_seq & 0xFFFF,
                                                             self._remote_bits)
        n = len(batch)
        array = bytes((144 | n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
        data = self._protection.seal(ACKS.pack(ack, ack_bits) + array + b"".join(batch))
        slot = seq % _SENT_BUFFER
        old = self._sent[slot]
        if old is not None and not old.settled:
            self._settle(old, lost=True)
        # An ack-only packet makes the other side send nothing back: never count it lost.
        self._sent[slot] = SentPacket(seq, now, reliable, settled=not batch,
                                      prompt=prompt or bool(reliable))
        if reliable:
            self._reliable_in_flight += 1
        self._ack_due = math.inf
        self.last_sent = now
        c = self.counters
        c.packets_sent += 1
        c.bytes_sent += len(data)
        self._rate_out.add(len(data), now)
        return data

    # --- receiving ----------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> list[Delivered]:
        """Take one DATA datagram.

        Raises ProtocolError, before changing any state, when the datagram is forged,
        malformed or would overrun the reassembly limits; the caller drops and counts it.
        A copy of a datagram already accepted returns nothing and changes nothing.
        """
        size = len(data)
        try:
            number, plain = self._protection.open(data)
        except Duplicate:
            self.counters.duplicates += 1
            return []
        if len(plain) < ACKS.size:
            raise ProtocolError("DATA shorter than its acks")
        seq = number & 0xFFFF
        ack, bits = ACKS.unpack_from(plain)
        try:
            items = msgpack.unpackb(plain[ACKS.size:], ext_hook=numpy_ext_hook, raw=False,
                                    strict_map_key=False, use_list=True)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"undecodable DATA body: {type(exc).__name__}") from exc
        if type(items) is not list:
            raise ProtocolError("DATA body is not an array")
        parsed = self._parse(items)
        self._check_budget(parsed)
        self._protection.accept(number)
        self._process_acks(ack, bits, now)
        self.last_received = now
        c = self.counters
        c.packets_received += 1
        c.bytes_received += size
        self._rate_in.add(size, now)
        self._record(seq)
        if parsed:
            if any(p[1] >= 2 or p[0] == _SYSTEM_UNRELIABLE for p in parsed):
                self._ack_due = now  # reliable messages or a ping: answer at once
            elif self._ack_due == math.inf:
                self._ack_due = now + ACK_DELAY
        return self._deliver(parsed)

    def _parse(self, items: list[Any]) -> list[_Parsed]:
        """Check every item's shape before anything is applied.

        Returns (key, mode, seq, message_id, value, entry) tuples; ``entry`` is None for a
        whole message, an Entry for a fragment or a cancel notice.
        """
        out: list[_Parsed] = []
        append = out.append
        max_frags = -(-self.config.max_message_size // FRAGMENT_SIZE)
        receivers = self._receivers
        for it in items:
            if type(it) is not list or len(it) < 2 or type(it[0]) is not int:
                raise ProtocolError("malformed message item")
            flags = it[0]
            if not 0 <= flags <= 0xFF:
                raise ProtocolError("bad message flags")
            mode = flags & MODE_MASK
            key = (flags >> CHANNEL_SHIFT) << 2 | mode
            n = len(it)
            if mode == _UNRELIABLE:
                if n != 2 or flags & _FRAG_OR_CANCEL:
                    raise ProtocolError("malformed unreliable item")
                value = it[1]
                if type(value) is list or type(value) is dict:
                    check_depth(value)
                append((key, mode, 0, 0, value, None))
                continue
            seq = it[1]
            if type(seq) is not int or not 0 <= seq <= 0xFFFF:
                raise ProtocolError("bad message sequence")
            if mode == _SEQUENCED:
                if n != 3 or flags & _FRAG_OR_CANCEL:
                    raise ProtocolError("malformed sequenced item")
                value = it[2]
                if type(value) is list or type(value) is dict:
                    check_depth(value)
                append((key, mode, seq, 0, value, None))
                continue
            mid = it[2] if n > 2 else None
            if type(mid) is not int or not 0 <= mid < _MAX_ID:
                raise ProtocolError("bad message id")
            receiver = receivers.get(key)
            if receiver is not None:
                receiver.check(seq)  # raises beyond the window
            elif seq >= RELIABLE_WINDOW:
                raise ProtocolError("reliable message beyond the receive window")
            kind = flags & _FRAG_OR_CANCEL
            if not kind:
                if n != 4:
                    raise ProtocolError("malformed reliable item")
                value = it[3]
                if type(value) is list or type(value) is dict:
                    check_depth(value)
                append((key, mode, seq, mid, value, None))
                continue
            if kind == _FRAG_OR_CANCEL:
                raise ProtocolError("fragment and cancel together")
            frag = kind == FLAG_FRAGMENT
            if n != (6 if frag else 5):
                raise ProtocolError("malformed fragment or cancel item")
            index, count = it[3], it[4]
            if (type(index) is not int or type(count) is not int
                    or not 0 <= index < count <= max_frags):
                raise ProtocolError("bad fragment numbering")
            if frag:
                chunk = it[5]
                if type(chunk) is not bytes or not 0 < len(chunk) <= FRAGMENT_SIZE:
                    raise ProtocolError("bad fragment chunk")
                append((key, mode, seq, mid, None, Entry(FRAGMENT, mid, chunk, index, count)))
            else:
                append((key, mode, seq, mid, None, Entry(CANCEL, mid, None, index, count)))
        return out

    def _check_budget(self, parsed: list[_Parsed]) -> None:
        extra = 0
        for item in parsed:
            entry = item[5]
            if entry is not None and entry.kind == FRAGMENT:
                extra += len(entry.payload)
        if not extra:
            return
        mine = sum(r.buffered_bytes for r in self._receivers.values())
        if mine + extra > self.config.reassembly_limit_per_peer:
            raise ProtocolError("reassembly limit for this peer reached")
        if self.budget.used + extra > self.budget.limit:
            raise ProtocolError("reassembly limit for all peers reached")

    def _deliver(self, parsed: list[_Parsed]) -> list[Delivered]:
        delivered: list[Delivered] = []
        append = delivered.append
        receivers = self._receivers
        for key, mode, seq, mid, value, entry in parsed:
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
            if entry is None and seq == receiver.base and not receiver.buf:
                # The common case: the next message of its stream, nothing waiting.
                receiver.base = (seq + 1) & 0xFFFF
                append(Delivered(channel, dmode, mid, value))
                continue
            ready: list[tuple[int, Any]] = []
            self.budget.used += receiver.receive(seq, entry or Entry(WHOLE, mid, value), ready)
            for rid, rvalue in ready:
                append(Delivered(channel, dmode, rid, rvalue))
        self.counters.messages_received += len(delivered)
        return delivered

    def _record(self, seq: int) -> None:
        self._received[seq % _SENT_BUFFER] = seq
        self._unacked.append(seq)
        if self._remote_seq < 0:
            self._remote_seq = seq
            self._remote_bits = 0
            return
        if seq_greater(seq, self._remote_seq):
            shift = (seq - self._remote_seq) & 0xFFFF
            bits = (self._remote_bits << shift) | (1 << (shift - 1)) if shift <= 32 else 0
            self._remote_bits = bits & 0xFFFFFFFF
            self._remote_seq = seq
        else:
            d = (self._remote_seq - seq) & 0xFFFF
            if 0 < d <= 32:
                self._remote_bits |= 1 << (d - 1)

    def _process_acks(self, ack: int, bits: int, now: float) -> None:
        if not seq_greater(self._seq, ack):
            return  # acknowledges something we never sent: ignore the whole field
        sent = self._sent
        p = sent[ack % _SENT_BUFFER]
        if p is not None and p.seq == ack and not p.acked and p.prompt:
            self._update_rtt(now - p.time)
        for i in range(33):
            if i and not (bits >> (i - 1)) & 1:
                continue
            s = (ack - i) & 0xFFFF
            p = sent[s % _SENT_BUFFER]
            if p is None or p.seq != s or p.acked:
                continue
            p.acked = True
            for out in p.reliable:
                if not out.acked:
                    out.acked = True
                    group = out.group
                    self._streams[group.channel << 2 | group.mode].in_flight.pop(out.seq, None)
            if not p.settled:
                self._settle(p, lost=False)
        # A packet sent PACKET_THRESHOLD or more before one that was acknowledged, and
        # still not acknowledged itself, is taken as lost (QUIC's rule, RFC 9002 6.1.1):
        # its reliable messages go out again now instead of waiting for their timeout.
        horizon = (ack - PACKET_THRESHOLD + 1) & 0xFFFF
        while seq_greater(horizon, self._loss_check) and seq_greater(self._seq, self._loss_check):
            p = sent[self._loss_check % _SENT_BUFFER]
            if p is not None and p.seq == self._loss_check and not p.settled:
                self._settle(p, lost=True)
                for out in p.reliable:
                    if not out.acked and out.due > now:
                        out.due = now
                        heapq.heappush(self._timers, (now, out.key, [out]))
            self._loss_check = (self._loss_check + 1) & 0xFFFF

    def _detect_losses(self, now: float) -> None:
        """Count as lost what went unacknowledged for two retransmission timeouts."""
        limit = now - 2 * self.rto - ACK_DELAY
        sent = self._sent
        while self._loss_check != self._seq:
            p = sent[self._loss_check % _SENT_BUFFER]
            if p is not None and p.seq == self._loss_check and not p.settled:
                if p.time > limit:
                    return
                self._settle(p, lost=True)
            self._loss_check = (self._loss_check + 1) & 0xFFFF

    def _settle(self, p: SentPacket, lost: bool) -> None:
        p.settled = True
        if p.reliable:
            self._reliable_in_flight -= 1
        c = self.counters
        window = self._loss_window
        if len(window) == LOSS_WINDOW:
            self._loss_sum -= window[0]
        window.append(int(lost))
        self._loss_sum += int(lost)
        if lost:
            c.packets_lost += 1
            if p.reliable:
                self.cwnd = max(8.0, self.cwnd / 2)
        else:
            c.packets_acked += 1
            if self.cwnd < self.config.max_cwnd:
                self.cwnd += 1.0 if self.cwnd < 256 else 1.0 / self.cwnd * 16

    def _update_rtt(self, sample: float) -> None:
        # RFC 6298 section 2.
        if self.srtt == 0.0:
            self.srtt = sample
            self.rttvar = sample / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
            self.srtt = 0.875 * self.srtt + 0.125 * sample
        self.rto = min(max(MIN_RTO, self.srtt + 4 * self.rttvar), self.config.secs_to_await_reply)

    # --- housekeeping -------------------------------------------------------------

    def timed_out(self, now: float) -> bool:
        return now - self.last_received > self.config.peer_timeout

    def next_timer(self, now: float) -> float:
        """The next moment poll() has work to do (for callers that sleep between ticks)."""
        if self._unreliable or self._ping_pending or self._active:
            return now
        if self._ack_due < math.inf:
            return self._ack_due
        t = self.last_sent + self.config.secs_between_peer_checks
        t = min(t, self.last_received + self.config.peer_timeout)
        if self._timers:
            t = min(t, self._timers[0][0])
        return t

    def close(self) -> None:
        """Free reassembly memory held against the shared budget."""
        for r in self._receivers.values():
            self.budget.used -= r.release()

    @property
    def packet_loss(self) -> float:
        """Percent of the last packets sent that were never acknowledged."""
        return 100.0 * self._loss_sum / len(self._loss_window) if self._loss_window else 0.0

    def stats(self, now: float) -> PeerStats:
        c = self.counters
        return PeerStats(
            rtt=self.srtt, rtt_var=self.rttvar, rto=self.rto,
            packet_loss=self.packet_loss,
            bytes_in_per_sec=self._rate_in.value(now),
            bytes_out_per_sec=self._rate_out.value(now),
            messages_in_flight=self.in_flight(),
            packets_sent=c.packets_sent, packets_received=c.packets_received,
            bytes_sent=c.bytes_sent, bytes_received=c.bytes_received,
            messages_sent=c.messages_sent, messages_received=c.messages_received,
            messages_resent=c.messages_resent, messages_expired=c.messages_expired,
            path=self.path,
        )



"""Loss recovery and congestion control of one connection (the part aioquic keeps in its
own recovery.py): what became of each datagram we sent.

- Round-trip time: RFC 6298 (SRTT, RTTVAR, RTO), sampled only from datagrams the other
  side acknowledges at once (``prompt``), so a delayed ack never inflates the estimate.
- Loss: a datagram is lost once PACKET_THRESHOLD later ones were acknowledged (RFC 9002
  6.1.1), or when it went unacknowledged for two retransmission timeouts.
- Congestion window: packets carrying reliable messages in flight at once; +1 per
  acknowledged packet, halved on a loss.
- The loss figure: the share of the last LOSS_WINDOW datagrams never acknowledged.
"""

from __future__ import annotations

from collections import deque

from .constants import (
    ACK_DELAY,
    CWND_SLOW_GROWTH,
    INITIAL_CWND,
    LOSS_WINDOW,
    MAX_CWND,
    MIN_CWND,
    MIN_RTO,
    PACKET_THRESHOLD,
    SENT_BUFFER,
)
from .records import Counters, Outgoing, SentPacket
from .sequence import SEQ_MASK, seq_greater


class Recovery:
    """Sent datagrams until each is acknowledged or taken as lost."""

    def __init__(self, max_rto: float, counters: Counters) -> None:
        self._max_rto = max_rto
        self._counters = counters
        self._sent: list[SentPacket | None] = [None] * SENT_BUFFER
        self._next = 0  # sequence of the next datagram to go out
        self._loss_check = 0  # oldest sent sequence not yet settled
        self.srtt = 0.0
        self.rttvar = 0.0
        self.rto = min(1.0, max_rto)
        self.cwnd = float(INITIAL_CWND)
        self._reliable_in_flight = 0  # packets with reliable items, not settled
        self._loss_window: deque[int] = deque(maxlen=LOSS_WINDOW)
        self._loss_sum = 0

    @property
    def send_budget(self) -> int:
        """Packets with new reliable messages the congestion window allows now."""
        return int(self.cwnd) - self._reliable_in_flight

    @property
    def packet_loss(self) -> float:
        """Percent of the last packets sent that were never acknowledged."""
        return 100.0 * self._loss_sum / len(self._loss_window) if self._loss_window else 0.0

    def on_sent(self, seq: int, now: float, reliable: list[Outgoing], ack_only: bool,
                prompt: bool) -> None:
        slot = seq % SENT_BUFFER
        old = self._sent[slot]
        if old is not None and not old.settled:
            self._settle(old, lost=True)
        # An ack-only packet makes the other side send nothing back: never count it lost.
        self._sent[slot] = SentPacket(seq, now, reliable, settled=ack_only,
                                      prompt=prompt or bool(reliable))
        if reliable:
            self._reliable_in_flight += 1
        self._next = (seq + 1) & SEQ_MASK

    def on_acks(self, ack: int, bits: int, now: float
                ) -> tuple[list[SentPacket], list[SentPacket]]:
        """Apply an ack field: (packets newly acknowledged, packets now taken as lost)."""
        acked: list[SentPacket] = []
        lost: list[SentPacket] = []
        if not seq_greater(self._next, ack):
            return acked, lost  # acknowledges something we never sent: ignore it all
        sent = self._sent
        p = sent[ack % SENT_BUFFER]
        if p is not None and p.seq == ack and not p.acked and p.prompt:
            self.update_rtt(now - p.time)
        for i in range(33):
            if i and not (bits >> (i - 1)) & 1:
                continue
            s = (ack - i) & SEQ_MASK
            p = sent[s % SENT_BUFFER]
            if p is None or p.seq != s or p.acked:
                continue
            p.acked = True
            acked.append(p)
            if not p.settled:
                self._settle(p, lost=False)
        # A packet sent PACKET_THRESHOLD or more before one that was acknowledged, and
        # still not acknowledged itself, is taken as lost: its reliable messages go out
        # again now instead of waiting for their timeout.
        horizon = (ack - PACKET_THRESHOLD + 1) & SEQ_MASK
        while seq_greater(horizon, self._loss_check) and seq_greater(self._next,
                                                                     self._loss_check):
            p = sent[self._loss_check % SENT_BUFFER]
            if p is not None and p.seq == self._loss_check and not p.settled:
                self._settle(p, lost=True)
                lost.append(p)
            self._loss_check = (self._loss_check + 1) & SEQ_MASK
        return acked, lost

    def detect_by_time(self, now: float) -> None:
        """Count as lost what went unacknowledged for two retransmission timeouts."""
        limit = now - 2 * self.rto - ACK_DELAY
        sent = self._sent
        while self._loss_check != self._next:
            p = sent[self._loss_check % SENT_BUFFER]
            if p is not None and p.seq == self._loss_check and not p.settled:
                if p.time > limit:
                    return
                self._settle(p, lost=True)
            self._loss_check = (self._loss_check + 1) & SEQ_MASK

    def _settle(self, p: SentPacket, lost: bool) -> None:
        p.settled = True
        if p.reliable:
            self._reliable_in_flight -= 1
        window = self._loss_window
        if len(window) == LOSS_WINDOW:
            self._loss_sum -= window[0]
        window.append(int(lost))
        self._loss_sum += int(lost)
        if lost:
            self._counters.packets_lost += 1
            if p.reliable:
                self.cwnd = max(float(MIN_CWND), self.cwnd / 2)
        else:
            self._counters.packets_acked += 1
            if self.cwnd < MAX_CWND:
                self.cwnd += 1.0 if self.cwnd < CWND_SLOW_GROWTH else 1.0 / self.cwnd * 16

    def update_rtt(self, sample: float) -> None:
        # RFC 6298 section 2.
        if self.srtt == 0.0:
            self.srtt = sample
            self.rttvar = sample / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
            self.srtt = 0.875 * self.srtt + 0.125 * sample
        self.rto = min(max(MIN_RTO, self.srtt + 4 * self.rttvar), self._max_rto)

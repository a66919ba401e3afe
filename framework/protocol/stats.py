"""Per-peer statistics, kept by the connection and read by the game."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PeerStats:
    """A snapshot of one peer connection's health."""

    #: Smoothed round-trip time in seconds (RFC 6298 SRTT); 0.0 until measured.
    rtt: float
    #: Round-trip time variation in seconds (RFC 6298 RTTVAR).
    rtt_var: float
    #: Current retransmission timeout in seconds.
    rto: float
    #: Packets lost, in percent, smoothed over recent traffic.
    packet_loss: float
    #: Bytes per second received from this peer, including headers.
    bytes_in_per_sec: float
    #: Bytes per second sent to this peer, including headers.
    bytes_out_per_sec: float
    #: Reliable messages sent and not yet acknowledged, plus those waiting for window space.
    messages_in_flight: int
    #: Totals since the connection began.
    packets_sent: int
    packets_received: int
    bytes_sent: int
    bytes_received: int
    messages_sent: int
    messages_received: int
    messages_resent: int
    messages_expired: int
    #: How datagrams reach this peer: "direct" (public address), "lan" (local address),
    #: "relay" (through the handshake server) or "server-player" (forwarded by the host).
    path: str


class RateMeter:
    """Bytes per second over windows of one second, smoothed across windows."""

    __slots__ = ("_count", "_start", "rate")

    def __init__(self, now: float) -> None:
        self._start = now
        self._count = 0
        self.rate = 0.0

    def add(self, n: int, now: float) -> None:
        self._roll(now)
        self._count += n

    def _roll(self, now: float) -> None:
        elapsed = now - self._start
        if elapsed >= 1.0:
            current = self._count / elapsed
            # The first full window sets the value; later ones are averaged in.
            self.rate = current if self.rate == 0.0 else 0.5 * self.rate + 0.5 * current
            if elapsed >= 3.0:  # idle for a while: the rate is what the last window said
                self.rate = current
            self._start = now
            self._count = 0

    def value(self, now: float) -> float:
        self._roll(now)
        return self.rate

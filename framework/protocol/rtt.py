"""Round-trip estimates for exchanges before a connection exists: requests to the
handshake server, and the client's HELLO and AUTH.

A lost datagram of such an exchange should cost about one round trip, not a fixed
second. As QUIC does for its handshake (RFC 9002 6.2): until a sample arrives the probe
timeout starts at INITIAL_TIMEOUT (300 ms, about QUIC's initial RTT of 333 ms) and doubles
with each retry; after one,
``srtt + 4 * rttvar``, at least MIN_RTO, doubling with each retry, never above
``secs_to_await_reply``. Samples follow Karn's rule: a resent exchange gives none.
"""

from __future__ import annotations

from .constants import INITIAL_TIMEOUT, MIN_RTO


class RttEstimate:
    """RFC 6298's smoothed round trip and its variation, from samples in seconds."""

    __slots__ = ("_max", "rttvar", "srtt")

    def __init__(self, max_timeout: float) -> None:
        self._max = max_timeout
        self.srtt = 0.0
        self.rttvar = 0.0

    @property
    def measured(self) -> bool:
        return self.srtt > 0.0

    def sample(self, rtt: float) -> None:
        rtt = max(rtt, 1e-4)
        if not self.measured:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    def timeout(self, retries: int = 0) -> float:
        """How long to wait for an answer, after ``retries`` unanswered sends of it."""
        base = max(MIN_RTO, self.srtt + 4 * self.rttvar) if self.measured \
            else INITIAL_TIMEOUT
        return min(self._max, base * float(1 << min(retries, 16)))

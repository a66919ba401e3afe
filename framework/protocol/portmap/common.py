"""What every port mapping client shares: its events, its states, a bounded retransmission
schedule, and the base class holding the request/renew/delete cycle.

A client is a plain object (aioquic style): ``start(now)``, ``receive_datagram(data, addr, now)``,
``handle_timer(now)``, ``datagrams_to_send()``, ``get_timer()``, ``next_event()`` and
``close(now)``. It never raises on what the network sends: a malformed or unexpected reply
is dropped and counted in ``dropped``.
"""

from __future__ import annotations

import enum
import logging
import random
from dataclasses import dataclass

from ..addresses import Address as Address  # noqa: PLC0414 - re-exported

log = logging.getLogger(__name__)



class MappingState(enum.Enum):
    IDLE = "idle"  #: not started
    REQUESTING = "requesting"  #: the first request is out, no answer yet
    MAPPED = "mapped"  #: the gateway gave a mapping; renewals keep it
    DELETING = "deleting"  #: close() sent the deletion, waiting for its answer
    FAILED = "failed"  #: the gateway refused or never answered
    CLOSED = "closed"  #: deleted (or given up deleting)


@dataclass(frozen=True, slots=True)
class MappingEstablished:
    """The gateway forwards ``external`` to our internal port (also sent after a renewal
    that changed the external address)."""

    protocol: str  #: "pcp", "natpmp" or "upnp"
    external: Address  #: the public address peers can send to
    lifetime: float  #: seconds the gateway promised (renewed at half of it)


@dataclass(frozen=True, slots=True)
class MappingFailed:
    """No mapping from this protocol: ``reason`` says why (for a person to read)."""

    protocol: str
    reason: str


@dataclass(frozen=True, slots=True)
class MappingLost:
    """A mapping we had is gone (a renewal failed or the gateway lost its state)."""

    protocol: str
    reason: str


@dataclass(frozen=True, slots=True)
class MappingDeleted:
    """close() finished: the gateway confirmed the deletion, or we stopped asking."""

    protocol: str
    confirmed: bool  #: True when the gateway answered the deletion


MappingEvent = MappingEstablished | MappingFailed | MappingLost | MappingDeleted


@dataclass(frozen=True, slots=True)
class Schedule:
    """Retransmission times of one request: first timeout ``initial``, doubled each time up
    to ``maximum``, jittered by ``jitter`` (a fraction, RFC 6887 §8.1.1), at most
    ``attempts`` sends, and abandoned ``give_up`` seconds after the first send."""

    initial: float
    maximum: float
    attempts: int
    give_up: float
    jitter: float = 0.0


class Exchange:
    """One request being (re)sent until answered: which bytes, when next, when to give up."""

    def __init__(self, payload: bytes, schedule: Schedule, now: float, rng: random.Random):
        self.payload = payload
        self.schedule = schedule
        self.sent = 0
        self.started = now
        self.next_send = now
        self._timeout = schedule.initial
        self._rng = rng

    def due(self, now: float) -> bool:
        return self.sent < self.schedule.attempts and now >= self.next_send

    def mark_sent(self, now: float) -> None:
        """Record one send and arm the next retransmission."""
        self.sent += 1
        rt = self._timeout
        if self.schedule.jitter:
            rt *= 1.0 + self._rng.uniform(-self.schedule.jitter, self.schedule.jitter)
        self.next_send = now + rt
        self._timeout = min(self._timeout * 2, self.schedule.maximum)

    def expired(self, now: float) -> bool:
        """No answer in time: all attempts used and the last one waited out, or past give_up."""
        if now >= self.started + self.schedule.give_up:
            return True
        return self.sent >= self.schedule.attempts and now >= self.next_send

    def deadline(self) -> float:
        """When this exchange next needs attention: a resend or giving up."""
        return min(self.started + self.schedule.give_up, self.next_send)


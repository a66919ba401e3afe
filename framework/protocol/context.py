"""What every part of a session shares: settings, randomness, and its two outputs
(datagrams to send, events for the game). The parts hold a Context; none holds another
part's state."""

from __future__ import annotations

import logging
from collections.abc import Callable

from . import events as ev
from .addresses import Address
from .channels import ReassemblyBudget
from .config import Config
from .constants import INTERNAL_ERROR_LOG_INTERVAL
from .crypto import RandomBytes
from .limits import TokenBucket
from .peers import Route
from .values import Encoder
from .wire import encode_relay

log = logging.getLogger(__name__)



class Context:
    """Settings, randomness and outputs of one session."""

    def __init__(self, config: Config, random_bytes: RandomBytes) -> None:
        self.config = config
        self.random = random_bytes
        self.budget = ReassemblyBudget(config.reassembly_limit_total)
        self.encoder = Encoder()
        self.now = 0.0
        self._out: list[tuple[bytes, Address]] = []
        self._events: list[ev.EngineEvent] = []
        self.blocked = 0
        self.internal_errors = 0
        #: Also told of each internal error, inside its ``except`` (fuzzing, tests).
        self.on_internal_error: Callable[[Address, float], None] | None = None
        rate = config.max_blocked_events_per_sec
        self._blocked_events = TokenBucket(rate, rate, 0.0)
        self._last_error_log = -INTERNAL_ERROR_LOG_INTERVAL

    # --- outputs -------------------------------------------------------------------

    def send(self, data: bytes, address: Address) -> None:
        self._out.append((data, address))

    def send_on(self, data: bytes, route: Route) -> None:
        """Send along a route: straight to its address, or wrapped for its relay."""
        if route.relay_id:
            self._out.append((encode_relay(route.relay_id, data), route.address))
        else:
            self._out.append((data, route.address))

    def take_datagrams(self) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def emit(self, event: ev.EngineEvent) -> None:
        self._events.append(event)

    def take_events(self) -> list[ev.EngineEvent]:
        out, self._events = self._events, []
        return out

    @property
    def event_list(self) -> list[ev.EngineEvent]:
        """The pending events, for the receive path to append to directly."""
        return self._events

    def error(self, message: str) -> None:
        log.info("error: %s", message)
        self._events.append(ev.Error(message))

    # --- what went wrong -------------------------------------------------------------

    def block(self, address: Address, now: float) -> None:
        """A datagram was dropped: count it; tell the game, at a bounded rate."""
        self.blocked += 1
        if self._blocked_events.take(now):
            self._events.append(ev.PacketBlocked(address))

    def internal_error(self, address: Address, now: float) -> None:
        """Handling a datagram raised something unexpected: count it, log it (not too
        often), drop the datagram and go on; a healthy session is never ended by one."""
        self.internal_errors += 1
        if self.on_internal_error is not None:
            self.on_internal_error(address, now)
        if now - self._last_error_log >= INTERNAL_ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.exception("unexpected error on a datagram from %s (%d so far)", address,
                          self.internal_errors)
        self.block(address, now)

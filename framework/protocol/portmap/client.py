"""The request / renew / delete cycle that PCP and NAT-PMP share (RFC 6887 §11.2.1,
RFC 6886 §3.3): map, renew at half the granted lifetime, delete with lifetime 0.

Subclasses hold the byte layouts; this class holds the one state machine (one owner, state
changes only through ``_set_state``).
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass

from .common import (
    Address,
    Exchange,
    MappingDeleted,
    MappingEstablished,
    MappingEvent,
    MappingFailed,
    MappingLost,
    MappingState,
    Schedule,
)

log = logging.getLogger(__name__)

#: A reply's epoch may lag the expected one by this much before we call it a reboot
#: (RFC 6886 §3.6: 7/8 of the elapsed time, minus 2 s).
EPOCH_SLACK = 2.0


@dataclass(frozen=True, slots=True)
class Reply:
    """One parsed answer. ``kind`` is "map" or "address"; ``result`` 0 means success."""

    kind: str
    result: int
    epoch: int
    lifetime: int = 0
    external_port: int = 0
    external_ip: str | None = None


class Drop(Exception):
    """Raised by a subclass parser for a datagram that is not a valid answer to us."""


class UdpMappingClient:
    """A mapping of one internal UDP port on one gateway; see ``common`` for the API."""

    protocol = ""
    schedule = Schedule(initial=1.0, maximum=8.0, attempts=3, give_up=6.0)

    def __init__(
        self, server: Address, internal_port: int, *, lifetime: int = 7200,
        external_port: int = 0, rng: random.Random | None = None,
    ) -> None:
        if not 0 < internal_port < 65536:
            raise ValueError(f"internal port {internal_port} out of range")
        self.server = server
        self.internal_port = internal_port
        self.requested_lifetime = lifetime
        self.suggested_port = external_port
        self.state = MappingState.IDLE
        self.external: Address | None = None
        self.lifetime = 0.0
        self.dropped = 0  #: datagrams dropped as malformed, unexpected or from elsewhere
        self.failure: str | None = None
        self.epoch_resets = 0  #: times the gateway's epoch showed it had restarted
        self._rng = rng or random.Random()
        self._exchanges: dict[str, Exchange] = {}
        self._renew_at: float | None = None
        self._expires_at: float | None = None
        self._epoch: tuple[int, float] | None = None
        self._address_ip: str | None = None
        self._mapped_ip: str | None = None
        self._port = 0
        self._datagrams: list[bytes] = []
        self._events: deque[MappingEvent] = deque()

    # ---- subclass hooks

    def _map_request(self, lifetime: int) -> bytes:
        raise NotImplementedError

    def _extra_requests(self) -> dict[str, bytes]:
        """Requests sent alongside the first map request (NAT-PMP: the public address)."""
        return {}

    def _parse(self, data: bytes) -> Reply:
        raise NotImplementedError

    def _external_ip(self, reply: Reply) -> str | None:
        return reply.external_ip

    # ---- API

    def start(self, now: float) -> None:
        if self.state is not MappingState.IDLE:
            return
        self._set_state(MappingState.REQUESTING)
        for kind, payload in self._extra_requests().items():
            self._send(kind, payload, now)
        self._send("map", self._map_request(self.requested_lifetime), now)

    def close(self, now: float) -> None:
        """Delete the mapping (lifetime 0); MappingDeleted follows. Idempotent."""
        if self.state in (MappingState.MAPPED, MappingState.REQUESTING):
            self._exchanges.clear()
            self._set_state(MappingState.DELETING)
            self._send("delete", self._map_request(0), now)
        elif self.state in (MappingState.IDLE, MappingState.FAILED):
            self._set_state(MappingState.CLOSED)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Feed a datagram that arrived on the client's socket. Never raises."""
        if addr != self.server or not self._exchanges:
            self._drop("from %s, not awaited", addr)
            return
        try:
            reply = self._parse(data)
        except Drop as why:
            self._drop("%s", why)
            return
        kind = "delete" if reply.kind == "map" and "delete" in self._exchanges else reply.kind
        if kind not in self._exchanges:
            self._drop("unexpected %s reply", reply.kind)
            return
        del self._exchanges[kind]
        self._check_epoch(reply.epoch, now)
        if kind == "delete":
            self._finish_delete(confirmed=True)
        elif reply.result != 0:
            self._fail(f"{self.protocol} result code {reply.result}", now)
        elif kind == "map":
            self._on_mapped(reply, now)
        else:
            self._on_address(reply, now)

    def handle_timer(self, now: float) -> None:
        for kind, ex in list(self._exchanges.items()):
            if self._exchanges.get(kind) is not ex:
                continue  # an earlier failure in this loop cleared it
            if ex.expired(now):
                del self._exchanges[kind]
                if kind == "delete":
                    self._finish_delete(confirmed=False)
                else:
                    self._fail(f"no {self.protocol} answer from {self.server[0]}", now,
                               retry=True)
            elif ex.due(now):
                ex.mark_sent(now)
                self._datagrams.append(ex.payload)
        if self._renew_at is not None and now >= self._renew_at and "map" not in self._exchanges:
            self._renew_at = None
            self._send("map", self._map_request(self.requested_lifetime), now)
        if self._expires_at is not None and now >= self._expires_at:
            self._lose("the mapping expired without a renewal")

    def datagrams_to_send(self) -> list[bytes]:
        out, self._datagrams = self._datagrams, []
        return out

    def get_timer(self) -> float | None:
        times = [ex.deadline() for ex in self._exchanges.values()]
        times += [t for t in (self._renew_at, self._expires_at) if t is not None]
        return min(times) if times else None

    def next_event(self) -> MappingEvent | None:
        return self._events.popleft() if self._events else None

    # ---- internals

    def _set_state(self, state: MappingState) -> None:
        log.debug("%s %s: %s -> %s", self.protocol, self.internal_port, self.state.value,
                  state.value)
        self.state = state

    def _send(self, kind: str, payload: bytes, now: float) -> None:
        ex = Exchange(payload, self.schedule, now, self._rng)
        self._exchanges[kind] = ex
        ex.mark_sent(now)
        self._datagrams.append(payload)

    def _drop(self, fmt: str, *args: object) -> None:
        self.dropped += 1
        log.debug("%s: dropped a datagram: " + fmt, self.protocol, *args)

    def _check_epoch(self, epoch: int, now: float) -> None:
        """RFC 6886 §3.6 / RFC 6887 §8.5: an epoch that went back means the gateway lost
        its state. Every answer we take is to a request that (re)creates the mapping, so
        there is nothing to redo; the reset is counted and logged."""
        if self._epoch is not None:
            prev, then = self._epoch
            if epoch < prev + (now - then) * 7 / 8 - EPOCH_SLACK:
                self.epoch_resets += 1
                log.info("%s: gateway epoch went back (%d -> %d): it restarted",
                         self.protocol, prev, epoch)
        self._epoch = (epoch, now)

    def _on_address(self, reply: Reply, now: float) -> None:
        self._address_ip = reply.external_ip
        self._maybe_established(now)

    def _on_mapped(self, reply: Reply, now: float) -> None:
        if reply.lifetime <= 0:
            self._fail(f"{self.protocol} granted no lifetime", now)
            return
        self.lifetime = float(reply.lifetime)
        self._renew_at = now + self.lifetime / 2
        self._expires_at = now + self.lifetime
        self._port = reply.external_port
        self._mapped_ip = self._external_ip(reply)
        self._maybe_established(now)

    def _maybe_established(self, now: float) -> None:
        ip = self._mapped_ip or self._address_ip
        port = self._port
        if not ip or not port or any(k != "delete" for k in self._exchanges):
            return
        external = (ip, port)
        if self.state is MappingState.REQUESTING:
            self._set_state(MappingState.MAPPED)
        if external != self.external:
            self.external = external
            self._events.append(MappingEstablished(self.protocol, external, self.lifetime))

    def _fail(self, reason: str, now: float, *, retry: bool = False) -> None:
        if self.state is MappingState.MAPPED:
            if retry and self._expires_at is not None and now < self._expires_at:
                # A renewal went unanswered: keep trying while the mapping still lives.
                self._renew_at = min(self._expires_at, now + self.schedule.initial)
                return
            self._lose(reason)
            return
        self._exchanges.clear()
        self.failure = reason
        self._set_state(MappingState.FAILED)
        self._events.append(MappingFailed(self.protocol, reason))

    def _lose(self, reason: str) -> None:
        self._exchanges.clear()
        self._renew_at = self._expires_at = None
        self.external = None
        self.failure = reason
        self._set_state(MappingState.FAILED)
        self._events.append(MappingLost(self.protocol, reason))

    def _finish_delete(self, *, confirmed: bool) -> None:
        self._renew_at = self._expires_at = None
        self.external = None
        self._set_state(MappingState.CLOSED)
        self._events.append(MappingDeleted(self.protocol, confirmed))

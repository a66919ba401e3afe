"""Spectators: players' peers send them confirmed inputs; they play the match back.

A spectator never predicts, so it never rolls back: it runs a frame once every
player's input for it is known, and runs two a frame while it is behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from framework.protocol.delivery import Delivery
from framework.rollback.endpoint import split_events
from framework.rollback.inputs import InputLog
from framework.rollback.types import (
    DEFAULT_CHANNEL,
    DEFAULT_DISCONNECT_TIMEOUT,
    AdvanceFrame,
    Disconnected,
    InputStatus,
    PlayerInput,
    Request,
    RollbackEvent,
    RollbackStats,
    Transport,
)
from framework.rollback.wire import (
    MAX_FRAMES_PER_MESSAGE,
    MalformedMessage,
    SpectateMessage,
    decode_spectate,
    encode_spectate,
    encode_spectate_ack,
    tag_of,
)

log = logging.getLogger(__name__)

#: A spectator this many frames behind is dropped, so it cannot make a player keep
#: inputs without end (10 s at 60 FPS).
MAX_SPECTATOR_LAG = 600
#: Frames a spectator buffers ahead of what it has played, at most.
MAX_SPECTATOR_BUFFER = 1200
#: Behind by more than this, a spectator runs two frames per advance to catch up.
CATCH_UP_AFTER = 8


class _Watcher:
    def __init__(self, now: float) -> None:
        self.acked = -1
        self.last_heard = now
        self.gone = False


class SpectatorFeed:
    """The player's side: sends each spectator the confirmed inputs it lacks."""

    def __init__(self, transport: Transport, names: Sequence[str], players: int,
                 input_size: int, channel: int, now: float) -> None:
        self.transport = transport
        self.players = players
        self.input_size = input_size
        self.channel = channel
        self._watchers = {name: _Watcher(now) for name in names}
        self._calls = 0

    def knows(self, name: str) -> bool:
        return name in self._watchers

    def acked(self, name: str, ack: int, now: float) -> None:
        w = self._watchers[name]
        w.last_heard = now
        w.acked = max(w.acked, ack)

    def needed_from(self) -> int:
        """The oldest frame a spectator still needs."""
        live = [w.acked + 1 for w in self._watchers.values() if not w.gone]
        return min(live) if live else 1 << 62

    def check_timeouts(self, now: float, timeout: float) -> None:
        for name, w in self._watchers.items():
            if not w.gone and now - w.last_heard > timeout:
                log.info("spectator %s timed out", name)
                w.gone = True

    def feed(self, logs: Sequence[InputLog], confirmed: int, now: float) -> None:
        self._calls += 1
        if not self._watchers or self._calls % 2:
            return
        for name, w in self._watchers.items():
            if w.gone:
                continue
            if confirmed - w.acked > MAX_SPECTATOR_LAG:
                log.info("spectator %s fell %d frames behind: dropped", name, MAX_SPECTATOR_LAG)
                w.gone = True
                continue
            start = w.acked + 1
            end = min(confirmed, start + MAX_FRAMES_PER_MESSAGE - 1)
            if end < start or any(start < lg.first for lg in logs):
                continue
            blob = b"".join(
                lg.confirmed(f) if lg.has(f) else lg.blank
                for f in range(start, end + 1) for lg in logs
            )
            message = encode_spectate(SpectateMessage(start, blob))
            self.transport.send(name, message, Delivery.UNRELIABLE, self.channel)


class SpectatorSession:
    """Watches a match through one of its players (``host``), without predicting."""

    def __init__(self, transport: Transport, host: str, players: int, now: float, *,
                 input_size: int = 1, disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
                 channel: int = DEFAULT_CHANNEL) -> None:
        self.transport = transport
        self.host = host
        self.players = players
        self.input_size = input_size
        self.disconnect_timeout = disconnect_timeout
        self.channel = channel
        self.frame = 0
        self.stats = RollbackStats()
        self._log = InputLog(bytes(input_size * players))
        self._last_heard = now
        self._gone = False
        self._events: list[RollbackEvent] = []
        self._calls = 0

    def handle_message(self, sender: str, message: Any, now: float) -> bool:
        if tag_of(message) is None:
            return False
        try:
            if sender != self.host:
                raise MalformedMessage(f"spectator traffic from {sender!r}")
            m = decode_spectate(message, self.input_size * self.players)
            if m.start > self._log.last + 1:
                raise MalformedMessage("a gap in the inputs")
        except MalformedMessage as exc:
            self.stats.dropped_messages += 1
            log.debug("dropped a message from %s: %s", sender, exc)
            return True
        self._last_heard = now
        group = self.input_size * self.players
        for i in range(len(m.inputs) // group):
            frame = m.start + i
            if frame > self.frame + MAX_SPECTATOR_BUFFER:
                break
            if frame == self._log.last + 1:
                self._log.add(frame, m.inputs[i * group:(i + 1) * group])
        return True

    def handle_events(self, events: Iterable[Any], now: float) -> list[Any]:
        """Feed the events ``Peer.tick()`` returned; returns those that are not ours."""
        return split_events(events, self.handle_message, now)

    def advance_frame(self, now: float) -> list[Request]:
        """One AdvanceFrame per frame ready (two when behind), all confirmed."""
        self._calls += 1
        if not self._gone and now - self._last_heard > self.disconnect_timeout:
            self._gone = True
            self._events.append(Disconnected(self.host, self.frame))
        if self._calls % 2 == 0:
            message = encode_spectate_ack(self._log.last)
            self.transport.send(self.host, message, Delivery.UNRELIABLE, self.channel)
        behind = self._log.last - self.frame
        steps = 2 if behind > CATCH_UP_AFTER else 1
        requests: list[Request] = []
        size = self.input_size
        for _ in range(steps):
            if not self._log.has(self.frame):
                break
            group = self._log.confirmed(self.frame)
            inputs = tuple(PlayerInput(group[i * size:(i + 1) * size], InputStatus.CONFIRMED)
                           for i in range(self.players))
            requests.append(AdvanceFrame(self.frame, inputs))
            self.frame += 1
            self._log.prune(self.frame)
        self.stats.frame = self.frame
        self.stats.confirmed_frame = self._log.last
        return requests

    def events(self) -> list[RollbackEvent]:
        out, self._events = self._events, []
        return out

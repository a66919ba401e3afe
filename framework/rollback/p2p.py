"""A rollback session between 2+ players over an engine session (GGPO / GGRS style).

Only inputs travel. Each frame the game adds its local input and asks
``advance_frame(now)`` what to do; the answer is a list of requests (save,
load, advance with these inputs) that re-simulates from the first wrongly
predicted frame when real inputs contradict the guesses. Pure: the engine is a
``Transport``, time is a parameter, nothing here touches a socket or a clock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from framework.protocol.delivery import Delivery
from framework.rollback.desync import DesyncDetector
from framework.rollback.endpoint import Endpoint, sample_time_sync, split_events
from framework.rollback.inputs import InputLog
from framework.rollback.spectating import SpectatorFeed
from framework.rollback.types import (
    DEFAULT_CHANNEL,
    DEFAULT_DISCONNECT_TIMEOUT,
    DEFAULT_PREDICTION_WINDOW,
    AdvanceFrame,
    Cell,
    Disconnected,
    InputStatus,
    LoadState,
    PlayerInput,
    Request,
    RollbackError,
    RollbackEvent,
    RollbackStats,
    SaveState,
    Transport,
    WaitRecommendation,
)
from framework.rollback.wire import (
    TAG_INPUT,
    TAG_SPECTATE_ACK,
    InputMessage,
    MalformedMessage,
    decode_input,
    decode_spectate_ack,
    encode_input,
    tag_of,
)

log = logging.getLogger(__name__)

#: Inputs accepted this many frames beyond our own frame at most: a peer runs ahead of
#: us by its prediction window and delay; anything further is a lie, and storing it
#: would let one datagram stream grow our memory without end.
MAX_FRAMES_AHEAD = 128
#: The longest input delay that can be set (frames).
MAX_FRAME_DELAY = 30


class P2PSession:
    """One local player and 1+ remote ones; every peer runs the same simulation.

    ``players`` are the names of all players in an order every peer agrees on
    (for Pong: host first); ``local_player`` is ours among them.
    """

    def __init__(
        self,
        transport: Transport,
        players: Sequence[str],
        local_player: str,
        now: float,
        *,
        input_size: int = 1,
        frame_delay: int = 0,
        prediction_window: int = DEFAULT_PREDICTION_WINDOW,
        send_interval: int = 2,
        checksum_interval: int = 16,
        disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
        fps: float = 60.0,
        channel: int = DEFAULT_CHANNEL,
        spectators: Sequence[str] = (),
    ) -> None:
        if len(set(players)) != len(players) or len(players) < 2:
            raise RollbackError("players must be 2 or more distinct names")
        if local_player not in players:
            raise RollbackError(f"{local_player!r} is not one of the players")
        if prediction_window < 0 or input_size < 1 or send_interval < 1:
            raise RollbackError("prediction_window >= 0, input_size >= 1, send_interval >= 1")
        self.transport = transport
        self.players = tuple(players)
        self.local_player = local_player
        self.local_handle = self.players.index(local_player)
        self.input_size = input_size
        self.prediction_window = prediction_window
        self.send_interval = send_interval
        self.checksum_interval = checksum_interval
        self.disconnect_timeout = disconnect_timeout
        self.fps = fps
        self.channel = channel
        self.blank = bytes(input_size)
        self.frame = 0
        self._frame_delay = 0
        self._logs = [InputLog(self.blank) for _ in self.players]
        self._gone_from: dict[int, int] = {}  # handle -> first frame played blank
        self.endpoints = {
            name: Endpoint(name, handle, now)
            for handle, name in enumerate(self.players)
            if name != local_player
        }
        self._cells = [Cell() for _ in range(prediction_window + 2)]
        self._first_wrong: int | None = None
        self._settled = 0  # cells of frames up to here hold confirmed states
        self._desync = DesyncDetector(checksum_interval)
        self._events: list[RollbackEvent] = []
        self._calls = 0
        self._skip = 0
        self.stats = RollbackStats()
        self.spectators = SpectatorFeed(transport, spectators, len(self.players), input_size,
                                        channel, now)
        self.set_frame_delay(frame_delay)

    # --- the game's calls ------------------------------------------------------------

    @property
    def frame_delay(self) -> int:
        return self._frame_delay

    def set_frame_delay(self, frames: int) -> None:
        """Play local inputs ``frames`` later (hides that much latency without rollback).
        Can change at any time: a longer delay repeats the newest input over the gap."""
        if not 0 <= frames <= MAX_FRAME_DELAY:
            raise RollbackError(f"frame delay must be 0..{MAX_FRAME_DELAY}")
        self._frame_delay = frames
        mine = self._logs[self.local_handle]
        while mine.last < self.frame + frames - 1:
            mine.add(mine.last + 1, mine.newest)

    def add_local_input(self, value: bytes) -> bool:
        """The local player's input for this frame (played ``frame_delay`` frames later).
        False if this frame already has one (the last advance was refused)."""
        if len(value) != self.input_size:
            raise RollbackError(f"an input is {self.input_size} bytes, not {len(value)}")
        mine = self._logs[self.local_handle]
        target = self.frame + self._frame_delay
        if mine.last >= target:
            return False
        while mine.last < target - 1:  # the delay shrank or a frame was skipped
            mine.add(mine.last + 1, mine.newest)
        mine.add(target, bytes(value))
        return True

    def advance_frame(self, now: float) -> list[Request]:
        """The requests for this frame, in order; [] when the prediction window is full
        (the game then draws the same frame again). Also sends our inputs."""
        if self._logs[self.local_handle].last < self.frame:
            raise RollbackError("add_local_input() must come before advance_frame()")
        self._calls += 1
        self._check_timeouts(now)
        self._record_checksums()
        requests: list[Request] = []
        confirmed = self.confirmed_frame
        if self.frame - confirmed > self.prediction_window:
            self.stats.stalls += 1
        else:
            self._sample_time_sync(now)
            wrong = self._first_wrong
            if wrong is not None and wrong < self.frame:
                self._rollback(wrong, requests)
            self._first_wrong = None
            requests.append(SaveState(self.frame, self._cell(self.frame)))
            requests.append(AdvanceFrame(self.frame, self._inputs(self.frame)))
            self.frame += 1
            # The state at the start of frame f is final once every input before f is
            # confirmed; the game saved it during this batch if f < self.frame.
            self._settled = min(self.frame - 1, self.confirmed_frame + 1)
            self._prune()
        if self._calls % self.send_interval == 0:
            self._send(now)
        self.spectators.feed(self._logs, self.confirmed_frame, now)
        self.stats.frame = self.frame
        self.stats.confirmed_frame = self.confirmed_frame
        return requests

    def handle_message(self, sender: str, message: Any, now: float) -> bool:
        """A message from the engine; False if it is not rollback traffic from a player
        or spectator of this session. Malformed ones are counted and dropped."""
        tag = tag_of(message)
        if tag is None:
            return False
        try:
            if tag == TAG_INPUT and sender in self.endpoints:
                self._on_input(self.endpoints[sender], decode_input(message, self.input_size),
                               now)
            elif tag == TAG_SPECTATE_ACK and self.spectators.knows(sender):
                self.spectators.acked(sender, decode_spectate_ack(message), now)
            else:
                raise MalformedMessage(f"unexpected message {tag} from {sender!r}")
        except MalformedMessage as exc:
            self.stats.dropped_messages += 1
            log.debug("dropped a message from %s: %s", sender, exc)
        return True

    def handle_events(self, events: Iterable[Any], now: float) -> list[Any]:
        """Feed the events ``Peer.tick()`` returned; returns those that are not ours."""
        return split_events(events, self.handle_message, now)

    def events(self) -> list[RollbackEvent]:
        """The events since the last call (waits, desyncs, disconnections)."""
        out, self._events = self._events, []
        return out

    def disconnect_player(self, name: str) -> None:
        """The game says ``name`` is gone (it left, or the engine lost it)."""
        endpoint = self.endpoints.get(name)
        if endpoint is None or endpoint.disconnected:
            return
        endpoint.disconnected = True
        handle = endpoint.handle
        gone_from = self._logs[handle].last + 1
        self._gone_from[handle] = gone_from
        self._logs[handle].forget_guesses()
        if gone_from < self.frame:  # frames were played on guesses; replay them blank
            self._wrong(gone_from)
        self._events.append(Disconnected(name, gone_from))
        log.info("%s disconnected from frame %d", name, gone_from)

    @property
    def confirmed_frame(self) -> int:
        """Every player's input is known up to this frame."""
        lasts = [log_.last for h, log_ in enumerate(self._logs) if h not in self._gone_from]
        return min(lasts) if lasts else self.frame + self._frame_delay

    def skip_frame(self) -> bool:
        """Whether the game should skip this frame (no input, no advance), to work off a
        wait recommendation: at most one frame in four, so nobody sees a stall."""
        if self._skip > 0 and self._calls % 4 == 0:
            self._skip -= 1
            self._calls += 1
            return True
        return False

    def confirmed_state(self) -> tuple[int, Any] | None:
        """``(frame, state)``: the newest saved state that no rollback can change (every
        input before ``frame`` is confirmed); None before the game saved one. Read it
        after running the requests, for results that both sides must agree on."""
        cell = self._cell(self._settled)
        if cell.frame != self._settled:
            return None
        return self._settled, cell.state

    @property
    def held_inputs(self) -> int:
        """Inputs kept in memory, all players together (bounded whatever peers send)."""
        return sum(len(log_) for log_ in self._logs)

    # --- inside ----------------------------------------------------------------------

    def _cell(self, frame: int) -> Cell:
        return self._cells[frame % len(self._cells)]

    def _wrong(self, frame: int) -> None:
        if self._first_wrong is None or frame < self._first_wrong:
            self._first_wrong = frame

    def _inputs(self, frame: int) -> tuple[PlayerInput, ...]:
        out = []
        for handle, log_ in enumerate(self._logs):
            gone = self._gone_from.get(handle)
            if log_.has(frame):
                out.append(PlayerInput(log_.confirmed(frame), InputStatus.CONFIRMED))
            elif gone is not None and frame >= gone:
                out.append(PlayerInput(self.blank, InputStatus.DISCONNECTED))
            else:
                out.append(PlayerInput(log_.predict(frame), InputStatus.PREDICTED))
        return tuple(out)

    def _rollback(self, first: int, requests: list[Request]) -> None:
        frames = self.frame - first
        requests.append(LoadState(first, self._cell(first)))
        for frame in range(first, self.frame):
            if frame > first:
                requests.append(SaveState(frame, self._cell(frame)))
            requests.append(AdvanceFrame(frame, self._inputs(frame)))
        s = self.stats
        s.rollbacks += 1
        s.frames_rolled_back += frames
        s.max_rollback_frames = max(s.max_rollback_frames, frames)

    def _on_input(self, ep: Endpoint, m: InputMessage, now: float) -> None:
        if ep.disconnected:
            return
        theirs = self._logs[ep.handle]
        if m.start > theirs.last + 1:
            raise MalformedMessage(f"inputs from {m.start} leave a gap after {theirs.last}")
        ep.heard(m, now, self._logs[self.local_handle].last)
        limit = self.frame + MAX_FRAMES_AHEAD
        size = self.input_size
        for i in range(len(m.inputs) // size):
            frame = m.start + i
            if frame <= theirs.last:
                continue
            if frame > limit:
                self.stats.dropped_messages += 1
                break
            if theirs.add(frame, m.inputs[i * size:(i + 1) * size]):
                self.stats.prediction_misses += 1
                self._wrong(frame)
        self._compare_checksums(ep)

    def _send(self, now: float) -> None:
        mine = self._logs[self.local_handle]
        newest = self._desync.newest
        for ep in self.endpoints.values():
            if ep.disconnected:
                continue
            message = ep.input_message(mine, self.frame, self._logs[ep.handle].last, newest,
                                       now, self.fps)
            self.transport.send(ep.name, encode_input(message, self.input_size),
                                Delivery.UNRELIABLE, self.channel)
            self.stats.messages_sent += 1

    def _sample_time_sync(self, now: float) -> None:
        live = [ep for ep in self.endpoints.values() if not ep.disconnected]
        advantage, wait = sample_time_sync(live, self.frame, now, self.fps)
        self.stats.frame_advantage = advantage
        if wait:
            self._skip += wait
            self._events.append(WaitRecommendation(wait))

    def _record_checksums(self) -> None:
        """Checksums of frames whose saved state is final now (see ``_settled``)."""
        oldest = self._settled - len(self._cells) + 1
        self._desync.record(self._settled, oldest, self._cell)
        for ep in self.endpoints.values():
            self._compare_checksums(ep)

    def _compare_checksums(self, ep: Endpoint) -> None:
        for desync in self._desync.compare(ep):
            self.stats.desyncs += 1
            self._events.append(desync)

    def _check_timeouts(self, now: float) -> None:
        for ep in self.endpoints.values():
            if not ep.disconnected and now - ep.last_heard > self.disconnect_timeout:
                self.disconnect_player(ep.name)
        self.spectators.check_timeouts(now, self.disconnect_timeout)

    def _prune(self) -> None:
        keep = self.frame - self.prediction_window - 2
        for handle, log_ in enumerate(self._logs):
            below = min(keep, self.spectators.needed_from())
            if handle == self.local_handle:
                acks = [ep.acked for ep in self.endpoints.values() if not ep.disconnected]
                below = min([below, *(a + 1 for a in acks)])
            log_.prune(below)
        self.stats.rtt = {n: ep.rtt for n, ep in self.endpoints.items()}

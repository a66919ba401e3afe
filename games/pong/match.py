"""One networked game between two players, as each side runs it.

`HostMatch` owns the authoritative simulation; `ClientMatch` predicts its own
paddle and plays back the host's snapshots. Neither knows about sockets or
the engine: they talk through a `Link` and are told the time, so the same
code runs in the window, headless and under test with a fake link.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from games.pong.net import (
    INPUT_HISTORY,
    SNAPSHOT_EVERY_TICKS,
    GameEvent,
    Kind,
    MessageError,
    Snapshot,
    decode_event,
    decode_input,
    decode_snapshot,
    encode_event,
    encode_input,
    encode_snapshot,
)
from games.pong.sim import (
    LEFT,
    RIGHT,
    EventKind,
    Intent,
    Phase,
    Rules,
    SimEvent,
    Simulation,
)
from games.pong.sync import InputQueue, PaddlePredictor, Playback, SnapshotBuffer, StepClock

log = logging.getLogger(__name__)

SILENCE_TIMEOUT = 5.0  # s without a word from the opponent: they are gone


class Link(Protocol):
    """How a match reaches the other player."""

    def send_fast(self, data: bytes) -> None:
        """Unreliable-sequenced: newest wins, lost is lost."""

    def send_event(self, message: list[object]) -> None:
        """Reliable-ordered."""


class Status(Enum):
    WAITING = "waiting"  # client: connected, no snapshot yet
    PLAYING = "playing"
    OVER = "over"
    LOST = "lost"  # the opponent left or went silent


@dataclass(frozen=True)
class View:
    """Everything drawing needs; built from the state, never written back."""

    ball: tuple[float, float]
    ball_velocity: tuple[float, float]
    paddles: tuple[float, float]
    score: tuple[int, int]
    phase: Phase
    my_side: int
    names: tuple[str, str]
    points_to_win: int
    rules: Rules


# Decides this player's intent for one tick from what the player sees.
Controller = Callable[[View], Intent]


class Match:
    """What both sides share: status, rematch agreement, silence detection."""

    my_side = LEFT
    rules: Rules

    def __init__(self, link: Link, my_name: str, opponent: str, now: float) -> None:
        self.link = link
        self.my_name = my_name
        self.opponent = opponent
        self.status = Status.PLAYING
        self.lost_reason = ""
        self.final_score: tuple[int, int] = (0, 0)
        self.winner: int | None = None
        self.i_want_rematch = False
        self.they_want_rematch = False
        self._last_heard = now
        self._clock = StepClock()
        self._events: list[SimEvent] = []

    @property
    def names(self) -> tuple[str, str]:
        if self.my_side == LEFT:
            return (self.my_name, self.opponent)
        return (self.opponent, self.my_name)

    @property
    def i_won(self) -> bool:
        return self.winner == self.my_side

    def take_events(self) -> list[SimEvent]:
        """Sound-worthy events since the last call."""
        events, self._events = self._events, []
        return events

    def heard(self, now: float) -> None:
        self._last_heard = now

    def check_silence(self, now: float) -> None:
        if self.status != Status.LOST and now - self._last_heard > SILENCE_TIMEOUT:
            self.opponent_lost(f"{self.opponent} stopped answering (timed out)")

    def opponent_lost(self, reason: str) -> None:
        if self.status == Status.LOST:
            return
        log.info("opponent lost: %s", reason)
        self.status = Status.LOST
        self.lost_reason = reason

    def on_fast(self, data: object, now: float) -> None:
        """An unreliable message from the opponent."""
        self.heard(now)
        try:
            self._on_fast(data, now)
        except MessageError as exc:
            log.warning("dropped a message from %s: %s", self.opponent, exc)

    def on_event(self, message: object, now: float) -> None:
        """A reliable message from the opponent."""
        self.heard(now)
        try:
            event = decode_event(message)
        except MessageError as exc:
            log.warning("dropped an event from %s: %s", self.opponent, exc)
            return
        if event.kind == Kind.BYE:
            self.opponent_lost(f"{self.opponent} left the game")
        elif event.kind == Kind.REMATCH:
            self.they_want_rematch = True
            self._maybe_restart()
        else:
            self._on_event(event)

    def request_rematch(self) -> None:
        if self.status != Status.OVER or self.i_want_rematch:
            return
        self.i_want_rematch = True
        self.link.send_event(encode_event(GameEvent(Kind.REMATCH)))
        self._maybe_restart()

    def leave(self) -> None:
        """Tell the opponent we go (the engine's own quit notice follows anyway)."""
        if self.status != Status.LOST:
            self.link.send_event(encode_event(GameEvent(Kind.BYE)))
        self.status = Status.LOST
        self.lost_reason = "you left"

    def _game_over(self, winner: int, score: tuple[int, int]) -> None:
        if self.status != Status.PLAYING:
            return
        self.status = Status.OVER
        self.winner = winner
        self.final_score = score
        self.i_want_rematch = self.they_want_rematch = False

    def _restarted(self) -> None:
        self.status = Status.PLAYING
        self.winner = None
        self.i_want_rematch = self.they_want_rematch = False

    # Side-specific parts.
    def update(self, now: float, controller: Controller) -> None:
        """Advance by the real time passed; `controller` decides our paddle."""
        raise NotImplementedError

    def view(self) -> View:
        """What to draw now."""
        raise NotImplementedError

    def _on_fast(self, data: object, now: float) -> None:
        raise NotImplementedError

    def _on_event(self, event: GameEvent) -> None:
        raise NotImplementedError

    def _maybe_restart(self) -> None:
        raise NotImplementedError


class HostMatch(Match):
    """The host: runs the simulation, applies the client's inputs, sends snapshots."""

    my_side = LEFT

    def __init__(
        self,
        link: Link,
        my_name: str,
        opponent: str,
        now: float,
        *,
        seed: int,
        rules: Rules | None = None,
    ) -> None:
        super().__init__(link, my_name, opponent, now)
        self.sim = Simulation(seed, rules)
        self.rules = self.sim.rules
        self.inputs = InputQueue()
        self.over_seen = False  # the client confirmed it knows the game is over

    def update(self, now: float, controller: Controller) -> None:
        """Run the ticks that real time asks for; send snapshots."""
        self.check_silence(now)
        if self.status == Status.LOST:
            return
        for _ in range(self._clock.advance(now)):
            for intent in self.inputs.drain():
                self.sim.move_paddle(RIGHT, intent)
            left = controller(self.view()) if self.status == Status.PLAYING else Intent.STAY
            for event in self.sim.step(left, Intent.STAY):
                self._sim_event(event)
            if self.sim.state.tick % SNAPSHOT_EVERY_TICKS == 0:
                snap = Snapshot.from_state(
                    self.sim.state, self.rules.points_to_win, self.inputs.newest
                )
                self.link.send_fast(encode_snapshot(snap))

    def _sim_event(self, event: SimEvent) -> None:
        self._events.append(event)
        score = self.sim.state.score
        if event.kind == EventKind.POINT and event.side is not None:
            self.link.send_event(
                encode_event(GameEvent(Kind.POINT, (event.side, score[0], score[1])))
            )
        elif event.kind == EventKind.GAME_OVER and event.side is not None:
            self.link.send_event(
                encode_event(GameEvent(Kind.OVER, (event.side, score[0], score[1])))
            )
            self.over_seen = False
            self._game_over(event.side, (score[0], score[1]))

    def _on_fast(self, data: object, now: float) -> None:
        self.inputs.receive(decode_input(data))

    def _on_event(self, event: GameEvent) -> None:
        if event.kind == Kind.OVER_SEEN:
            self.over_seen = True
        else:
            log.warning("unexpected %s from client %s", event.kind.value, self.opponent)

    def _maybe_restart(self) -> None:
        if self.status == Status.OVER and self.i_want_rematch and self.they_want_rematch:
            self.sim.restart()
            self.link.send_event(encode_event(GameEvent(Kind.RESTART, (self.sim.state.game,))))
            self._restarted()

    def view(self) -> View:
        s = self.sim.state
        return View(
            ball=(s.ball.x, s.ball.y),
            ball_velocity=(s.ball.vx, s.ball.vy),
            paddles=(s.paddles[0], s.paddles[1]),
            score=(s.score[0], s.score[1]),
            phase=s.phase,
            my_side=LEFT,
            names=self.names,
            points_to_win=self.rules.points_to_win,
            rules=self.rules,
        )


class ClientMatch(Match):
    """The client: predicts its paddle, plays back the host's snapshots."""

    my_side = RIGHT

    def __init__(self, link: Link, my_name: str, opponent: str, now: float) -> None:
        super().__init__(link, my_name, opponent, now)
        self.status = Status.WAITING
        self.rules = Rules()
        self.buffer = SnapshotBuffer(self.rules)
        self.predictor = PaddlePredictor(self.rules, INPUT_HISTORY)
        self.game = 0
        self._play: Playback | None = None

    def update(self, now: float, controller: Controller) -> None:
        """Sample one intent per tick, move our paddle at once, send the inputs."""
        self.check_silence(now)
        if self.status == Status.LOST:
            return
        self._play = self.buffer.sample(now)
        self._events.extend(self.buffer.take_events())
        steps = self._clock.advance(now)
        for _ in range(steps):
            playing = self.status == Status.PLAYING
            self.predictor.step(controller(self.view()) if playing else Intent.STAY)
        message = self.predictor.message()
        if steps and message is not None:
            self.link.send_fast(encode_input(message))

    def _on_fast(self, data: object, now: float) -> None:
        snap = decode_snapshot(data)
        if snap.game != self.game:
            if self.status == Status.OVER and snap.game == (self.game + 1) % 256:
                self._restart(snap.game)  # the snapshot overtook the RESTART event
            else:
                return  # a straggler from the last game
        if not self.buffer.push(snap, now):
            return
        if snap.points_to_win != self.rules.points_to_win:
            self.rules = Rules(points_to_win=snap.points_to_win)
        self.predictor.reconcile(snap.right_y, snap.input_ack)
        if self.status == Status.WAITING:
            self.status = Status.PLAYING
        if snap.phase == Phase.OVER:
            winner = LEFT if snap.score[LEFT] > snap.score[RIGHT] else RIGHT
            self._game_over(winner, snap.score)

    def _game_over(self, winner: int, score: tuple[int, int]) -> None:
        if self.status == Status.PLAYING:
            self.link.send_event(encode_event(GameEvent(Kind.OVER_SEEN)))
            self._events.append(SimEvent(EventKind.GAME_OVER, winner))
        super()._game_over(winner, score)

    def _on_event(self, event: GameEvent) -> None:
        if event.kind == Kind.OVER:
            winner, left, right = event.args
            if self.status == Status.WAITING:
                self.status = Status.PLAYING
            self._game_over(winner, (left, right))
        elif event.kind == Kind.RESTART:
            self._restart(event.args[0] % 256)
        elif event.kind != Kind.POINT:  # points are shown from the snapshots
            log.warning("unexpected %s from host %s", event.kind.value, self.opponent)

    def _restart(self, game: int) -> None:
        if self.game == game:
            return
        self.game = game
        self._restarted()

    def _maybe_restart(self) -> None:
        """Only the host restarts; the client waits for RESTART."""

    def view(self) -> View:
        play = self._play
        r = self.rules
        if play is None:
            return View(
                ball=(r.width / 2, r.height / 2),
                ball_velocity=(0.0, 0.0),
                paddles=(r.height / 2, self.predictor.y),
                score=(0, 0),
                phase=Phase.SERVE,
                my_side=RIGHT,
                names=self.names,
                points_to_win=r.points_to_win,
                rules=r,
            )
        score = self.final_score if self.status == Status.OVER else play.score
        return View(
            ball=(play.ball_x, play.ball_y),
            ball_velocity=(play.ball_vx, play.ball_vy),
            paddles=(play.left_y, self.predictor.y),
            score=score,
            phase=play.phase,
            my_side=RIGHT,
            names=self.names,
            points_to_win=r.points_to_win,
            rules=r,
        )

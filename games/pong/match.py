"""One networked game between two players, the same code on both sides.

Rollback: both players run the whole simulation; only inputs travel (through a
``framework.rollback.P2PSession``). Each tick this player's intent goes in, the
session answers with requests (save, load, advance with these inputs), and the
screen shows the newest, partly predicted frame. Results (score, hits, the end
of a game) are read from the confirmed state only, so both sides agree on them.
The match knows nothing of sockets; it is told the time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from framework.protocol.delivery import Delivery
from framework.rollback import (
    AdvanceFrame,
    Desync,
    Disconnected,
    LoadState,
    P2PSession,
    Request,
    SaveState,
    Transport,
)
from games.pong.net import GameEvent, Kind, MessageError, decode_event, encode_event
from games.pong.sim import (
    LEFT,
    RIGHT,
    SUB,
    TICK_RATE,
    Intent,
    Phase,
    Rules,
    SimEvent,
    Simulation,
    State,
    checksum,
    encode_input,
)
from games.pong.ticks import StepClock

log = logging.getLogger(__name__)

SILENCE_TIMEOUT = 5.0  # s without a datagram from the opponent: they are gone
EVENT_CHANNEL = 0  # reliable-ordered game events
ROLLBACK_CHANNEL = 3  # the rollback session's inputs, unreliable
PREDICTION_WINDOW = 8  # frames played ahead of the opponent's inputs at most
#: Frames between two datagrams of inputs (each repeats every input not yet acked):
#: 20 a second keeps a match under 1.5 KB/s each way with the 28 bytes every encrypted
#: datagram carries, and costs the remote side a frame of latency on average.
INPUT_SEND_INTERVAL = 3
# Local inputs play two frames (33 ms) late: a trip shorter than that needs no rollback,
# and a 150 ms round trip rolls back about 5 frames instead of 7.
FRAME_DELAY = 2


class Status(Enum):
    WAITING = "waiting"  # client: connected, no START yet
    PLAYING = "playing"
    OVER = "over"
    LOST = "lost"  # the opponent left or went silent


@dataclass(frozen=True)
class View:
    """Everything drawing and the bot need; built from the state, never written back."""

    ball: tuple[float, float]
    ball_velocity: tuple[float, float]  # px/s
    paddles: tuple[float, float]
    score: tuple[int, int]
    phase: Phase
    my_side: int
    names: tuple[str, str]
    points_to_win: int
    rules: Rules


def make_view(state: State, rules: Rules, my_side: int, names: tuple[str, str]) -> View:
    """A state in pixels and pixels per second."""
    s = state
    per_second = TICK_RATE / SUB
    return View(
        ball=(s.ball_x / SUB, s.ball_y / SUB),
        ball_velocity=(s.ball_vx * per_second, s.ball_vy * per_second),
        paddles=(s.left_y / SUB, s.right_y / SUB),
        score=s.score,
        phase=Phase(s.phase),
        my_side=my_side,
        names=names,
        points_to_win=rules.points_to_win,
        rules=rules,
    )


# Decides this player's intent for one tick from what the player sees.
Controller = Callable[[View], Intent]


class Match:
    """A match over an engine peer (``link``); ``my_side`` LEFT is the host."""

    def __init__(self, link: Transport, my_name: str, opponent: str, my_side: int, now: float,
                 *, seed: int = 0, rules: Rules | None = None) -> None:
        self.link = link
        self.my_name = my_name
        self.opponent = opponent
        self.my_side = my_side
        self.rules = rules if rules is not None else Rules()
        self.status = Status.WAITING
        self.lost_reason = ""
        self.final_score: tuple[int, int] = (0, 0)
        self.winner: int | None = None
        self.i_want_rematch = False
        self.game = 0
        self.over_seen_by_opponent = -1  # the newest game whose end they confirmed
        self.desyncs: list[Desync] = []
        self.sim = Simulation(seed, self.rules)
        self.session: P2PSession | None = None
        self.confirmed: State = self.sim.state
        self._clock = StepClock()
        self._events: list[SimEvent] = []
        self._newest_frame = 0  # frames below were simulated once already: no new sounds
        if my_side == LEFT:
            self._send_event(GameEvent(Kind.START, (seed, self.rules.points_to_win)))
            self._start(seed, now)

    # --- what the players see ---------------------------------------------------------

    @property
    def names(self) -> tuple[str, str]:
        if self.my_side == LEFT:
            return (self.my_name, self.opponent)
        return (self.opponent, self.my_name)

    @property
    def i_won(self) -> bool:
        return self.winner == self.my_side

    @property
    def they_want_rematch(self) -> bool:
        s = self.sim.state
        return bool(s.right_rematch if self.my_side == LEFT else s.left_rematch)

    @property
    def my_hits(self) -> int:
        c = self.confirmed
        return c.left_hits if self.my_side == LEFT else c.right_hits

    @property
    def my_misses(self) -> int:
        c = self.confirmed
        return c.left_misses if self.my_side == LEFT else c.right_misses

    def take_events(self) -> list[SimEvent]:
        """Sound-worthy events since the last call (each frame's first run only)."""
        events, self._events = self._events, []
        return events

    def view(self) -> View:
        """The newest frame, partly predicted: what this player sees and steers by."""
        return make_view(self.sim.state, self.rules, self.my_side, self.names)

    # --- the player's calls -----------------------------------------------------------

    def update(self, now: float, controller: Controller) -> None:
        """Run the ticks that real time asks for; ``controller`` decides our paddle."""
        session = self.session
        if session is None or self.status == Status.LOST:
            return
        for _ in range(self._clock.advance(now)):
            if session.skip_frame():  # we run ahead: one frame in four at most
                continue
            playing = self.status == Status.PLAYING
            intent = controller(self.view()) if playing else Intent.STAY
            rematch = self.status == Status.OVER and self.i_want_rematch
            session.add_local_input(bytes([encode_input(intent, rematch)]))
            self._run(session.advance_frame(now))
        for event in session.events():
            if isinstance(event, Disconnected):
                self.opponent_lost(f"{self.opponent} timed out")
            elif isinstance(event, Desync):
                self.desyncs.append(event)
        self._read_confirmed(session)

    def request_rematch(self) -> None:
        if self.status == Status.OVER:
            self.i_want_rematch = True

    def leave(self) -> None:
        """Tell the opponent we go (the engine's own quit notice follows anyway)."""
        if self.status != Status.LOST:
            self._send_event(GameEvent(Kind.BYE))
        self.status = Status.LOST
        self.lost_reason = "you left"

    def opponent_lost(self, reason: str) -> None:
        if self.status == Status.LOST:
            return
        log.info("opponent lost: %s", reason)
        self.status = Status.LOST
        self.lost_reason = reason

    # --- from the network -------------------------------------------------------------

    def handle_events(self, events: Iterable[Any], now: float) -> list[Any]:
        """Take the rollback traffic out of the engine's events; return the rest."""
        if self.session is None:
            return list(events)
        return self.session.handle_events(events, now)

    def on_event(self, message: object, now: float) -> None:
        """A reliable message from the opponent."""
        try:
            event = decode_event(message)
        except MessageError as exc:
            log.warning("dropped an event from %s: %s", self.opponent, exc)
            return
        if event.kind == Kind.BYE:
            self.opponent_lost(f"{self.opponent} left the game")
        elif event.kind == Kind.OVER_SEEN:
            self.over_seen_by_opponent = max(self.over_seen_by_opponent, event.args[0])
        elif event.kind == Kind.START and self.my_side == RIGHT and self.session is None:
            seed, points = event.args
            self.rules = Rules(points_to_win=points)
            self.sim = Simulation(seed, self.rules)
            self.confirmed = self.sim.state
            self._start(seed, now)
        else:
            log.warning("unexpected %s from %s", event.kind.value, self.opponent)

    # --- inside -----------------------------------------------------------------------

    def _start(self, seed: int, now: float) -> None:
        players: Sequence[str] = self.names
        self.session = P2PSession(
            self.link, players, self.my_name, now, input_size=1, frame_delay=FRAME_DELAY,
            prediction_window=PREDICTION_WINDOW, disconnect_timeout=SILENCE_TIMEOUT,
            channel=ROLLBACK_CHANNEL, fps=TICK_RATE, send_interval=INPUT_SEND_INTERVAL,
        )
        self.status = Status.PLAYING
        log.info("match %s vs %s starts, seed %d", *self.names, seed)

    def _run(self, requests: list[Request]) -> None:
        sim = self.sim
        for r in requests:
            if isinstance(r, SaveState):
                snap = sim.save()
                r.cell.save(r.frame, snap, checksum(snap))
            elif isinstance(r, LoadState):
                sim.load(r.cell.load())
            elif isinstance(r, AdvanceFrame):
                events = sim.step(r.inputs[0].value[0], r.inputs[1].value[0])
                if r.frame >= self._newest_frame:
                    self._newest_frame = r.frame + 1
                    self._events.extend(events)

    def _read_confirmed(self, session: P2PSession) -> None:
        known = session.confirmed_state()
        if known is None:
            return
        self.confirmed = c = State(*known[1])
        if c.game > self.game:  # both asked for a rematch
            self.game = c.game
            self.status = Status.PLAYING
            self.winner = None
            self.i_want_rematch = False
        elif c.phase == Phase.OVER and self.status == Status.PLAYING:
            self.status = Status.OVER
            self.final_score = c.score
            self.winner = LEFT if c.left_score > c.right_score else RIGHT
            self._send_event(GameEvent(Kind.OVER_SEEN, (c.game,)))

    def _send_event(self, event: GameEvent) -> None:
        self.link.send(self.opponent, encode_event(event), Delivery.RELIABLE_ORDERED,
                       EVENT_CHANNEL)

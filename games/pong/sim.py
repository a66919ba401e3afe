"""The Pong simulation: pure, deterministic, fixed-step.

No pygame, no clock, no I/O. The host runs it; the client only ever sees its
snapshots. Given the same seed and the same sequence of calls, two
simulations end in equal states (floats included: every operation is the same
IEEE arithmetic in the same order).

Coordinates are pixels of an 800 x 600 field, y grows downwards; the ball and
the paddles are described by their centres. Side 0 (left) is the host,
side 1 (right) the client.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from enum import IntEnum

TICK_RATE = 60
DT = 1.0 / TICK_RATE

LEFT = 0
RIGHT = 1

_MASK64 = (1 << 64) - 1


class Phase(IntEnum):
    """Where the game stands."""

    SERVE = 0  # the ball waits in the centre, paddles may move
    PLAY = 1  # the ball is in play
    OVER = 2  # somebody reached the target score


class Intent(IntEnum):
    """What a player wants its paddle to do during one tick."""

    UP = -1
    STAY = 0
    DOWN = 1


class EventKind(IntEnum):
    """Things worth a sound or a network message."""

    WALL = 0  # the ball bounced off the top or bottom wall
    PADDLE = 1  # the ball bounced off a paddle (side = whose)
    SERVE = 2  # the ball was served (side = towards whom)
    POINT = 3  # a point was scored (side = who scored)
    GAME_OVER = 4  # the game ended (side = winner)


@dataclass(frozen=True)
class SimEvent:
    """One thing that happened during a tick."""

    kind: EventKind
    side: int | None = None


@dataclass(frozen=True)
class Rules:
    """Geometry and tuning. Both players must use the same values."""

    width: float = 800.0
    height: float = 600.0
    paddle_width: float = 12.0
    paddle_height: float = 90.0
    paddle_margin: float = 24.0  # from the field edge to the paddle's outer side
    paddle_speed: float = 480.0  # px/s
    ball_size: float = 12.0
    serve_speed: float = 540.0  # px/s
    speed_up: float = 1.07  # per paddle hit
    max_speed: float = 1100.0  # px/s; a tick then moves the ball 18 px (collisions are swept)
    max_serve_angle: float = math.radians(35)
    max_bounce_angle: float = math.radians(55)
    serve_delay_ticks: int = 45
    points_to_win: int = 11

    def paddle_face_x(self, side: int) -> float:
        """The x of the paddle face that meets the ball."""
        if side == LEFT:
            return self.paddle_margin + self.paddle_width
        return self.width - self.paddle_margin - self.paddle_width

    def paddle_centre_x(self, side: int) -> float:
        if side == LEFT:
            return self.paddle_margin + self.paddle_width / 2
        return self.width - self.paddle_margin - self.paddle_width / 2


@dataclass
class Ball:
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0


@dataclass
class State:
    """Everything the simulation knows; plain data, compared with ==."""

    rng: int
    ball: Ball
    paddles: list[float]
    score: list[int] = field(default_factory=lambda: [0, 0])
    phase: Phase = Phase.SERVE
    phase_ticks: int = 0  # ticks left before the serve
    serve_to: int = LEFT
    tick: int = 0
    game: int = 0  # counts rematches
    hits: int = 0  # paddle hits in the current rally

    def copy(self) -> State:
        return copy.deepcopy(self)


def _splitmix64(state: int) -> tuple[int, int]:
    """One step of SplitMix64 (Steele, Lea, Flood 2014): (new state, output)."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def fold_y(y: float, rules: Rules) -> tuple[float, bool]:
    """A ball centre y moved without walls, reflected back between them.

    Returns the folded y and whether an odd number of bounces flipped the
    vertical direction.
    """
    half = rules.ball_size / 2
    span = rules.height - rules.ball_size
    bounces, rest = divmod(y - half, span)
    flipped = int(bounces) % 2 == 1
    return (half + (span - rest if flipped else rest)), flipped


def move_paddle(y: float, intent: int, rules: Rules) -> float:
    """Where a paddle at `y` is after one tick of `intent`.

    Also used by the client's prediction: it must stay the exact same
    arithmetic as the host's.
    """
    half = rules.paddle_height / 2
    moved = y + clamp(float(intent), -1.0, 1.0) * rules.paddle_speed * DT
    return clamp(moved, half, rules.height - half)


class Simulation:
    """A game of Pong, advanced one fixed tick at a time."""

    def __init__(self, seed: int, rules: Rules | None = None) -> None:
        self.rules = rules if rules is not None else Rules()
        self.state = self._fresh_state(seed & _MASK64, game=0, tick=0)

    def _fresh_state(self, rng: int, game: int, tick: int) -> State:
        r = self.rules
        state = State(
            rng=rng,
            ball=Ball(r.width / 2, r.height / 2),
            paddles=[r.height / 2, r.height / 2],
            phase=Phase.SERVE,
            phase_ticks=r.serve_delay_ticks,
            tick=tick,
            game=game,
        )
        state.serve_to = LEFT if self._random(state) < 0.5 else RIGHT
        return state

    @staticmethod
    def _random(state: State) -> float:
        """A float in [0, 1) from the state's own generator."""
        state.rng, out = _splitmix64(state.rng)
        return (out >> 11) / float(1 << 53)

    def restart(self) -> None:
        """A rematch: scores to zero, a new serve; ticks keep counting."""
        s = self.state
        self.state = self._fresh_state(s.rng, game=s.game + 1, tick=s.tick)

    @property
    def winner(self) -> int | None:
        if self.state.phase != Phase.OVER:
            return None
        return LEFT if self.state.score[LEFT] > self.state.score[RIGHT] else RIGHT

    def move_paddle(self, side: int, intent: int) -> None:
        """Move one paddle by one tick of input without advancing time.

        The host applies the client's inputs this way as they arrive, so a
        late input still moves the paddle exactly as the client predicted.
        """
        self.state.paddles[side] = move_paddle(self.state.paddles[side], intent, self.rules)

    def step(self, left: int = Intent.STAY, right: int = Intent.STAY) -> list[SimEvent]:
        """Advance one tick with these paddle intents; return what happened."""
        s = self.state
        s.tick += 1
        self.move_paddle(LEFT, left)
        self.move_paddle(RIGHT, right)
        if s.phase == Phase.SERVE:
            s.phase_ticks -= 1
            if s.phase_ticks <= 0:
                return [self._serve()]
            return []
        if s.phase == Phase.PLAY:
            return self._move_ball()
        return []

    def _serve(self) -> SimEvent:
        s, r = self.state, self.rules
        angle = (self._random(s) * 2 - 1) * r.max_serve_angle
        direction = -1.0 if s.serve_to == LEFT else 1.0
        s.ball = Ball(
            r.width / 2,
            r.height / 2,
            direction * r.serve_speed * math.cos(angle),
            r.serve_speed * math.sin(angle),
        )
        s.phase = Phase.PLAY
        s.hits = 0
        return SimEvent(EventKind.SERVE, s.serve_to)

    def _move_ball(self) -> list[SimEvent]:
        s, r = self.state, self.rules
        b = s.ball
        events: list[SimEvent] = []
        prev_x, prev_y = b.x, b.y
        b.x += b.vx * DT
        b.y += b.vy * DT
        half = r.ball_size / 2
        events.extend(self._bounce_walls())
        side = LEFT if b.vx < 0 else RIGHT
        hit = self._paddle_hit(side, prev_x, prev_y)
        if hit is not None:
            events.append(hit)
            events.extend(self._bounce_walls())
        if b.x + half < 0:
            events.extend(self._point(RIGHT))
        elif b.x - half > r.width:
            events.extend(self._point(LEFT))
        return events

    def _bounce_walls(self) -> list[SimEvent]:
        r, b = self.rules, self.state.ball
        half = r.ball_size / 2
        top, bottom = half, r.height - half
        if b.y < top:
            b.y = 2 * top - b.y
            b.vy = abs(b.vy)
            return [SimEvent(EventKind.WALL)]
        if b.y > bottom:
            b.y = 2 * bottom - b.y
            b.vy = -abs(b.vy)
            return [SimEvent(EventKind.WALL)]
        return []

    def _paddle_hit(self, side: int, prev_x: float, prev_y: float) -> SimEvent | None:
        """Bounce the ball if, during this tick, it crossed `side`'s paddle face."""
        s, r = self.state, self.rules
        b = s.ball
        half = r.ball_size / 2
        face = r.paddle_face_x(side)
        sign = -1.0 if side == LEFT else 1.0  # the direction of travel towards this paddle
        before = (prev_x + sign * half - face) * sign  # < 0: still in front of the face
        after = (b.x + sign * half - face) * sign
        if not (before <= 0 < after):
            return None
        t = -before / (after - before)
        y_cross = prev_y + (b.y - prev_y) * t
        reach = r.paddle_height / 2 + half
        offset = (y_cross - s.paddles[side]) / reach
        if abs(offset) > 1.0:
            return None
        angle = offset * r.max_bounce_angle
        speed = min(math.hypot(b.vx, b.vy) * r.speed_up, r.max_speed)
        b.vx = -sign * speed * math.cos(angle)
        b.vy = speed * math.sin(angle)
        rest = (1.0 - t) * DT
        b.x = face - sign * half + b.vx * rest
        b.y = y_cross + b.vy * rest
        s.hits += 1
        return SimEvent(EventKind.PADDLE, side)

    def _point(self, scorer: int) -> list[SimEvent]:
        s, r = self.state, self.rules
        s.score[scorer] += 1
        s.ball = Ball(r.width / 2, r.height / 2)
        events = [SimEvent(EventKind.POINT, scorer)]
        if s.score[scorer] >= r.points_to_win:
            s.phase = Phase.OVER
            events.append(SimEvent(EventKind.GAME_OVER, scorer))
        else:
            s.phase = Phase.SERVE
            s.phase_ticks = r.serve_delay_ticks
            s.serve_to = 1 - scorer  # towards the player who lost the point
        return events

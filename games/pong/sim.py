"""The Pong simulation: pure, deterministic, fixed-step, integers only.

No pygame, no clock, no I/O, no floats. Both players run it (rollback: only
inputs travel), so it must give bit-identical results on every machine and
every Python: positions are integers in 1/256 pixel, speeds in 1/256 pixel per
tick, angles are slopes as integer ratios, and the serve generator (SplitMix64)
lives in the state. A state is a handful of ints: saving it is one tuple.

Coordinates: an 800 x 600 field, y grows downwards; the ball and the paddles
are described by their centres. Side 0 (left) is the host, side 1 the client.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, fields
from enum import IntEnum
from operator import attrgetter

TICK_RATE = 60
DT = 1.0 / TICK_RATE
SUB = 256  # sub-pixels per pixel

LEFT = 0
RIGHT = 1

_MASK64 = (1 << 64) - 1


class Phase(IntEnum):
    SERVE = 0  # the ball waits in the centre, paddles may move
    PLAY = 1  # the ball is in play
    OVER = 2  # somebody reached the target score


class Intent(IntEnum):
    """What a player wants its paddle to do during one tick."""

    UP = -1
    STAY = 0
    DOWN = 1


class EventKind(IntEnum):
    """Things worth a sound."""

    WALL = 0  # the ball bounced off the top or bottom wall
    PADDLE = 1  # the ball bounced off a paddle (side = whose)
    SERVE = 2  # the ball was served (side = towards whom)
    POINT = 3  # a point was scored (side = who scored)
    GAME_OVER = 4  # the game ended (side = winner)
    RESTART = 5  # both players asked for a rematch: a new game


@dataclass(frozen=True)
class SimEvent:
    kind: EventKind
    side: int | None = None


# One input byte a frame: bits 0-1 the paddle (0 stay, 1 up, 2 down; 3, which no
# honest player sends, stays too), bit 2 "I want a rematch".
_INTENT_BITS = {Intent.STAY: 0, Intent.UP: 1, Intent.DOWN: 2}
_BIT_INTENTS = (Intent.STAY, Intent.UP, Intent.DOWN, Intent.STAY)
REMATCH_BIT = 4


def encode_input(intent: Intent, rematch: bool = False) -> int:
    return _INTENT_BITS[intent] | (REMATCH_BIT if rematch else 0)


def decode_intent(byte: int) -> Intent:
    return _BIT_INTENTS[byte & 3]


@dataclass(frozen=True)
class Rules:
    """Geometry in pixels and tuning; both players use the same values."""

    width: int = 800
    height: int = 600
    paddle_width: int = 12
    paddle_height: int = 90
    paddle_margin: int = 24  # from the field edge to the paddle's outer side
    paddle_speed: int = 480  # px/s (8 px a tick)
    ball_size: int = 12
    serve_speed: int = 540  # px/s, horizontally
    speed_up_percent: int = 107  # horizontal speed after a paddle hit
    max_speed: int = 1080  # px/s, horizontally; 18 px a tick (collisions are swept)
    max_serve_slope_percent: int = 70  # about 35 degrees
    max_bounce_slope_percent: int = 140  # about 55 degrees at the paddle's tip
    serve_delay_ticks: int = 45
    points_to_win: int = 11

    def paddle_face_x(self, side: int) -> int:
        """The x of the paddle face that meets the ball."""
        if side == LEFT:
            return self.paddle_margin + self.paddle_width
        return self.width - self.paddle_margin - self.paddle_width

    def paddle_centre_x(self, side: int) -> float:
        if side == LEFT:
            return self.paddle_margin + self.paddle_width / 2
        return self.width - self.paddle_margin - self.paddle_width / 2


@dataclass(slots=True)
class State:
    """Everything the simulation knows, as ints (sub-pixels for lengths)."""

    tick: int
    game: int  # counts rematches
    rng: int  # SplitMix64 state
    phase: int
    phase_ticks: int  # ticks left before the serve
    serve_to: int
    ball_x: int
    ball_y: int
    ball_vx: int
    ball_vy: int
    left_y: int
    right_y: int
    left_score: int
    right_score: int
    rally: int  # paddle hits in the current rally
    left_hits: int
    right_hits: int
    left_misses: int
    right_misses: int
    left_rematch: int
    right_rematch: int

    @property
    def score(self) -> tuple[int, int]:
        return (self.left_score, self.right_score)

    @property
    def paddles(self) -> tuple[int, int]:
        return (self.left_y, self.right_y)


FIELDS = tuple(f.name for f in fields(State))
_snapshot = attrgetter(*FIELDS)
_PACK = struct.Struct("<" + "".join("Q" if n == "rng" else "q" for n in FIELDS))

Snapshot = tuple[int, ...]


def snapshot(state: State) -> Snapshot:
    """The state as an immutable tuple (what rollback saves)."""
    return _snapshot(state)


def checksum(snap: Snapshot) -> int:
    """A 32-bit digest of a snapshot, equal on every machine for equal states."""
    return zlib.crc32(_PACK.pack(*snap))


def splitmix64(state: int) -> tuple[int, int]:
    """One step of SplitMix64 (Steele, Lea, Flood 2014): (new state, output)."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def fold_y(y: float, rules: Rules) -> tuple[float, bool]:
    """A ball centre y (pixels) moved without walls, reflected back between them; and
    whether an odd number of bounces flipped the vertical direction. For the bot."""
    half = rules.ball_size / 2
    span = rules.height - rules.ball_size
    bounces, rest = divmod(y - half, span)
    flipped = int(bounces) % 2 == 1
    return (half + (span - rest if flipped else rest)), flipped


class Simulation:
    """A game of Pong, advanced one fixed tick at a time."""

    def __init__(self, seed: int, rules: Rules | None = None) -> None:
        self.rules = r = rules if rules is not None else Rules()
        self._half_ball = r.ball_size * SUB // 2
        self._half_paddle = r.paddle_height * SUB // 2
        self._paddle_step = r.paddle_speed * SUB // TICK_RATE
        self._serve_vx = r.serve_speed * SUB // TICK_RATE
        self._max_vx = r.max_speed * SUB // TICK_RATE
        self._faces = (r.paddle_face_x(LEFT) * SUB, r.paddle_face_x(RIGHT) * SUB)
        self.state = self._fresh(seed & _MASK64, game=0, tick=0)

    def _fresh(self, rng: int, game: int, tick: int) -> State:
        r = self.rules
        cx, cy = r.width * SUB // 2, r.height * SUB // 2
        state = State(tick, game, rng, Phase.SERVE, r.serve_delay_ticks, LEFT,
                      cx, cy, 0, 0, cy, cy, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        state.serve_to = self._random(state, 2)
        return state

    @staticmethod
    def _random(state: State, n: int) -> int:
        """An int in [0, n) from the state's own generator."""
        state.rng, out = splitmix64(state.rng)
        return out % n

    def load(self, snap: Snapshot) -> None:
        self.state = State(*snap)

    def save(self) -> Snapshot:
        return snapshot(self.state)

    @property
    def winner(self) -> int | None:
        s = self.state
        if s.phase != Phase.OVER:
            return None
        return LEFT if s.left_score > s.right_score else RIGHT

    def step(self, left: int = 0, right: int = 0) -> list[SimEvent]:
        """Advance one tick with these input bytes (see ``encode_input``)."""
        s = self.state
        s.tick += 1
        s.left_y = self._move_paddle(s.left_y, left)
        s.right_y = self._move_paddle(s.right_y, right)
        if s.phase == Phase.SERVE:
            s.phase_ticks -= 1
            if s.phase_ticks <= 0:
                return [self._serve()]
            return []
        if s.phase == Phase.PLAY:
            return self._move_ball()
        return self._rematch(left, right)

    def _move_paddle(self, y: int, byte: int) -> int:
        y += decode_intent(byte) * self._paddle_step
        low, high = self._half_paddle, self.rules.height * SUB - self._half_paddle
        return low if y < low else high if y > high else y

    def _rematch(self, left: int, right: int) -> list[SimEvent]:
        s = self.state
        s.left_rematch |= left & REMATCH_BIT
        s.right_rematch |= right & REMATCH_BIT
        if not (s.left_rematch and s.right_rematch):
            return []
        self.state = self._fresh(s.rng, game=s.game + 1, tick=s.tick)
        return [SimEvent(EventKind.RESTART)]

    def _serve(self) -> SimEvent:
        s, r = self.state, self.rules
        slope = self._random(s, 2 * r.max_serve_slope_percent + 1) - r.max_serve_slope_percent
        s.ball_vx = -self._serve_vx if s.serve_to == LEFT else self._serve_vx
        s.ball_vy = self._serve_vx * slope // 100
        s.phase = Phase.PLAY
        s.rally = 0
        return SimEvent(EventKind.SERVE, s.serve_to)

    def _move_ball(self) -> list[SimEvent]:
        s = self.state
        events: list[SimEvent] = []
        prev_x, prev_y = s.ball_x, s.ball_y
        s.ball_x += s.ball_vx
        s.ball_y += s.ball_vy
        self._bounce_walls(events)
        side = LEFT if s.ball_vx < 0 else RIGHT
        if self._paddle_hit(side, prev_x, prev_y):
            events.append(SimEvent(EventKind.PADDLE, side))
            self._bounce_walls(events)
        half = self._half_ball
        if s.ball_x + half < 0:
            self._point(RIGHT, events)
        elif s.ball_x - half > self.rules.width * SUB:
            self._point(LEFT, events)
        return events

    def _bounce_walls(self, events: list[SimEvent]) -> None:
        s = self.state
        top, bottom = self._half_ball, self.rules.height * SUB - self._half_ball
        if s.ball_y < top:
            s.ball_y = 2 * top - s.ball_y
            s.ball_vy = abs(s.ball_vy)
            events.append(SimEvent(EventKind.WALL))
        elif s.ball_y > bottom:
            s.ball_y = 2 * bottom - s.ball_y
            s.ball_vy = -abs(s.ball_vy)
            events.append(SimEvent(EventKind.WALL))

    def _paddle_hit(self, side: int, prev_x: int, prev_y: int) -> bool:
        """Bounce the ball if, during this tick, it crossed ``side``'s paddle face."""
        s, r = self.state, self.rules
        half = self._half_ball
        face = self._faces[side]
        sign = -1 if side == LEFT else 1  # the direction of travel towards this paddle
        before = (prev_x + sign * half - face) * sign  # <= 0: not yet through the face
        after = (s.ball_x + sign * half - face) * sign
        if not before <= 0 < after:
            return False
        travel = after - before
        y_cross = prev_y + (s.ball_y - prev_y) * -before // travel
        reach = self._half_paddle + half
        offset = y_cross - (s.left_y if side == LEFT else s.right_y)
        if abs(offset) > reach:
            return False
        speed = min(abs(s.ball_vx) * r.speed_up_percent // 100, self._max_vx)
        s.ball_vx = -sign * speed
        s.ball_vy = speed * offset * r.max_bounce_slope_percent // (100 * reach)
        # The rest of the tick is spent moving away from the face.
        s.ball_x = face - sign * half + s.ball_vx * after // travel
        s.ball_y = y_cross + s.ball_vy * after // travel
        s.rally += 1
        if side == LEFT:
            s.left_hits += 1
        else:
            s.right_hits += 1
        return True

    def _point(self, scorer: int, events: list[SimEvent]) -> None:
        s, r = self.state, self.rules
        if scorer == LEFT:
            s.left_score += 1
            s.right_misses += 1
        else:
            s.right_score += 1
            s.left_misses += 1
        s.ball_x, s.ball_y = r.width * SUB // 2, r.height * SUB // 2
        s.ball_vx = s.ball_vy = 0
        events.append(SimEvent(EventKind.POINT, scorer))
        if max(s.left_score, s.right_score) >= r.points_to_win:
            s.phase = Phase.OVER
            s.left_rematch = s.right_rematch = 0
            events.append(SimEvent(EventKind.GAME_OVER, scorer))
        else:
            s.phase = Phase.SERVE
            s.phase_ticks = r.serve_delay_ticks
            s.serve_to = 1 - scorer  # towards the player who lost the point

"""What the two players say to each other: compact, validated message formats.

Two unreliable-sequenced streams carry `bytes` (struct-packed, so a snapshot
is 26 bytes and an input 9 bytes before the engine's framing):

* the host's snapshots (30 Hz): tick, ball, both paddles, the last client
  input applied, score, phase, target score;
* the client's inputs (every frame): the newest input sequence number and the
  last few intents, so one lost datagram loses nothing.

Game events (point, game over, rematch, bye) go reliable-ordered as
short lists `[kind, *ints]`.

Decoders raise `MessageError` on anything malformed: the remote sent it, so
the caller logs and drops it rather than crashing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum

from games.pong.sim import Phase, State

SNAPSHOT_EVERY_TICKS = 2  # 30 Hz at 60 ticks per second
INPUT_HISTORY = 12  # intents repeated in every input message (200 ms of redundancy)
POSITION_SCALE = 16.0  # positions travel in 1/16 px
VELOCITY_SCALE = 8.0  # velocities in 1/8 px/s

_SNAPSHOT_TAG = 0x53  # "S"
_INPUT_TAG = 0x49  # "I"
# tag, tick, game, phase, points to win, score x2, ball x y vx vy, paddles x2, input ack
_SNAPSHOT = struct.Struct("<BIBBBBBhhhhhhI")
# tag, newest input seq, count; then the intents, 2 bits each, newest last
_INPUT_HEAD = struct.Struct("<BIB")

_I16_MIN, _I16_MAX = -32768, 32767


class MessageError(ValueError):
    """A message from the other player could not be understood (their fault)."""


def _q(value: float, scale: float) -> int:
    return max(_I16_MIN, min(_I16_MAX, round(value * scale)))


@dataclass(frozen=True)
class Snapshot:
    """The host's world at one tick, as the client needs it."""

    tick: int
    game: int
    phase: Phase
    points_to_win: int
    score: tuple[int, int]
    ball_x: float
    ball_y: float
    ball_vx: float
    ball_vy: float
    left_y: float
    right_y: float
    input_ack: int  # the last client input sequence number applied to right_y

    @classmethod
    def from_state(cls, state: State, points_to_win: int, input_ack: int) -> Snapshot:
        b = state.ball
        return cls(
            tick=state.tick,
            game=state.game,
            phase=state.phase,
            points_to_win=points_to_win,
            score=(state.score[0], state.score[1]),
            ball_x=b.x,
            ball_y=b.y,
            ball_vx=b.vx,
            ball_vy=b.vy,
            left_y=state.paddles[0],
            right_y=state.paddles[1],
            input_ack=input_ack,
        )


def encode_snapshot(snap: Snapshot) -> bytes:
    return _SNAPSHOT.pack(
        _SNAPSHOT_TAG,
        snap.tick & 0xFFFFFFFF,
        snap.game & 0xFF,
        int(snap.phase),
        snap.points_to_win & 0xFF,
        min(snap.score[0], 255),
        min(snap.score[1], 255),
        _q(snap.ball_x, POSITION_SCALE),
        _q(snap.ball_y, POSITION_SCALE),
        _q(snap.ball_vx, VELOCITY_SCALE),
        _q(snap.ball_vy, VELOCITY_SCALE),
        _q(snap.left_y, POSITION_SCALE),
        _q(snap.right_y, POSITION_SCALE),
        snap.input_ack & 0xFFFFFFFF,
    )


def decode_snapshot(data: object) -> Snapshot:
    if not isinstance(data, bytes | bytearray) or len(data) != _SNAPSHOT.size:
        raise MessageError(f"snapshot: not a {_SNAPSHOT.size}-byte string")
    tag, tick, game, phase, points, s0, s1, bx, by, bvx, bvy, ly, ry, ack = _SNAPSHOT.unpack(data)
    if tag != _SNAPSHOT_TAG:
        raise MessageError(f"snapshot: wrong tag {tag:#x}")
    try:
        phase_value = Phase(phase)
    except ValueError:
        raise MessageError(f"snapshot: unknown phase {phase}") from None
    return Snapshot(
        tick=tick,
        game=game,
        phase=phase_value,
        points_to_win=points,
        score=(s0, s1),
        ball_x=bx / POSITION_SCALE,
        ball_y=by / POSITION_SCALE,
        ball_vx=bvx / VELOCITY_SCALE,
        ball_vy=bvy / VELOCITY_SCALE,
        left_y=ly / POSITION_SCALE,
        right_y=ry / POSITION_SCALE,
        input_ack=ack,
    )


@dataclass(frozen=True)
class InputMessage:
    """The client's last few intents; `intents[-1]` has number `seq`."""

    seq: int
    intents: tuple[int, ...]

    def numbered(self) -> list[tuple[int, int]]:
        """(seq, intent) pairs, oldest first."""
        first = self.seq - len(self.intents) + 1
        return [(first + i, intent) for i, intent in enumerate(self.intents)]


def encode_input(msg: InputMessage) -> bytes:
    if not 0 < len(msg.intents) <= 255:
        raise ValueError("an input message carries 1 to 255 intents")
    bits = 0
    for i, intent in enumerate(msg.intents):
        bits |= (intent + 1) << (2 * i)  # -1, 0, 1 -> 0, 1, 2
    packed = bits.to_bytes((2 * len(msg.intents) + 7) // 8, "little")
    return _INPUT_HEAD.pack(_INPUT_TAG, msg.seq & 0xFFFFFFFF, len(msg.intents)) + packed


def decode_input(data: object) -> InputMessage:
    if not isinstance(data, bytes | bytearray) or len(data) < _INPUT_HEAD.size:
        raise MessageError(f"input: not a byte string of at least {_INPUT_HEAD.size} bytes")
    tag, seq, count = _INPUT_HEAD.unpack_from(data)
    if tag != _INPUT_TAG:
        raise MessageError(f"input: wrong tag {tag:#x}")
    body = bytes(data[_INPUT_HEAD.size :])
    if count == 0 or len(body) != (2 * count + 7) // 8:
        raise MessageError(f"input: {count} intents do not fit {len(body)} bytes")
    if seq < count:
        raise MessageError(f"input: sequence {seq} is shorter than its history")
    bits = int.from_bytes(body, "little")
    intents = []
    for i in range(count):
        code = (bits >> (2 * i)) & 3
        if code == 3:
            raise MessageError("input: bad intent code")
        intents.append(code - 1)
    return InputMessage(seq=seq, intents=tuple(intents))


class Kind(StrEnum):
    """Reliable game events."""

    POINT = "point"  # host -> client: [scorer, score_left, score_right]
    OVER = "over"  # host -> client: [winner, score_left, score_right]
    OVER_SEEN = "seen"  # client -> host: the client knows the game is over
    REMATCH = "rematch"  # either way: this player wants another game
    RESTART = "restart"  # host -> client: [game], the rematch starts
    BYE = "bye"  # either way: this player leaves


_ARITY = {
    Kind.POINT: 3,
    Kind.OVER: 3,
    Kind.OVER_SEEN: 0,
    Kind.REMATCH: 0,
    Kind.RESTART: 1,
    Kind.BYE: 0,
}


@dataclass(frozen=True)
class GameEvent:
    kind: Kind
    args: tuple[int, ...] = ()


def encode_event(event: GameEvent) -> list[object]:
    if len(event.args) != _ARITY[event.kind]:
        raise ValueError(f"{event.kind.value} takes {_ARITY[event.kind]} arguments")
    return [event.kind.value, *event.args]


def decode_event(data: object) -> GameEvent:
    if not isinstance(data, list | tuple) or not data or not isinstance(data[0], str):
        raise MessageError("event: not a list starting with a kind")
    try:
        kind = Kind(data[0])
    except ValueError:
        raise MessageError(f"event: unknown kind {data[0]!r}") from None
    args = [a for a in data[1:] if isinstance(a, int) and not isinstance(a, bool)]
    if len(args) != len(data) - 1 or len(args) != _ARITY[kind]:
        raise MessageError(f"event {kind.value}: wants {_ARITY[kind]} integers")
    return GameEvent(kind, tuple(args))

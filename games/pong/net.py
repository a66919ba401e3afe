"""What the two players say to each other besides inputs: a few reliable events.

Inputs travel in the rollback session's own messages (``framework.rollback``).
The rest goes reliable-ordered on channel 0 as short lists ``[kind, *ints]``:
the host's START (seed and target score, so both simulations are the same),
"I saw game N end" (so nobody leaves before the other confirmed the result),
and BYE.

Decoders raise ``MessageError`` on anything malformed: the remote sent it, so
the caller logs and drops it rather than crashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MAX_POINTS = 99
_MAX_SEED = (1 << 64) - 1


class MessageError(ValueError):
    """A message from the other player could not be understood (their fault)."""


class Kind(StrEnum):
    START = "start"  # host -> client: seed, points to win
    OVER_SEEN = "over_seen"  # game number whose end this side confirmed
    BYE = "bye"  # leaving the match


# Each kind's arguments: (low, high) per int.
_ARGS: dict[Kind, tuple[tuple[int, int], ...]] = {
    Kind.START: ((0, _MAX_SEED), (1, MAX_POINTS)),
    Kind.OVER_SEEN: ((0, 1 << 31),),
    Kind.BYE: (),
}


@dataclass(frozen=True)
class GameEvent:
    kind: Kind
    args: tuple[int, ...] = ()


def encode_event(event: GameEvent) -> list[object]:
    limits = _ARGS[event.kind]
    if len(event.args) != len(limits) or not all(
        lo <= a <= hi for a, (lo, hi) in zip(event.args, limits, strict=True)
    ):
        raise ValueError(f"bad arguments for {event.kind}: {event.args}")  # our own bug
    return [event.kind.value, *event.args]


def decode_event(message: object) -> GameEvent:
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise MessageError(f"not an event: {message!r:.60}")
    try:
        kind = Kind(message[0])
    except ValueError:
        raise MessageError(f"unknown event {message[0]!r:.20}") from None
    args = message[1:]
    limits = _ARGS[kind]
    if len(args) != len(limits):
        raise MessageError(f"{kind} takes {len(limits)} arguments, not {len(args)}")
    for a, (lo, hi) in zip(args, limits, strict=True):
        if type(a) is not int or not lo <= a <= hi:
            raise MessageError(f"{kind} argument {a!r:.20} out of range")
    return GameEvent(kind, tuple(args))

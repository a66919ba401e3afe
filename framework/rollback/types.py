"""What a rollback session hands the game: requests to run, in order, and events.

Modelled on GGRS's request list: the game never decides when to save, load or
re-simulate; it runs the requests ``advance_frame()`` returns, in order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from framework.protocol.delivery import Delivery

#: Frames a session may run ahead of the last frame whose inputs are all confirmed.
DEFAULT_PREDICTION_WINDOW = 8
#: Engine channel of the rollback traffic; its own, so nothing else shares its stream.
DEFAULT_CHANNEL = 3
#: Seconds without a datagram from a player before they count as disconnected.
DEFAULT_DISCONNECT_TIMEOUT = 5.0


class RollbackError(Exception):
    """Local misuse of a session (the game's bug). Remote misbehaviour never raises."""


class InputStatus(enum.Enum):
    """How much the game may trust one player's input for one frame."""

    CONFIRMED = "confirmed"  # the player really sent it
    PREDICTED = "predicted"  # a guess (their last confirmed input); may be rolled back
    DISCONNECTED = "disconnected"  # the player is gone: a blank input, for good


@dataclass(frozen=True, slots=True)
class PlayerInput:
    """One player's input for one frame: ``input_size`` opaque bytes and its status."""

    value: bytes
    status: InputStatus


class Cell:
    """Where the game keeps the state of one frame (a GGRS ``GameStateCell``)."""

    __slots__ = ("checksum", "frame", "state")

    def __init__(self) -> None:
        self.frame = -1
        self.state: Any = None
        self.checksum: int | None = None

    def save(self, frame: int, state: Any, checksum: int | None) -> None:
        """Store the game's state at the start of ``frame`` (the request says which)."""
        self.frame = frame
        self.state = state
        self.checksum = checksum

    def load(self) -> Any:
        """The state saved here; the game must not mutate it (save a copy or a tuple)."""
        return self.state


@dataclass(frozen=True, slots=True)
class SaveState:
    """Save the current state, the state at the start of ``frame``, into ``cell``."""

    frame: int
    cell: Cell


@dataclass(frozen=True, slots=True)
class LoadState:
    """Replace the current state with the one in ``cell`` (the start of ``frame``)."""

    frame: int
    cell: Cell


@dataclass(frozen=True, slots=True)
class AdvanceFrame:
    """Run one fixed step of frame ``frame`` with one input per player, in player order."""

    frame: int
    inputs: tuple[PlayerInput, ...]

    @property
    def confirmed(self) -> bool:
        """True when no input is a prediction: the state this step makes is final."""
        return all(i.status is not InputStatus.PREDICTED for i in self.inputs)


Request = SaveState | LoadState | AdvanceFrame


@dataclass(frozen=True, slots=True)
class WaitRecommendation:
    """This peer runs ``frames`` ahead of the others: skip that many frames, spread out."""

    frames: int


@dataclass(frozen=True, slots=True)
class Desync:
    """The checksums of confirmed ``frame`` differ here and at ``player``."""

    frame: int
    player: str
    local_checksum: int
    remote_checksum: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """``player`` was silent longer than the timeout (or was disconnected by the game)."""

    player: str
    frame: int  # the first frame played with their blank input


@dataclass(frozen=True, slots=True)
class SyncMismatch:
    """Sync test: re-simulating ``frame`` gave a different checksum; the game is
    not deterministic (or its save/load misses part of the state)."""

    frame: int
    first_checksum: int
    resimulated_checksum: int


RollbackEvent = WaitRecommendation | Desync | Disconnected | SyncMismatch


@dataclass
class RollbackStats:
    """Counters of one session, for overlays and result lines."""

    frame: int = 0  # the frame the next advance runs
    confirmed_frame: int = -1  # every input up to here is known
    rollbacks: int = 0  # advances that re-simulated
    frames_rolled_back: int = 0  # re-simulated steps, in all
    max_rollback_frames: int = 0  # the longest re-simulation
    prediction_misses: int = 0  # predicted inputs that turned out wrong
    stalls: int = 0  # advances refused: the prediction window was full
    desyncs: int = 0
    dropped_messages: int = 0  # malformed or out-of-bounds datagrams from the network
    messages_sent: int = 0
    rtt: dict[str, float] = field(default_factory=dict)  # seconds, by player
    frame_advantage: int = 0  # how many frames we run ahead of the others (average)


class Transport(Protocol):
    """What a session needs from the engine; ``framework.Peer`` satisfies it."""

    def send(
        self, peer_name: str, message: Any, delivery: Delivery = ..., channel: int = ...
    ) -> int | None: ...

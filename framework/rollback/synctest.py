"""The sync test: no network; every frame is rolled back and re-simulated.

Each frame the game's state is saved with its checksum, then the last
``check_distance`` frames are loaded and run again with the same inputs. A
re-simulated frame whose checksum differs from the first run's means the game
is not deterministic, or its save/load misses part of the state (GGRS's
SyncTestSession).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from framework.rollback.types import (
    AdvanceFrame,
    Cell,
    InputStatus,
    LoadState,
    PlayerInput,
    Request,
    RollbackError,
    RollbackEvent,
    RollbackStats,
    SaveState,
    SyncMismatch,
)

log = logging.getLogger(__name__)


class SyncTestSession:
    def __init__(self, players: int, *, input_size: int = 1, check_distance: int = 2) -> None:
        if players < 1 or input_size < 1 or check_distance < 2:
            # A frame is compared when it is saved a second time: distance 1 never re-saves.
            raise RollbackError("players and input_size must be >= 1, check_distance >= 2")
        self.players = players
        self.input_size = input_size
        self.check_distance = check_distance
        self.frame = 0
        self.mismatches = 0
        self.stats = RollbackStats()
        self._cells = [Cell() for _ in range(check_distance + 2)]
        self._pending: list[bytes | None] = [None] * players
        self._inputs: OrderedDict[int, tuple[PlayerInput, ...]] = OrderedDict()
        self._first_checksums: OrderedDict[int, int | None] = OrderedDict()
        self._events: list[RollbackEvent] = []

    def add_local_input(self, player: int, value: bytes) -> None:
        if len(value) != self.input_size:
            raise RollbackError(f"an input is {self.input_size} bytes, not {len(value)}")
        self._pending[player] = bytes(value)

    def _cell(self, frame: int) -> Cell:
        return self._cells[frame % len(self._cells)]

    def advance_frame(self) -> list[Request]:
        """Check the frames saved so far, then: load, re-simulate, save, advance."""
        if any(v is None for v in self._pending):
            raise RollbackError("every player needs an input before advance_frame()")
        self._check_saved()
        inputs = tuple(PlayerInput(v or b"", InputStatus.CONFIRMED) for v in self._pending)
        self._pending = [None] * self.players
        self._inputs[self.frame] = inputs
        requests: list[Request] = []
        first = self.frame - self.check_distance
        if first >= 0:
            requests.append(LoadState(first, self._cell(first)))
            for frame in range(first, self.frame):
                if frame > first:
                    requests.append(SaveState(frame, self._cell(frame)))
                requests.append(AdvanceFrame(frame, self._inputs[frame]))
            self.stats.rollbacks += 1
            self.stats.frames_rolled_back += self.check_distance
            self.stats.max_rollback_frames = self.check_distance
        requests.append(SaveState(self.frame, self._cell(self.frame)))
        requests.append(AdvanceFrame(self.frame, inputs))
        self.frame += 1
        while len(self._inputs) > self.check_distance + 1:
            self._inputs.popitem(last=False)
        self.stats.frame = self.frame
        return requests

    def _check_saved(self) -> None:
        """Compare what the game saved during the last batch with the first run."""
        for frame in range(max(0, self.frame - self.check_distance), self.frame):
            cell = self._cell(frame)
            if cell.frame != frame:
                raise RollbackError(f"the game did not save frame {frame} when asked")
            if frame not in self._first_checksums:
                self._first_checksums[frame] = cell.checksum
            elif cell.checksum != self._first_checksums[frame]:
                first = self._first_checksums[frame]
                self.mismatches += 1
                self._events.append(SyncMismatch(frame, first or 0, cell.checksum or 0))
                log.warning("sync test: frame %d re-simulated differently", frame)
        while len(self._first_checksums) > self.check_distance + 1:
            self._first_checksums.popitem(last=False)

    def events(self) -> list[RollbackEvent]:
        out, self._events = self._events, []
        return out

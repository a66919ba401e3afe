"""The sync test session catches games that do not re-simulate the same way."""

from __future__ import annotations

import itertools

import pytest

from framework.rollback import (
    AdvanceFrame,
    LoadState,
    RollbackError,
    SaveState,
    SyncMismatch,
    SyncTestSession,
)
from tests.rollback_harness import ToyGame


def run(game: ToyGame, frames: int, distance: int = 3) -> SyncTestSession:
    session = SyncTestSession(2, check_distance=distance)
    for f in range(frames):
        session.add_local_input(0, bytes([f % 3]))
        session.add_local_input(1, bytes([(f // 5) % 3]))
        game.run(session.advance_frame())
    return session


def test_a_deterministic_game_passes() -> None:
    game = ToyGame()
    session = run(game, 500)
    assert session.mismatches == 0
    assert session.events() == []
    assert session.stats.rollbacks == 497
    assert game.state[0] == 500


def test_each_frame_is_rolled_back_and_resimulated() -> None:
    session = SyncTestSession(1, check_distance=2)
    game = ToyGame()
    kinds = []
    for _ in range(3):
        session.add_local_input(0, b"\x01")
        requests = session.advance_frame()
        kinds.append([(type(r).__name__, r.frame) for r in requests])
        game.run(requests)
    assert kinds[2] == [
        (LoadState.__name__, 0),
        (AdvanceFrame.__name__, 0),
        (SaveState.__name__, 1),
        (AdvanceFrame.__name__, 1),
        (SaveState.__name__, 2),
        (AdvanceFrame.__name__, 2),
    ]


class LeakyGame(ToyGame):
    """Keeps part of its state outside what it saves: re-simulation diverges."""

    def __init__(self) -> None:
        super().__init__()
        self.outside = itertools.count()

    def advance(self, r: AdvanceFrame) -> None:
        super().advance(r)
        frames, value = self.state
        if frames > 40:
            self.state = (frames, value ^ (next(self.outside) & 1))


def test_a_game_with_state_outside_its_save_is_caught() -> None:
    session = run(LeakyGame(), 100)
    assert session.mismatches > 0
    events = session.events()
    assert events and all(isinstance(e, SyncMismatch) for e in events)
    assert min(e.frame for e in events if isinstance(e, SyncMismatch)) >= 40


def test_misuse_raises() -> None:
    with pytest.raises(RollbackError):
        SyncTestSession(2, check_distance=1)
    session = SyncTestSession(2)
    session.add_local_input(0, b"\x00")
    with pytest.raises(RollbackError):
        session.advance_frame()  # player 1 has no input

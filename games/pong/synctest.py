"""Pong under ``framework.rollback.SyncTestSession``: every frame rolled back and replayed.

Used by the tests and the benchmark; a mismatch means the simulation is not
deterministic or its snapshot misses part of the state.
"""

from __future__ import annotations

from dataclasses import dataclass

from framework.rollback import AdvanceFrame, LoadState, SaveState, SyncTestSession
from games.pong.bot import BallSeen, Bot
from games.pong.sim import (
    LEFT,
    RIGHT,
    SUB,
    TICK_RATE,
    EventKind,
    Phase,
    Rules,
    Simulation,
    checksum,
    encode_input,
)


@dataclass
class SyncTestResult:
    session: SyncTestSession
    sim: Simulation
    hits: int = 0  # paddle hits, each counted on its frame's first run
    points: int = 0


def run_sync_test(frames: int, *, seed: int = 1, check_distance: int = 2,
                  points_to_win: int = 5) -> SyncTestResult:
    """Two bots play; both always ask for a rematch, so games follow one another."""
    rules = Rules(points_to_win=points_to_win)
    sim = Simulation(seed, rules)
    bots = (Bot(LEFT, rules, seed + 1), Bot(RIGHT, rules, seed + 2))
    result = SyncTestResult(SyncTestSession(2, check_distance=check_distance), sim)
    session = result.session
    for _ in range(frames):
        s = sim.state
        ball = None
        if s.phase == Phase.PLAY:
            k = TICK_RATE / SUB
            ball = BallSeen(s.ball_x / SUB, s.ball_y / SUB, s.ball_vx * k, s.ball_vy * k)
        for side, bot in enumerate(bots):
            intent = bot.decide(ball, s.paddles[side] / SUB)
            session.add_local_input(side, bytes([encode_input(intent, rematch=True)]))
        requests = session.advance_frame()
        for r in requests:
            if isinstance(r, SaveState):
                snap = sim.save()
                r.cell.save(r.frame, snap, checksum(snap))
            elif isinstance(r, LoadState):
                sim.load(r.cell.load())
            elif isinstance(r, AdvanceFrame):
                events = sim.step(r.inputs[0].value[0], r.inputs[1].value[0])
                if r is requests[-1]:
                    result.hits += sum(e.kind == EventKind.PADDLE for e in events)
                    result.points += sum(e.kind == EventKind.POINT for e in events)
    return result

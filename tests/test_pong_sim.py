"""The Pong simulation: bounces, scoring, serves, determinism, game over."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from games.pong.bot import BallSeen, Bot, predict_crossing_y
from games.pong.sim import (
    DT,
    LEFT,
    RIGHT,
    Ball,
    EventKind,
    Intent,
    Phase,
    Rules,
    SimEvent,
    Simulation,
    fold_y,
    move_paddle,
)

RULES = Rules()


def in_play(sim: Simulation, ball: Ball) -> None:
    """Put the simulation in play with this ball."""
    sim.state.phase = Phase.PLAY
    sim.state.ball = ball


def kinds(events: list[SimEvent]) -> list[EventKind]:
    return [e.kind for e in events]


def test_a_new_game_waits_in_the_centre_then_serves() -> None:
    sim = Simulation(seed=5)
    s = sim.state
    assert s.phase == Phase.SERVE
    assert (s.ball.x, s.ball.y) == (RULES.width / 2, RULES.height / 2)
    for _ in range(RULES.serve_delay_ticks - 1):
        assert sim.step() == []
    events = sim.step()
    assert kinds(events) == [EventKind.SERVE]
    assert events[0].side == s.serve_to
    assert s.phase == Phase.PLAY
    assert math.hypot(s.ball.vx, s.ball.vy) == pytest.approx(RULES.serve_speed)
    towards_left = s.ball.vx < 0
    assert towards_left == (s.serve_to == LEFT)
    assert abs(math.atan2(s.ball.vy, abs(s.ball.vx))) <= RULES.max_serve_angle + 1e-9


def test_the_ball_bounces_off_the_top_and_bottom_walls() -> None:
    sim = Simulation(seed=1)
    in_play(sim, Ball(400.0, 8.0, 0.0, -300.0))
    assert kinds(sim.step()) == [EventKind.WALL]
    assert sim.state.ball.vy == 300.0
    assert sim.state.ball.y >= RULES.ball_size / 2
    in_play(sim, Ball(400.0, RULES.height - 8.0, 100.0, 300.0))
    assert kinds(sim.step()) == [EventKind.WALL]
    assert sim.state.ball.vy == -300.0
    assert sim.state.ball.y <= RULES.height - RULES.ball_size / 2


def test_the_ball_bounces_off_a_paddle_faster_and_angled_by_where_it_hit() -> None:
    sim = Simulation(seed=1)
    face = RULES.paddle_face_x(LEFT)
    sim.state.paddles[LEFT] = 300.0
    in_play(sim, Ball(face + RULES.ball_size / 2 + 3, 300.0, -500.0, 0.0))
    assert kinds(sim.step()) == [EventKind.PADDLE]
    b = sim.state.ball
    assert b.vx > 0
    assert math.hypot(b.vx, b.vy) == pytest.approx(500.0 * RULES.speed_up)
    assert b.vy == pytest.approx(0.0)  # dead centre: straight back
    assert b.x - RULES.ball_size / 2 >= face

    # Hitting the lower half of the right paddle sends the ball downwards.
    sim = Simulation(seed=1)
    sim.state.paddles[RIGHT] = 300.0
    face = RULES.paddle_face_x(RIGHT)
    in_play(sim, Ball(face - RULES.ball_size / 2 - 3, 330.0, 500.0, 0.0))
    events = sim.step()
    assert events[0].kind == EventKind.PADDLE and events[0].side == RIGHT
    assert sim.state.ball.vx < 0 < sim.state.ball.vy


def test_a_fast_ball_does_not_tunnel_through_a_paddle() -> None:
    sim = Simulation(seed=1)
    face = RULES.paddle_face_x(LEFT)
    sim.state.paddles[LEFT] = 300.0
    # At top speed the ball moves 18 px a tick, more than the paddle's 12 px width.
    in_play(sim, Ball(face + RULES.ball_size / 2 + 1, 300.0, -RULES.max_speed, 0.0))
    assert EventKind.PADDLE in kinds(sim.step())
    assert sim.state.ball.vx > 0


def test_a_missed_ball_scores_for_the_other_side_and_serves_to_the_loser() -> None:
    sim = Simulation(seed=1)
    sim.state.paddles[LEFT] = RULES.paddle_height / 2  # far from the ball
    in_play(sim, Ball(60.0, 500.0, -600.0, 0.0))
    events = []
    for _ in range(20):
        events += sim.step()
    assert next(e for e in events if e.kind == EventKind.POINT).side == RIGHT
    s = sim.state
    assert s.score == [0, 1]
    assert s.phase == Phase.SERVE
    assert s.serve_to == LEFT
    assert (s.ball.x, s.ball.y, s.ball.vx, s.ball.vy) == (400.0, 300.0, 0.0, 0.0)


def test_the_game_ends_when_a_side_reaches_the_target() -> None:
    sim = Simulation(seed=2, rules=Rules(points_to_win=3))
    over = []
    for _ in range(3):
        sim.state.paddles[RIGHT] = RULES.height - RULES.paddle_height / 2
        in_play(sim, Ball(700.0, 100.0, 700.0, 0.0))
        for _ in range(30):
            over += [e for e in sim.step() if e.kind == EventKind.GAME_OVER]
    assert sim.state.score == [3, 0]
    assert sim.state.phase == Phase.OVER
    assert [e.side for e in over] == [LEFT]
    assert sim.winner == LEFT
    before = sim.state.copy()
    assert sim.step() == []
    assert sim.state.score == before.score and sim.state.phase == Phase.OVER


def test_restart_keeps_counting_ticks_and_starts_a_new_game() -> None:
    sim = Simulation(seed=2, rules=Rules(points_to_win=1))
    sim.state.score = [1, 0]
    sim.state.phase = Phase.OVER
    tick = sim.state.tick
    sim.restart()
    assert sim.state.score == [0, 0]
    assert sim.state.phase == Phase.SERVE
    assert sim.state.game == 1
    assert sim.state.tick == tick


def _random_inputs(seed: int, n: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.choice((-1, 0, 1)), rng.choice((-1, 0, 1))) for _ in range(n)]


def test_same_seed_and_inputs_give_identical_states() -> None:
    inputs = _random_inputs(11, 3000)
    a, b = Simulation(seed=42), Simulation(seed=42)
    for left, right in inputs:
        assert a.step(left, right) == b.step(left, right)
    assert a.state == b.state
    assert a.state.tick == 3000


def test_different_seeds_serve_differently() -> None:
    def first_serve(seed: int) -> tuple[float, float]:
        sim = Simulation(seed=seed)
        for _ in range(RULES.serve_delay_ticks):
            sim.step()
        return (sim.state.ball.vx, sim.state.ball.vy)

    assert len({first_serve(seed) for seed in range(8)}) == 8
    assert first_serve(3) == first_serve(3)


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(100, 700),
    y=st.floats(6, 594),
    angle=st.floats(-1.5, 1.5),
    speed=st.floats(100, 1100),
    left=st.floats(45, 555),
    right=st.floats(45, 555),
)
def test_the_ball_never_leaves_the_field_vertically(
    x: float, y: float, angle: float, speed: float, left: float, right: float
) -> None:
    sim = Simulation(seed=0)
    sim.state.paddles = [left, right]
    in_play(sim, Ball(x, y, speed * math.cos(angle), speed * math.sin(angle)))
    half = RULES.ball_size / 2
    for _ in range(120):
        sim.step()
        if sim.state.phase != Phase.PLAY:
            break
        assert half - 1e-9 <= sim.state.ball.y <= RULES.height - half + 1e-9


def test_paddles_move_at_their_speed_and_stay_on_the_field() -> None:
    y = move_paddle(300.0, Intent.DOWN, RULES)
    assert y == pytest.approx(300.0 + RULES.paddle_speed * DT)
    y = 300.0
    for _ in range(200):
        y = move_paddle(y, Intent.UP, RULES)
    assert y == RULES.paddle_height / 2


def test_fold_y_reflects_between_the_walls() -> None:
    top, bottom = RULES.ball_size / 2, RULES.height - RULES.ball_size / 2
    assert fold_y(300.0, RULES) == (300.0, False)
    assert fold_y(top - 10, RULES) == (pytest.approx(top + 10), True)
    assert fold_y(bottom + 10, RULES) == (pytest.approx(bottom - 10), True)
    span = bottom - top
    assert fold_y(300.0 + 2 * span, RULES) == (pytest.approx(300.0), False)


def test_the_bot_predicts_where_the_ball_crosses() -> None:
    ball = BallSeen(400.0, 300.0, -400.0, 400.0)  # 45 degrees down-left
    y = predict_crossing_y(ball, 100.0, RULES)
    assert y is not None
    expected, _ = fold_y(300.0 + 300.0, RULES)
    assert y == pytest.approx(expected)
    assert predict_crossing_y(ball, 700.0, RULES) is None  # moving away


def test_two_bots_finish_a_match_to_eleven() -> None:
    sim = Simulation(seed=9)
    bots = [Bot(LEFT, RULES, seed=1), Bot(RIGHT, RULES, seed=2)]
    hits = 0
    while sim.state.phase != Phase.OVER:
        assert sim.state.tick < 60 * 60 * 5, "a bot match must end within 5 minutes"
        s = sim.state
        ball = BallSeen(s.ball.x, s.ball.y, s.ball.vx, s.ball.vy) if s.phase == Phase.PLAY else None
        left, right = (bot.decide(ball, s.paddles[bot.side]) for bot in bots)
        hits += sum(e.kind == EventKind.PADDLE for e in sim.step(left, right))
    assert max(sim.state.score) == 11
    assert hits > sum(sim.state.score)  # they do return the ball, usually more than once

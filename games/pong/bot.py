"""A computer player: predicts where the ball will cross its paddle, with human-ish flaws.

Flaws, so games end: it re-plans only every few ticks (reaction time), it aims
at a point off by a random error that grows with the ball's speed, and it
drifts back to the centre while the ball moves away.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from games.pong.sim import DT, LEFT, Intent, Rules, fold_y


@dataclass(frozen=True)
class BallSeen:
    """The ball as the bot sees it (on a client: the interpolated ball)."""

    x: float
    y: float
    vx: float
    vy: float


@dataclass(frozen=True)
class Skill:
    reaction_ticks: int = 6  # re-plan every 100 ms
    base_error: float = 0.30  # aim error (std dev) in paddle heights, slow ball
    speed_error: float = 0.40  # extra aim error at the maximum ball speed


def predict_crossing_y(ball: BallSeen, x_target: float, rules: Rules) -> float | None:
    """The ball's centre y when its centre reaches `x_target`, walls folded in.

    None if the ball is not moving towards `x_target`.
    """
    dx = x_target - ball.x
    if ball.vx == 0 or dx * ball.vx <= 0:
        return None
    y, _ = fold_y(ball.y + ball.vy * dx / ball.vx, rules)
    return y


class Bot:
    """Decides one paddle intent per tick."""

    def __init__(self, side: int, rules: Rules, seed: int, skill: Skill | None = None) -> None:
        self.side = side
        self.rules = rules
        self.skill = skill if skill is not None else Skill()
        self._rng = random.Random(seed)
        self._target = rules.height / 2
        self._ticks_to_plan = 0
        self._incoming = False
        self._error = 0.0

    def decide(self, ball: BallSeen | None, paddle_y: float) -> Intent:
        self._ticks_to_plan -= 1
        if self._ticks_to_plan <= 0:
            self._ticks_to_plan = self.skill.reaction_ticks
            self._plan(ball)
        step = self.rules.paddle_speed * DT
        gap = self._target - paddle_y
        if abs(gap) <= step / 2:
            return Intent.STAY
        return Intent.DOWN if gap > 0 else Intent.UP

    def _plan(self, ball: BallSeen | None) -> None:
        r = self.rules
        x_face = r.paddle_face_x(self.side) + (r.ball_size / 2) * (1 if self.side == LEFT else -1)
        crossing = None if ball is None else predict_crossing_y(ball, x_face, r)
        if crossing is None or ball is None:
            self._incoming = False
            self._target = r.height / 2
            return
        if not self._incoming:
            # A new incoming ball: choose how wrong this return will be.
            self._incoming = True
            speed = (ball.vx**2 + ball.vy**2) ** 0.5
            sigma = self.skill.base_error + self.skill.speed_error * min(speed / r.max_speed, 1.0)
            self._error = self._rng.gauss(0.0, sigma * r.paddle_height)
        self._target = crossing + self._error

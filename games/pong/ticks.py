"""Real time turned into whole fixed ticks."""

from __future__ import annotations

from games.pong.sim import DT


class StepClock:
    """Turns the passing of real time into a whole number of fixed ticks."""

    def __init__(self, max_steps: int = 8) -> None:
        self.max_steps = max_steps
        self._last: float | None = None
        self._acc = 0.0

    def advance(self, now: float) -> int:
        """How many ticks to run now. After a long stall the backlog is dropped."""
        if self._last is None:
            self._last = now
            return 0
        self._acc += max(0.0, now - self._last)
        self._last = now
        steps = int(self._acc / DT)
        self._acc -= steps * DT
        if steps > self.max_steps:
            steps, self._acc = self.max_steps, 0.0
        return steps

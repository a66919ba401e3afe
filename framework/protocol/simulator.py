"""A network simulator on the send path: loss, latency, jitter, duplication, reordering.

It runs on the caller's clock and a seeded generator, so a lossy run is reproducible.
The engine uses it when ``Config`` asks for it; tests use the same class as their link.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import Generic, TypeVar

A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class SimSettings:
    """What the simulated network does to each datagram."""

    #: Probability that a datagram is dropped (0..1).
    loss: float = 0.0
    #: Extra one-way delay in seconds.
    latency: float = 0.0
    #: Random delay added on top of ``latency``: uniform in [0, jitter] seconds.
    jitter: float = 0.0
    #: Probability that a datagram is delivered twice (the copy has its own delay).
    duplicate: float = 0.0
    #: Probability that a datagram is held back long enough to arrive after later ones.
    reorder: float = 0.0
    #: Seed of the generator: the same seed and clock give the same run.
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {v}")
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter must not be negative")

    @property
    def active(self) -> bool:
        return bool(self.loss or self.latency or self.jitter or self.duplicate or self.reorder)


class NetworkSimulator(Generic[A]):
    """Holds datagrams until their simulated arrival time."""

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._queue: list[tuple[float, int, bytes, A]] = []
        self._n = 0
        self.dropped = 0
        self.duplicated = 0

    def send(self, data: bytes, address: A, now: float) -> None:
        s = self.settings
        rng = self._rng
        if s.loss and rng.random() < s.loss:
            self.dropped += 1
            return
        self._push(data, address, now + self._delay())
        if s.duplicate and rng.random() < s.duplicate:
            self.duplicated += 1
            self._push(data, address, now + self._delay())

    def _delay(self) -> float:
        s = self.settings
        rng = self._rng
        delay = s.latency
        if s.jitter:
            delay += rng.random() * s.jitter
        if s.reorder and rng.random() < s.reorder:
            delay += 0.01 + rng.random() * (s.latency + s.jitter + 0.05)
        return delay

    def _push(self, data: bytes, address: A, when: float) -> None:
        heapq.heappush(self._queue, (when, self._n, data, address))
        self._n += 1

    def due(self, now: float) -> list[tuple[bytes, A]]:
        """Datagrams whose arrival time has come, in arrival order."""
        out: list[tuple[bytes, A]] = []
        q = self._queue
        while q and q[0][0] <= now:
            _, _, data, address = heapq.heappop(q)
            out.append((data, address))
        return out

    def next_time(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)

"""Frame advantage: how far this peer runs ahead, averaged, turned into waits.

GGPO's rule: if I am ``a`` frames ahead of the remote's estimated frame and it
says it is ``b`` ahead of mine, the fair correction is ``(a - b) / 2`` frames
of waiting on my side. Averaging over a window and asking at most once per
interval keeps one late datagram from causing a wait.
"""

from __future__ import annotations

from collections import deque

#: Samples averaged (one per advance).
WINDOW = 40
#: Frames between two recommendations (GGRS waits 60 as well).
RECOMMEND_INTERVAL = 60
#: Below this many frames of advantage, nothing is recommended.
MIN_WAIT = 1
#: The largest wait recommended at once; the rest follows at the next interval.
MAX_WAIT = 8


class TimeSync:
    def __init__(self) -> None:
        self._local: deque[float] = deque(maxlen=WINDOW)
        self._remote: deque[float] = deque(maxlen=WINDOW)
        self._next_check = RECOMMEND_INTERVAL

    def sample(self, local_lead: float, remote_lead: float) -> None:
        self._local.append(local_lead)
        self._remote.append(remote_lead)

    @property
    def average_lead(self) -> float:
        return sum(self._local) / len(self._local) if self._local else 0.0

    def recommend(self, frame: int) -> int:
        """Frames to wait now (0 most of the time)."""
        if frame < self._next_check or len(self._local) < WINDOW // 2:
            return 0
        self._next_check = frame + RECOMMEND_INTERVAL
        local = sum(self._local) / len(self._local)
        remote = sum(self._remote) / len(self._remote)
        wait = round((local - remote) / 2)
        return min(wait, MAX_WAIT) if wait >= MIN_WAIT else 0

"""Desync detection: checksums of confirmed frames, ours against each peer's."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from framework.rollback.endpoint import Endpoint
from framework.rollback.types import Cell, Desync

log = logging.getLogger(__name__)

#: Confirmed checksums kept for comparison.
MAX_LOCAL_CHECKSUMS = 64


class DesyncDetector:
    """Notes the checksum of every ``interval``-th frame once its saved state is final,
    and compares it with the one the peer sent for the same frame."""

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self._mine: OrderedDict[int, int] = OrderedDict()

    @property
    def newest(self) -> tuple[int, int]:
        """(frame, checksum) of the newest confirmed frame noted; (-1, 0) before one."""
        return next(reversed(self._mine.items()), (-1, 0))

    def record(self, settled: int, oldest: int, cell_of: Callable[[int], Cell]) -> None:
        """Note the checksums of frames ``oldest..settled`` (their cells are final)."""
        for frame in range(max(oldest, 0), settled + 1):
            if frame % self.interval or frame in self._mine:
                continue
            if self._mine and frame < next(reversed(self._mine)):
                continue
            cell = cell_of(frame)
            if cell.frame == frame and cell.checksum is not None:
                self._mine[frame] = cell.checksum & 0xFFFFFFFF
                while len(self._mine) > MAX_LOCAL_CHECKSUMS:
                    self._mine.popitem(last=False)

    def compare(self, ep: Endpoint) -> list[Desync]:
        """The frames where ``ep``'s checksum and ours are both known and differ."""
        found = []
        for frame in [f for f in ep.checksums if f in self._mine]:
            remote = ep.checksums.pop(frame)
            ep.checked_until = max(ep.checked_until, frame)
            local = self._mine[frame]
            if remote != local:
                found.append(Desync(frame, ep.name, local, remote))
                log.warning("desync with %s at frame %d", ep.name, frame)
        return found

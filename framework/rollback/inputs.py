"""One player's inputs by frame: the confirmed ones, and the guesses made for the rest."""

from __future__ import annotations


class InputLog:
    """Confirmed inputs are kept contiguously from ``first`` to ``last``.

    A frame without a confirmed input is predicted as the player's newest
    confirmed input (players hold a direction far more often than they change
    it); every prediction handed out is remembered until its frame is
    confirmed, so a wrong one is noticed and rolled back.
    """

    def __init__(self, blank: bytes) -> None:
        self.blank = blank
        self.first = 0  # the oldest frame still kept
        self.last = -1  # the newest frame confirmed, with every frame before it
        self._confirmed: dict[int, bytes] = {}
        self._newest = blank  # the value of `last` (kept when pruned)
        self._guesses: dict[int, bytes] = {}

    def add(self, frame: int, value: bytes) -> bool:
        """Confirm the input of ``frame`` (must be ``last + 1``); True if it differs
        from a prediction already used for that frame."""
        assert frame == self.last + 1, (frame, self.last)
        self._confirmed[frame] = value
        self.last = frame
        self._newest = value
        guess = self._guesses.pop(frame, None)
        return guess is not None and guess != value

    def has(self, frame: int) -> bool:
        return frame in self._confirmed

    def confirmed(self, frame: int) -> bytes:
        return self._confirmed[frame]

    def predict(self, frame: int) -> bytes:
        """The guess for an unconfirmed ``frame``, remembered for checking."""
        self._guesses[frame] = self._newest
        return self._newest

    def forget_guesses(self) -> None:
        """The player is gone: their guesses will never be checked."""
        self._guesses.clear()

    @property
    def newest(self) -> bytes:
        return self._newest

    def prune(self, below: int) -> None:
        """Drop confirmed inputs of frames before ``below`` (never the newest)."""
        below = min(below, self.last)
        while self.first < below:
            self._confirmed.pop(self.first, None)
            self.first += 1

    def __len__(self) -> int:
        return len(self._confirmed)

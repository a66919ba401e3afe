"""Keeping two screens in step: fixed ticks, interpolation, prediction, input queueing.

No sockets and no clock here: every method takes `now` (seconds, any
monotonic origin), so tests drive time by hand.

* The client shows the ball and the host's paddle `INTERP_DELAY` behind the
  newest snapshot it could have, interpolating between the two snapshots
  around that moment; when snapshots are missing it extrapolates the ball for
  a little while, then holds.
* The client moves its own paddle at once (`PaddlePredictor`) and, when a
  snapshot says which of its inputs the host has applied, restarts from the
  host's paddle and replays the inputs the host has not seen yet. Paddle
  motion depends on nothing else, so the replay is exact.
* The host queues the client's inputs (`InputQueue`) and applies all new ones
  each tick, repeated intents in later messages being dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from games.pong.net import InputMessage, Snapshot
from games.pong.sim import (
    DT,
    LEFT,
    RIGHT,
    EventKind,
    Phase,
    Rules,
    SimEvent,
    fold_y,
    move_paddle,
)

INTERP_DELAY = 0.075  # s; 2.25 snapshot intervals: one lost snapshot does not starve us
MAX_EXTRAPOLATION = 0.25  # s; beyond this the ball stops and waits for news
CLOCK_DRIFT = 0.02  # s/s: how fast the host-clock estimate forgets a lucky fast packet
MAX_SLEW = 0.1  # playback runs at most 10% fast or slow to follow the estimate
MAX_PENDING_INPUTS = 240  # 4 s of unacknowledged input is more than any session survives
MAX_QUEUED_INPUTS = 30  # a burst beyond this is a stall catching up: drop the oldest


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


@dataclass(frozen=True)
class Playback:
    """What the client shows of the host's world at one moment."""

    tick: float
    game: int
    phase: Phase
    score: tuple[int, int]
    ball_x: float
    ball_y: float
    ball_vx: float
    ball_vy: float
    left_y: float
    right_y: float
    extrapolated: bool = False


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _continuous(a: Snapshot, b: Snapshot) -> bool:
    """False across a serve reset or a restart, where the ball teleports."""
    return a.game == b.game and a.score == b.score and a.phase == b.phase


def snapshot_events(prev: Snapshot, cur: Snapshot) -> list[SimEvent]:
    """The sound-worthy things that happened between two consecutive snapshots."""
    if prev.game != cur.game:
        return []
    if cur.score != prev.score:
        scorer = LEFT if cur.score[LEFT] > prev.score[LEFT] else RIGHT
        return [SimEvent(EventKind.POINT, scorer)]
    if prev.phase != Phase.PLAY or cur.phase != Phase.PLAY:
        return []
    events = []
    if (prev.ball_vx < 0) != (cur.ball_vx < 0):
        events.append(SimEvent(EventKind.PADDLE, LEFT if cur.ball_vx > 0 else RIGHT))
    if (prev.ball_vy < 0) != (cur.ball_vy < 0):
        events.append(SimEvent(EventKind.WALL))
    return events


class SnapshotBuffer:
    """The client's jitter buffer: snapshots in, a smooth picture out."""

    def __init__(self, rules: Rules, delay: float = INTERP_DELAY, capacity: int = 32) -> None:
        self.rules = rules
        self.delay = delay
        self.capacity = capacity
        self._snaps: deque[Snapshot] = deque()
        self._offset: float | None = None  # estimate of host_time - local_time
        self._offset_at = 0.0
        self._play_offset = 0.0
        self._sampled_at: float | None = None
        self._played: Snapshot | None = None
        self._events: list[SimEvent] = []

    @property
    def newest(self) -> Snapshot | None:
        return self._snaps[-1] if self._snaps else None

    def push(self, snap: Snapshot, now: float) -> bool:
        """Add a snapshot; False (and ignored) if it is not newer than the newest."""
        newest = self.newest
        if newest is not None and snap.tick <= newest.tick:
            return False
        self._snaps.append(snap)
        while len(self._snaps) > self.capacity:
            self._snaps.popleft()
        # The snapshot that arrived fastest tells us the host's clock best; the
        # estimate decays slowly so a route that got slower is followed too.
        sample = snap.tick * DT - now
        if self._offset is None:
            self._offset = self._play_offset = sample
        else:
            decayed = self._offset - CLOCK_DRIFT * max(0.0, now - self._offset_at)
            self._offset = max(sample, decayed)
        self._offset_at = now
        return True

    def take_events(self) -> list[SimEvent]:
        """Events of the snapshots that playback passed since the last call."""
        events, self._events = self._events, []
        return events

    def render_tick(self, now: float) -> float | None:
        """The host tick shown at `now` (advances the smoothed playback clock)."""
        if self._offset is None:
            return None
        if self._sampled_at is not None:
            elapsed = max(0.0, now - self._sampled_at)
            gap = self._offset - self._play_offset
            if abs(gap) > 0.25:
                self._play_offset = self._offset
            else:
                step = MAX_SLEW * elapsed
                self._play_offset += max(-step, min(step, gap))
        self._sampled_at = now
        return (now + self._play_offset - self.delay) / DT

    def sample(self, now: float) -> Playback | None:
        """The picture at `now`, or None before the first snapshot."""
        tick = self.render_tick(now)
        if tick is None or not self._snaps:
            return None
        snaps = self._snaps
        # Keep one snapshot at or before the render tick; the passed ones make sounds.
        while len(snaps) > 1 and snaps[1].tick <= tick:
            self._note_played(snaps.popleft())
        a = snaps[0]
        self._note_played(a)
        if tick <= a.tick:
            return self._still(a, tick)
        if len(snaps) == 1:
            return self._extrapolate(a, tick)
        b = snaps[1]
        if not _continuous(a, b):
            return self._still(a, tick)
        t = (tick - a.tick) / (b.tick - a.tick)
        return Playback(
            tick=tick,
            game=a.game,
            phase=a.phase,
            score=a.score,
            ball_x=_lerp(a.ball_x, b.ball_x, t),
            ball_y=_lerp(a.ball_y, b.ball_y, t),
            ball_vx=b.ball_vx if t > 0.5 else a.ball_vx,
            ball_vy=b.ball_vy if t > 0.5 else a.ball_vy,
            left_y=_lerp(a.left_y, b.left_y, t),
            right_y=_lerp(a.right_y, b.right_y, t),
        )

    def _note_played(self, snap: Snapshot) -> None:
        if self._played is not None and snap.tick > self._played.tick:
            self._events.extend(snapshot_events(self._played, snap))
        if self._played is None or snap.tick > self._played.tick:
            self._played = snap

    @staticmethod
    def _still(s: Snapshot, tick: float) -> Playback:
        return Playback(
            tick=tick,
            game=s.game,
            phase=s.phase,
            score=s.score,
            ball_x=s.ball_x,
            ball_y=s.ball_y,
            ball_vx=s.ball_vx,
            ball_vy=s.ball_vy,
            left_y=s.left_y,
            right_y=s.right_y,
        )

    def _extrapolate(self, s: Snapshot, tick: float) -> Playback:
        ahead = min((tick - s.tick) * DT, MAX_EXTRAPOLATION)
        if s.phase != Phase.PLAY or ahead <= 0:
            return self._still(s, tick)
        y, flipped = fold_y(s.ball_y + s.ball_vy * ahead, self.rules)
        return Playback(
            tick=tick,
            game=s.game,
            phase=s.phase,
            score=s.score,
            ball_x=s.ball_x + s.ball_vx * ahead,
            ball_y=y,
            ball_vx=s.ball_vx,
            ball_vy=-s.ball_vy if flipped else s.ball_vy,
            left_y=s.left_y,
            right_y=s.right_y,
            extrapolated=True,
        )


class PaddlePredictor:
    """The client's own paddle: moved at once, corrected by the host's word."""

    def __init__(self, rules: Rules, history: int) -> None:
        self.rules = rules
        self.y = rules.height / 2
        self.seq = 0  # number of the newest input
        self._acked = 0
        self._pending: deque[tuple[int, int]] = deque()
        self._recent: deque[int] = deque(maxlen=history)

    def step(self, intent: int) -> None:
        """One tick of local input."""
        self.seq += 1
        self.y = move_paddle(self.y, intent, self.rules)
        self._pending.append((self.seq, intent))
        self._recent.append(intent)
        while len(self._pending) > MAX_PENDING_INPUTS:
            self._pending.popleft()

    def reconcile(self, host_y: float, input_ack: int) -> None:
        """The host's paddle after our input `input_ack`: replay what came later."""
        if input_ack < self._acked:
            return
        self._acked = input_ack
        while self._pending and self._pending[0][0] <= input_ack:
            self._pending.popleft()
        y = host_y
        for _, intent in self._pending:
            y = move_paddle(y, intent, self.rules)
        self.y = y

    @property
    def unacknowledged(self) -> int:
        return len(self._pending)

    def message(self) -> InputMessage | None:
        """The input message to send now, None before the first input."""
        if not self._recent:
            return None
        return InputMessage(seq=self.seq, intents=tuple(self._recent))


class InputQueue:
    """The host's queue of client inputs, fed by redundant, possibly lost messages."""

    def __init__(self, capacity: int = MAX_QUEUED_INPUTS) -> None:
        self.capacity = capacity
        self.newest = 0  # newest input sequence number received
        self._queue: deque[int] = deque()

    def receive(self, msg: InputMessage) -> None:
        for seq, intent in msg.numbered():
            if seq > self.newest:
                # Inputs lost beyond the redundancy are skipped (the paddle
                # stays); the client's prediction is corrected by the snapshot.
                self._queue.append(intent)
                self.newest = seq
        while len(self._queue) > self.capacity:
            self._queue.popleft()

    def drain(self) -> list[int]:
        """The intents to apply now, oldest first; afterwards `newest` is applied."""
        out = list(self._queue)
        self._queue.clear()
        return out

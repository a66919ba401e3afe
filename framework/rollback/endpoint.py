"""What a session knows about one remote player: acks, round trip, frame, checksums."""

from __future__ import annotations

from collections import OrderedDict

from framework.rollback.timesync import TimeSync
from framework.rollback.wire import SEQ_MODULO, InputMessage

#: Remote checksums kept while waiting for our own of the same frame.
MAX_REMOTE_CHECKSUMS = 64
#: Messages that carry each new checksum.
CHECKSUM_REPEATS = 2
#: Weight of a new round-trip sample (RFC 6298's alpha).
RTT_ALPHA = 0.125


class Endpoint:
    def __init__(self, name: str, handle: int, now: float) -> None:
        self.name = name
        self.handle = handle
        self.last_heard = now
        self.acked = -1  # newest frame of our inputs they hold contiguously
        self.remote_frame = -1  # their frame when they last sent
        self.remote_frame_at = now  # when that message arrived
        self.remote_lead = 0
        self.echo = -1  # newest seq of theirs, to echo back
        self.rtt = 0.0  # seconds, smoothed; 0 until measured
        self.disconnected = False
        self.sync = TimeSync()
        self.checksums: OrderedDict[int, int] = OrderedDict()
        self.checked_until = -1  # newest frame whose checksums were compared
        self._checksum_sent = (-1, 0)  # newest checksum frame offered, times sent
        self._seq = 0
        self._sent_at: dict[int, float] = {}

    def next_seq(self, now: float) -> int:
        seq = self._seq
        self._seq = (seq + 1) % SEQ_MODULO
        self._sent_at[seq] = now
        return seq

    def checksum_to_send(self, frame: int, checksum: int) -> tuple[int, int]:
        """The checksum to put in the next message, or (-1, 0) for none."""
        offered, times = self._checksum_sent
        if frame != offered:
            offered, times = frame, 0
        self._checksum_sent = (offered, times + 1)
        return (frame, checksum) if times < CHECKSUM_REPEATS else (-1, 0)

    def heard(self, m: InputMessage, now: float, newest_local: int) -> None:
        """Take the bookkeeping fields of a valid input message."""
        self.last_heard = now
        self.echo = m.seq
        if m.frame >= self.remote_frame:
            self.remote_frame = m.frame
            self.remote_frame_at = now
            self.remote_lead = m.lead
        # An ack beyond what we sent is a lie; it would make us drop inputs they need.
        self.acked = max(self.acked, min(m.ack, newest_local))
        sent = self._sent_at.pop(m.echo, None)
        if sent is not None and now >= sent:
            sample = now - sent
            self.rtt = sample if self.rtt == 0.0 else self.rtt + RTT_ALPHA * (sample - self.rtt)
        if m.checksum_frame >= 0 and m.checksum_frame > self.checked_until:
            self.checksums[m.checksum_frame] = m.checksum
            while len(self.checksums) > MAX_REMOTE_CHECKSUMS:
                self.checksums.popitem(last=False)

    def estimated_frame(self, now: float, fps: float) -> float:
        """Their frame now: the last one they told plus the time since, plus half a trip."""
        return self.remote_frame + (now - self.remote_frame_at + self.rtt / 2) * fps

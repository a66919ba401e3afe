"""What a session knows about one remote player: acks, round trip, frame, checksums."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from framework.rollback.inputs import InputLog
from framework.rollback.timesync import TimeSync
from framework.rollback.wire import MAX_FRAMES_PER_MESSAGE, MAX_LEAD, SEQ_MODULO, InputMessage

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

    def input_message(self, mine: InputLog, frame: int, ack: int,
                      newest_checksum: tuple[int, int], now: float, fps: float) -> InputMessage:
        """Our next message to this player: every input of ours it has not acknowledged
        (up to a message's worth), our frame and lead, our ack of its inputs."""
        start = max(self.acked + 1, mine.first)
        end = min(mine.last, start + MAX_FRAMES_PER_MESSAGE - 1)
        blob = b"".join(mine.confirmed(f) for f in range(start, end + 1))
        # Each checksum rides on two messages (one may be lost); on every message it
        # would cost 5 bytes for nothing.
        checksum_frame, checksum = self.checksum_to_send(*newest_checksum)
        lead = 0
        if self.remote_frame >= 0:
            lead = round(frame - self.estimated_frame(now, fps))
        return InputMessage(
            seq=self.next_seq(now),
            echo=self.echo,
            frame=frame,
            lead=max(-MAX_LEAD, min(MAX_LEAD, lead)),
            ack=ack,
            start=start,
            inputs=blob,
            checksum_frame=checksum_frame,
            checksum=checksum,
        )

    def estimated_frame(self, now: float, fps: float) -> float:
        """Their frame now: the last one they told plus the time since, plus half a trip."""
        return self.remote_frame + (now - self.remote_frame_at + self.rtt / 2) * fps


def sample_time_sync(endpoints: Sequence[Endpoint], frame: int, now: float,
                     fps: float) -> tuple[int, int]:
    """Feed each endpoint's time sync one sample; returns (our frame advantage over the
    slowest player, frames to wait now)."""
    heard = [ep for ep in endpoints if ep.remote_frame >= 0]
    for ep in heard:
        ep.sync.sample(frame - ep.estimated_frame(now, fps), ep.remote_lead)
    if not heard:
        return 0, 0
    advantage = round(max(ep.sync.average_lead for ep in heard))
    return advantage, max(ep.sync.recommend(frame) for ep in heard)


def split_events(events: Iterable[Any], handle: Callable[[str, Any, float], bool],
                 now: float) -> list[Any]:
    """Give ``handle`` the engine's message events (anything with a ``packet_data`` dict
    naming a sender: no pygame needed here); return the events it did not take."""
    rest = []
    for event in events:
        data = getattr(event, "packet_data", None)
        if not (isinstance(data, dict) and isinstance(data.get("from"), str)
                and handle(data["from"], data.get("message"), now)):
            rest.append(event)
    return rest

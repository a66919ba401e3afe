"""A toy deterministic game and a seeded lossy fake network for rollback sessions.

No sockets, no clock: time is a number the test advances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from framework.protocol.delivery import Delivery
from framework.protocol.simulator import NetworkSimulator, SimSettings
from framework.rollback import AdvanceFrame, LoadState, Request, SaveState

FRAME = 1 / 60
MASK = 0xFFFFFFFF


class ToyGame:
    """State: one 32-bit number mixed with every input; checksum: the number itself."""

    def __init__(self) -> None:
        self.state = (0, 1)  # (frames run, value)
        self.confirmed: dict[int, int] = {}  # frame -> value no rollback can change
        self.statuses: list[tuple[int, tuple[str, ...]]] = []
        self.bug_at: int | None = None  # from this frame on, this copy computes differently

    def run(self, requests: Sequence[Request]) -> None:
        for r in requests:
            if isinstance(r, SaveState):
                r.cell.save(r.frame, self.state, self.state[1])
            elif isinstance(r, LoadState):
                self.state = r.cell.load()
            else:
                self.advance(r)

    def advance(self, r: AdvanceFrame) -> None:
        frames, value = self.state
        assert frames == r.frame
        for i, inp in enumerate(r.inputs):
            value = (value * 1_000_003 + (i + 1) * (inp.value[0] + 7)) & MASK
        if self.bug_at is not None and r.frame == self.bug_at:
            value ^= 1
        self.state = (frames + 1, value)
        self.statuses.append((r.frame, tuple(i.status.value for i in r.inputs)))

    def record(self, session: Any) -> None:
        """Note the session's confirmed state (after running its requests)."""
        known = session.confirmed_state()
        if known is not None:
            frame, state = known
            assert state[0] == frame
            self.confirmed[frame] = state[1]


class FakeNet:
    """Messages between named endpoints through seeded simulators, msgpack on the way."""

    def __init__(self, latency: float = 0.0, loss: float = 0.0, seed: int = 1) -> None:
        self.settings = SimSettings(loss=loss, latency=latency, seed=seed)
        self.links: dict[tuple[str, str], NetworkSimulator[str]] = {}
        self.handlers: dict[str, Any] = {}
        self.now = 0.0
        self.bytes_sent: dict[str, int] = {}
        self.cut: set[str] = set()  # endpoints whose traffic vanishes
        self.sent_channels: set[tuple[Delivery, int]] = set()

    def transport(self, name: str) -> Transport:
        return Transport(self, name)

    def send(self, src: str, dst: str, message: Any, delivery: Delivery, channel: int) -> None:
        self.sent_channels.add((delivery, channel))
        data = msgpack.packb(message, use_bin_type=True)
        self.bytes_sent[src] = self.bytes_sent.get(src, 0) + len(data)
        if src in self.cut:
            return
        key = (src, dst)
        if key not in self.links:
            seed = self.settings.seed * 1000 + len(self.links)
            self.links[key] = NetworkSimulator(
                SimSettings(loss=self.settings.loss, latency=self.settings.latency, seed=seed))
        self.links[key].send(data, dst, self.now)

    def deliver(self) -> None:
        for (src, _), link in list(self.links.items()):
            for data, dst in link.due(self.now):
                handler = self.handlers.get(dst)
                if handler is not None:
                    handler.handle_message(src, msgpack.unpackb(data, raw=False), self.now)


class Transport:
    def __init__(self, net: FakeNet, name: str) -> None:
        self.net = net
        self.name = name

    def send(self, peer_name: str, message: Any, delivery: Delivery = Delivery.RELIABLE_ORDERED,
             channel: int = 0) -> int | None:
        self.net.send(self.name, peer_name, message, delivery, channel)
        return None

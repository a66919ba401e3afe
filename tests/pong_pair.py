"""Two Pong matches joined by a seeded fake network, on a fake clock (no sockets)."""

from __future__ import annotations

from typing import Any

import msgpack

from framework.protocol.delivery import Delivery
from framework.protocol.simulator import NetworkSimulator, SimSettings
from games.pong.bot import Bot
from games.pong.control import bot_controller
from games.pong.match import Controller, Match
from games.pong.sim import LEFT, RIGHT, Rules

FRAME = 1 / 60


class Message:
    """Looks like the engine's RECEIVED_*_FROM_PEER events as far as a match cares."""

    def __init__(self, sender: str, message: Any) -> None:
        self.packet_data = {"from": sender, "message": message}


class Wire:
    """One direction: unreliable messages may be lost, reliable ones only delayed."""

    def __init__(self, src: str, latency: float, loss: float, seed: int) -> None:
        self.src = src
        self.lossy: NetworkSimulator[bool] = NetworkSimulator(
            SimSettings(latency=latency, loss=loss, seed=seed))
        self.sure: NetworkSimulator[bool] = NetworkSimulator(SimSettings(latency=latency))
        self.now = 0.0
        self.bytes = 0
        self.cut = False

    def send(self, peer_name: str, message: Any, delivery: Delivery = Delivery.RELIABLE_ORDERED,
             channel: int = 0) -> int | None:
        data = msgpack.packb(message, use_bin_type=True)
        self.bytes += len(data)
        if not self.cut:
            link = self.sure if delivery.reliable else self.lossy
            link.send(data, delivery.reliable, self.now)
        return None

    def due(self, now: float) -> list[tuple[Any, bool]]:
        out = [(msgpack.unpackb(d, raw=False), r) for d, r in self.sure.due(now)]
        return out + [(msgpack.unpackb(d, raw=False), r) for d, r in self.lossy.due(now)]


class Pair:
    def __init__(self, *, latency: float = 0.0, loss: float = 0.0, seed: int = 1,
                 points: int = 3, controllers: tuple[Controller, Controller] | None = None
                 ) -> None:
        self.now = 0.0
        self.wires = (Wire("host", latency, loss, seed), Wire("guest", latency, loss, seed + 1))
        rules = Rules(points_to_win=points)
        self.host = Match(self.wires[0], "host", "guest", LEFT, 0.0, seed=seed, rules=rules)
        self.guest = Match(self.wires[1], "guest", "host", RIGHT, 0.0)
        self.controllers = controllers or (
            bot_controller(Bot(LEFT, rules, seed + 100)),
            bot_controller(Bot(RIGHT, rules, seed + 200)),
        )

    @property
    def matches(self) -> tuple[Match, Match]:
        return (self.host, self.guest)

    def step(self) -> None:
        self.now += FRAME
        for wire, receiver in ((self.wires[0], self.guest), (self.wires[1], self.host)):
            wire.now = self.now
            for message, reliable in wire.due(self.now):
                rest = receiver.handle_events([Message(wire.src, message)], self.now)
                if rest and reliable:
                    receiver.on_event(message, self.now)
        for match, controller in zip(self.matches, self.controllers, strict=True):
            match.update(self.now, controller)

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / FRAME)):
            self.step()

"""A fake, seeded network for the pure protocol core: no sockets, a fake clock.

Sessions and a handshake core sit at made-up addresses; every datagram goes through a
NetworkSimulator (the engine's own), so loss, delay, duplication and reordering are
reproducible from the seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from framework.protocol import events as ev
from framework.protocol.addresses import Address
from framework.protocol.config import Config
from framework.protocol.crypto import KeyPair
from framework.protocol.session import Session
from framework.protocol.simulator import NetworkSimulator, SimSettings
from server.core import HandshakeCore, ServerConfig

HS: Address = ("203.0.113.1", 5160)


def seeded_bytes(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return rng.randbytes


class FakeNet:
    """Routes datagrams between sessions and a handshake core on a fake clock."""

    def __init__(self, settings: SimSettings | None = None, seed: int = 1,
                 server_config: ServerConfig | None = None) -> None:
        self.now = 0.0
        self.sim: NetworkSimulator[tuple[Address, Address]] = NetworkSimulator(
            settings or SimSettings(seed=seed))
        hs_random = seeded_bytes(seed + 1000)
        self.hs_key = KeyPair.generate(hs_random)
        self.hs = HandshakeCore(server_config, hs_random, self.hs_key)
        self.hs_up = True
        self.sessions: dict[Address, Session] = {}
        self.events: dict[Address, list[ev.EngineEvent]] = {}
        self.paused: set[Address] = set()  # sessions that stopped ticking
        self.filter: Callable[[bytes, Address, Address], bool] | None = None
        self._seed = seed
        self._next_host = 10
        # Each session's address, by id (kept beside the session: compiled sessions take
        # no attributes of ours).
        self._addresses: dict[int, tuple[Session, Address]] = {}
        self.delivered = 0
        #: Other servers on the network (relay nodes): address -> (data, source, now)
        #: -> replies.
        self.endpoints: dict[Address, Callable[[bytes, Address, float],
                                               list[tuple[bytes, Address]]]] = {}

    def add(self, config: Config | None = None, address: Address | None = None) -> Session:
        if address is None:
            address = (f"198.51.100.{self._next_host}", 40000 + self._next_host)
            self._next_host += 1
        s = Session(config or Config(), seeded_bytes(self._seed + self._next_host * 7))
        self.place(s, address)
        return s

    def place(self, s: Session, address: Address) -> None:
        """Put a session on the network at ``address``."""
        self._addresses[id(s)] = (s, address)
        self.sessions[address] = s
        self.events[address] = []

    def quiet_pair(self) -> tuple[Session, Session]:
        """A server player ("host") and a client ("alice") connected, their events taken,
        with peer checks put off: the setup of the message-cost measurements."""
        quiet = Config(secs_between_peer_checks=1e6)
        host = self.add(quiet)
        self.call(host, "init_server", HS, self.addr(host), "host", None)
        self.run(2, host.is_connected)
        alice = self.add(quiet)
        self.call(alice, "init_client", HS, self.addr(alice), "alice", "host", None)
        self.run(5, alice.is_connected)
        self.run(1)
        alice.events()
        host.events()
        return host, alice

    def addr(self, s: Session) -> Address:
        return self._addresses[id(s)][1]

    def inject(self, data: bytes, src: Address, dst: Address) -> None:
        self.sim.send(data, (src, dst), self.now)

    def _collect(self, s: Session) -> None:
        a = self.addr(s)
        for data, to in s.take_datagrams():
            self.sim.send(data, (a, to), self.now)
        self.events[a].extend(s.events())

    def step(self, dt: float = 1 / 60) -> None:
        self.now = round(self.now + dt, 9)
        for (src, dst), data in ((k, d) for d, k in self.sim.due(self.now)):
            if self.filter is not None and not self.filter(data, src, dst):
                continue
            self.delivered += 1
            if dst == HS:
                if self.hs_up:
                    for reply, to in self.hs.receive(data, src, self.now):
                        self.sim.send(reply, (HS, to), self.now)
            elif dst in self.endpoints:
                for reply, to in self.endpoints[dst](data, src, self.now):
                    self.sim.send(reply, (dst, to), self.now)
            elif dst in self.sessions and dst not in self.paused:
                self.sessions[dst].receive_datagram(data, src, self.now)
            elif dst[0].endswith(".255"):
                self._broadcast(data, src, dst)
        if self.hs_up:
            self.hs.expire(self.now)
        for a, s in self.sessions.items():
            if a in self.paused:
                continue
            s.handle_timer(self.now)
            self._collect(s)

    def _broadcast(self, data: bytes, src: Address, dst: Address) -> None:
        """A datagram to ``a.b.c.255``: every session of that /24 hosting on the LAN, on
        that discovery port, gets it (as its second socket would)."""
        net = dst[0].rsplit(".", 1)[0] + "."
        for a, s in self.sessions.items():
            if (a[0].startswith(net) and a not in self.paused and s.lan.listening
                    and s.config.lan_port == dst[1]):
                s.receive_datagram(data, src, self.now)

    def run(self, seconds: float, until: Callable[[], bool] | None = None,
            dt: float = 1 / 60) -> bool:
        end = self.now + seconds
        while self.now < end:
            self.step(dt)
            if until is not None and until():
                return True
        return until() if until is not None else True

    def call(self, s: Session, method: str, *args: Any) -> Any:
        """Call an API method with the fake clock, then collect what it produced."""
        result = getattr(s, method)(*args, self.now)
        self._collect(s)
        return result

    def take(self, s: Session, kind: type[Any] | None = None) -> list[Any]:
        """Remove and return the session's events (of one kind, or all)."""
        a = self.addr(s)
        evs = self.events[a]
        if kind is None:
            self.events[a] = []
            return evs
        mine = [e for e in evs if isinstance(e, kind)]
        self.events[a] = [e for e in evs if not isinstance(e, kind)]
        return mine

    def has(self, s: Session, kind: type[Any]) -> bool:
        return any(isinstance(e, kind) for e in self.events[self.addr(s)])

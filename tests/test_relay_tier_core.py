"""Sessions on a relay node, on the fake clock: binding, and following the relay when its
node dies. The relay nodes are the real ``RelayNodeCore`` over a dict standing in for
Redis; the handshake server is the real core with a relay store that places relays on
the "current" relay node, as ``cluster.RedisRelays`` does with the directory."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from framework.protocol import events as ev
from framework.protocol.addresses import Address
from framework.protocol.delivery import Delivery
from framework.protocol.limits import Buckets
from framework.protocol.simulator import SimSettings
from framework.protocol.wire import HsKind
from server.config import ServerConfig, ServerStats
from server.core import HandshakeCore
from server.introductions import Introductions
from server.registry import Registry
from server.relays import Relay, Relays
from server.relaytier import RelayNodeCore
from server.store import Stores
from tests.fakenet import FakeNet, seeded_bytes
from tests.test_session_core import join, start_host, user_messages

NODES: dict[str, Address] = {"r1": ("203.0.113.21", 5170), "r2": ("203.0.113.22", 5170)}


class DictRedis:
    """Just enough of a Redis pipeline for a relay node: HGETALL answers from a dict,
    everything else (its reports) is taken and ignored."""

    def __init__(self) -> None:
        self.hashes: dict[bytes, dict[bytes, bytes]] = {}

    def run(self, commands: Callable[[Any], object]) -> list[Any]:
        out: list[Any] = []
        hashes = self.hashes

        class Pipe:
            def hgetall(self, key: bytes) -> None:
                out.append(dict(hashes.get(key, {})))

            def __getattr__(self, name: str) -> Callable[..., None]:
                return lambda *args, **kwargs: out.append(None)

        commands(Pipe())
        return out


class TierRelays:
    """A ``RelayStore``: the memory store's relays, placed on the relay node named by
    ``current``; ``relocate`` moves one off a node in ``dead``. (Composition, not a
    subclass: the compiled form's ``Relays`` takes no interpreted subclasses.)"""

    def __init__(self, config: ServerConfig, stats: ServerStats,
                 random_bytes: Callable[[int], bytes], redis: DictRedis) -> None:
        self._inner = Relays(config, stats, random_bytes)
        self.redis = redis
        self.current = "r1"
        self.dead: set[str] = set()
        self._rand = random_bytes

    @property
    def by_id(self) -> Mapping[bytes, Relay]:
        return self._inner.by_id

    def forward(self, data: bytes, source: Address, now: float) -> list[tuple[bytes, Address]]:
        return self._inner.forward(data, source, now)

    def expire(self, now: float) -> None:
        """Nothing: the records of relays on relay nodes live in "Redis", renewed by the
        nodes' traffic (the handshake server forwards none of it)."""

    def open(self, server_end: Address, client_end: Address, client_prefix: str,
             now: float, nodes: tuple[str, str] = ("", ""),
             names: tuple[str, str] = ("", ""), client_share: bytes = b"") -> Relay | None:
        relay = self._inner.open(server_end, client_end, client_prefix, now, nodes, names,
                                 client_share)
        if relay is not None and relay.at is None:
            relay.names, relay.keys = names, (self._rand(16), self._rand(16))
            relay.client_share = client_share
            self._place(relay)
        return relay

    def _place(self, relay: Relay) -> None:
        relay.relay_node, relay.at = self.current, NODES[self.current]
        self.redis.hashes[b"p2p:relay:" + relay.relay_id] = {
            b"rn": self.current.encode(), b"ak": relay.keys[0], b"bk": relay.keys[1],
            b"c": repr(time.time()).encode(), b"x": b"pfx", b"pair": b"pair"}

    def relocate(self, relay_id: bytes, key: bytes, now: float
                 ) -> tuple[Relay, int, bool] | None:
        relay = self.by_id.get(relay_id)
        end = relay.end_of(key) if relay is not None else None
        if relay is None or end is None:
            return None
        moved = relay.relay_node in self.dead
        if moved:
            self._place(relay)
        return relay, end, moved


def tier_net(seed: int) -> tuple[FakeNet, TierRelays, dict[str, RelayNodeCore]]:
    net = FakeNet(SimSettings(latency=0.02, seed=seed))
    redis = DictRedis()
    holder: list[TierRelays] = []

    def stores(config: ServerConfig, stats: ServerStats,
               random_bytes: Callable[[int], bytes]) -> Stores:
        relays = TierRelays(config, stats, random_bytes, redis)
        holder.append(relays)
        return Stores(Registry(config, random_bytes), Introductions(config, random_bytes(32)),
                      relays, Buckets(config.requests_per_sec_per_ip, config.request_burst,
                                      config.max_tracked_sources), random_bytes(32))

    net.hs = HandshakeCore(None, seeded_bytes(seed + 7), net.hs_key, stores)
    cores = {name: RelayNodeCore(redis, name, addr, ServerConfig(), 100)
             for name, addr in NODES.items()}
    for name, core in cores.items():
        net.endpoints[NODES[name]] = core.receive
    return net, holder[0], cores


def test_a_relayed_session_binds_and_follows_its_relay_to_another_node() -> None:
    net, tier, cores = tier_net(31)
    host = start_host(net)
    alice = join(net, host, "alice")
    players = {net.addr(host), net.addr(alice)}
    # No direct path: the session has to go through the relay node.
    net.filter = lambda data, src, dst: not (src in players and dst in players)
    assert net.run(10, lambda: alice.is_connected() and host.get_peers() == ["alice"])
    conn = alice.connection("host")
    assert conn is not None and conn.stats(net.now).path == "relay"
    assert cores["r1"].binds_accepted >= 2 and cores["r2"].binds_accepted == 0
    sent = 0
    for _ in range(60):  # a second of play, one message a frame
        alice.send("host", sent, Delivery.RELIABLE_ORDERED, 0)
        sent += 1
        net.step()
    assert cores["r1"].stats.relayed_packets > 30

    # r1 dies: nothing reaches it any more, and the directory no longer lists it.
    del net.endpoints[NODES["r1"]]
    tier.dead.add("r1")
    tier.current = "r2"
    died = net.now
    net.take(alice)
    net.take(host, ev.PathChanged)
    moved: dict[str, float] = {}
    while net.now - died < 10 and len(moved) < 2:
        alice.send("host", sent, Delivery.RELIABLE_ORDERED, 0)
        sent += 1
        net.step()
        for name, s in (("alice", alice), ("host", host)):
            if name not in moved and net.has(s, ev.PathChanged):
                moved[name] = net.now - died
    assert set(moved) == {"alice", "host"}, moved
    # Silence for RELAY_SILENCE (1 s), then a round trip to the handshake server and one
    # to the new node.
    assert max(moved.values()) < 2.0, moved
    assert all(e.path == "relay" for e in net.take(alice, ev.PathChanged))
    assert conn.stats(net.now).path == "relay"
    for _ in range(60):
        alice.send("host", sent, Delivery.RELIABLE_ORDERED, 0)
        sent += 1
        net.step()
    got: list[object] = []
    assert net.run(5, lambda: got.extend(user_messages(net, host)) or len(got) >= sent)
    # Every message arrived, once, in order; no one timed out or was told to leave.
    assert got == list(range(sent))
    for s in (host, alice):
        assert not net.has(s, ev.PeerTimeout) and not net.has(s, ev.SessionTerminated)
    assert cores["r2"].stats.relayed_packets > 30
    assert cores["r2"].binds_accepted >= 2


def test_a_relay_node_drops_strangers_and_replays_without_harm() -> None:
    net, _, cores = tier_net(32)
    host = start_host(net)
    alice = join(net, host, "alice")
    players = {net.addr(host), net.addr(alice)}
    net.filter = lambda data, src, dst: not (src in players and dst in players)
    captured: list[bytes] = []
    inner = cores["r1"].receive

    def tap(data: bytes, src: Address, now: float) -> list[tuple[bytes, Address]]:
        captured.append(data)
        return inner(data, src, now)
    net.endpoints[NODES["r1"]] = tap
    assert net.run(10, lambda: alice.is_connected() and host.get_peers() == ["alice"])
    attacker: Address = ("192.0.2.66", 4444)
    to_attacker: list[bytes] = []
    blocked = net.filter
    net.filter = lambda data, src, dst: (
        (to_attacker.append(data) is None if dst == attacker else True)
        and blocked(data, src, dst))
    dropped = cores["r1"].stats.dropped
    # An attacker replays every datagram it saw (binds, relayed data), from its address.
    seen = list(captured)
    for data in seen:
        net.inject(data, attacker, NODES["r1"])
    net.run(1)
    assert cores["r1"].stats.dropped == dropped + len(seen)
    assert to_attacker == []  # no answer, nothing forwarded to it
    got: list[object] = []
    for i in range(20):
        alice.send("host", i, Delivery.RELIABLE_ORDERED, 0)
    assert net.run(3, lambda: got.extend(user_messages(net, host)) or len(got) >= 20)
    assert got == list(range(20))
    assert host.get_peers() == ["alice"] and alice.is_connected()


def test_a_quiet_session_asks_nothing_and_survives_the_loss_of_its_relay_node() -> None:
    """Peer checks only (every 15 s): while the relay works nobody asks where it is; when
    its node dies, the client's unanswered check makes it ask, and the handshake server
    tells the host too, before either gives the other up."""
    net, tier, cores = tier_net(33)
    host = start_host(net)
    alice = join(net, host, "alice")
    players = {net.addr(host), net.addr(alice)}
    net.filter = lambda data, src, dst: not (src in players and dst in players)
    assert net.run(10, lambda: alice.is_connected() and host.get_peers() == ["alice"])
    net.run(60)
    assert net.hs.stats.by_kind[HsKind.RELAY_MOVE] == 0
    assert cores["r1"].stats.relayed_packets > 0

    del net.endpoints[NODES["r1"]]
    tier.dead.add("r1")
    tier.current = "r2"
    net.take(alice)
    net.take(host)
    assert net.run(40, lambda: net.has(alice, ev.PathChanged) and net.has(host, ev.PathChanged))
    net.run(40)  # and on, quiet, through the new node
    for s in (host, alice):
        assert not net.has(s, ev.PeerTimeout) and not net.has(s, ev.SessionTerminated)
    alice.send("host", "still here", Delivery.RELIABLE_ORDERED, 0)
    assert net.run(2, lambda: "still here" in user_messages(net, host))
    assert cores["r2"].stats.relayed_packets > 0
    # One move: a request or two from the client, none from the host, which was told.
    assert 1 <= net.hs.stats.by_kind[HsKind.RELAY_MOVE] <= 3

"""The messaging layer on a fake clock and a seeded lossy link: exact outcomes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from framework.protocol.channels import ReassemblyBudget
from framework.protocol.config import Config
from framework.protocol.connection import Connection
from framework.protocol.constants import FRAGMENT_SIZE
from framework.protocol.constants import SYSTEM_CHANNEL as SYSTEM
from framework.protocol.delivery import Delivery
from framework.protocol.errors import MessageTooLarge, ProtocolError
from framework.protocol.protection import PacketProtection
from framework.protocol.records import Delivered
from framework.protocol.simulator import NetworkSimulator, SimSettings
from framework.protocol.values import encode_value
from framework.protocol.wire import data_plaintext, fragment_item, reliable_item
from tests.fakenet import seeded_bytes

FRAME = 1 / 60
_RANDOM = seeded_bytes(42)


def pair(config: Config | None = None, budget: ReassemblyBudget | None = None
         ) -> tuple[Connection, Connection]:
    """Two connections keyed for each other."""
    cfg = config or Config()
    pa, pb = PacketProtection.pair(_RANDOM)
    return Connection(cfg, 0.0, pa, budget), Connection(cfg, 0.0, pb, budget)


def victim(config: Config, budget: ReassemblyBudget | None = None
           ) -> tuple[Connection, PacketProtection]:
    """A connection, and the keys of its peer (to seal any plaintext at it)."""
    mine, theirs = PacketProtection.pair(_RANDOM)
    return Connection(config, 0.0, mine, budget), theirs


class Link:
    """Two connections joined by two simulated one-way links, on a fake clock."""

    def __init__(self, loss: float = 0.0, latency: float = 0.02, jitter: float = 0.0,
                 duplicate: float = 0.0, reorder: float = 0.0, seed: int = 1,
                 config: Config | None = None) -> None:
        self.cfg = config or Config(attempts_before_expiration=10_000,
                                              secs_between_peer_checks=1e6)
        self.now = 0.0
        self.a, self.b = pair(self.cfg)
        self.ab: NetworkSimulator[str] = NetworkSimulator(
            SimSettings(loss, latency, jitter, duplicate, reorder, seed))
        self.ba: NetworkSimulator[str] = NetworkSimulator(
            SimSettings(loss, latency, jitter, duplicate, reorder, seed + 1))
        self.at_b: list[Delivered] = []
        self.at_a: list[Delivered] = []
        self.drop_ab: Callable[[bytes], bool] | None = None

    def step(self, dt: float = FRAME) -> None:
        self.now += dt
        for d in self.a.poll(self.now):
            if self.drop_ab is None or not self.drop_ab(d):
                self.ab.send(d, "b", self.now)
        for d in self.b.poll(self.now):
            self.ba.send(d, "a", self.now)
        for d, _ in self.ab.due(self.now):
            self.at_b.extend(m for m in self.b.receive(d, self.now) if m.channel != SYSTEM)
        for d, _ in self.ba.due(self.now):
            self.at_a.extend(m for m in self.a.receive(d, self.now) if m.channel != SYSTEM)

    def run_until(self, cond: Callable[[], bool], seconds: float) -> bool:
        end = self.now + seconds
        while self.now < end:
            self.step()
            if cond():
                return True
        return cond()

    def values_at_b(self, channel: int | None = None) -> list[object]:
        return [d.value for d in self.at_b if channel is None or d.channel == channel]


def send(conn: Connection, value: object, mode: Delivery = Delivery.RELIABLE_ORDERED,
         channel: int = 0, message_id: int = 0) -> None:
    conn.send(mode, channel, encode_value(value), message_id, value)


def test_1000_ordered_through_50_percent_loss_duplication_and_reordering() -> None:
    link = Link(loss=0.5, latency=0.03, jitter=0.02, duplicate=0.2, reorder=0.2, seed=42)
    for i in range(1000):
        send(link.a, [i, "x" * 100], message_id=i + 1)  # ~10 a datagram: ~100 datagrams
    assert link.run_until(lambda: len(link.at_b) >= 1000, 120)
    link.run_until(lambda: False, 2)  # late duplicates would show up now
    assert [v[0] for v in link.values_at_b()] == list(range(1000))  # type: ignore[index]
    assert [d.message_id for d in link.at_b] == list(range(1, 1001))
    assert link.ab.dropped > 100 and link.ab.duplicated > 10
    assert not link.a.expired


def test_64_through_90_percent_loss() -> None:
    link = Link(loss=0.9, latency=0.02, seed=7)
    for i in range(64):
        send(link.a, i)
    assert link.run_until(lambda: len(link.at_b) >= 64, 600)
    assert link.values_at_b() == list(range(64))


def test_more_than_70000_messages_wrap_every_sequence_number() -> None:
    link = Link(latency=0.0)
    n = 70_500
    sent = 0
    # one message a frame at first, so the 16-bit packet sequence wraps too
    while sent < n:
        burst = 1 if sent < 66_000 else min(200, n - sent)
        for _ in range(burst):
            send(link.a, sent, channel=sent % 2)
            sent += 1
        link.step()
    assert link.run_until(lambda: len(link.at_b) >= n, 60)
    assert link.values_at_b(0) == list(range(0, n, 2))
    assert link.values_at_b(1) == list(range(1, n, 2))
    assert link.a.counters.packets_sent > 65_536


def test_one_mebibyte_under_20_percent_loss_arrives_intact() -> None:
    link = Link(loss=0.2, latency=0.02, jitter=0.01, seed=3)
    blob = bytes(range(256)) * 4096
    assert len(blob) == 1 << 20
    send(link.a, blob, message_id=9)
    send(link.a, "after", message_id=10)
    assert link.run_until(lambda: len(link.at_b) >= 2, 120)
    assert link.at_b[0].value == blob and link.at_b[0].message_id == 9
    assert link.at_b[1].value == "after"
    assert link.b.budget.used == 0  # nothing left in reassembly


def test_unordered_fragments_reassemble() -> None:
    link = Link(loss=0.2, reorder=0.3, seed=5)
    big = b"x" * (FRAGMENT_SIZE * 5 + 17)
    send(link.a, big, Delivery.RELIABLE_UNORDERED)
    send(link.a, "small", Delivery.RELIABLE_UNORDERED)
    assert link.run_until(lambda: len(link.at_b) >= 2, 30)
    assert sorted(map(repr, link.values_at_b())) == sorted([repr(big), repr("small")])


def _packet(peer: PacketProtection, items: list[list[object]]) -> bytes:
    return peer.seal(data_plaintext(0xFFFF, 0, items))


def test_reassembly_caps_hold_against_a_peer_that_never_finishes() -> None:
    budget = ReassemblyBudget(limit=3 * FRAGMENT_SIZE * 8)
    cfg = Config(reassembly_limit_per_peer=2 * FRAGMENT_SIZE * 8)
    victims = [victim(cfg, budget) for _ in range(3)]
    chunk = b"z" * FRAGMENT_SIZE
    accepted = [0, 0, 0]
    for v, (conn, peer) in enumerate(victims):
        for p in range(40):
            # fragments 1.. of a message whose fragment 0 never comes
            items = [fragment_item(Delivery.RELIABLE_ORDERED, 0, 1 + p, 1, 1 + p, 900, chunk)]
            try:
                conn.receive(_packet(peer, items), 0.0)
                accepted[v] += 1
            except ProtocolError:
                pass
    per_peer = cfg.reassembly_limit_per_peer // FRAGMENT_SIZE
    # the first peer is stopped by its own cap, the second by the total cap
    assert accepted == [per_peer, budget.limit // FRAGMENT_SIZE - per_peer, 0]
    assert budget.used <= budget.limit
    for conn, _ in victims:
        conn.close()
    assert budget.used == 0


def test_fragment_numbering_beyond_the_size_limit_is_rejected() -> None:
    conn, peer = victim(Config(max_message_size=10 * FRAGMENT_SIZE))
    with pytest.raises(ProtocolError):
        conn.receive(_packet(peer, [fragment_item(Delivery.RELIABLE_ORDERED, 0, 0, 1, 0, 5000,
                                                  b"a")]), 0.0)
    with pytest.raises(ProtocolError):  # beyond the receive window
        conn.receive(_packet(peer, [reliable_item(Delivery.RELIABLE_ORDERED, 0, 5000, 1, "x")]),
                     0.0)


def test_a_stalled_channel_never_holds_back_another() -> None:
    link = Link(latency=0.01)
    link.drop_ab = lambda d: True  # the first datagram (message 0 of channel 0) is lost
    send(link.a, "c0-first", channel=0)
    link.step()
    link.drop_ab = None
    send(link.a, "c0-second", channel=0)
    send(link.a, "c1-only", channel=1)
    link.run_until(lambda: bool(link.at_b), 0.2)
    assert link.values_at_b() == ["c1-only"]  # channel 0 waits for its gap, channel 1 doesn't
    assert link.run_until(lambda: len(link.at_b) == 3, 5)
    assert link.values_at_b(0) == ["c0-first", "c0-second"]


def test_unreliable_sequenced_drops_stale_messages() -> None:
    a, b = pair()
    datagrams = []
    for i in range(4):
        send(a, f"s{i}", Delivery.UNRELIABLE_SEQUENCED, channel=2)
        [d] = a.poll(0.01 * (i + 1))
        datagrams.append(d)
    got = []
    for d in (datagrams[2], datagrams[0], datagrams[1], datagrams[3], datagrams[3]):
        got += [x.value for x in b.receive(d, 0.1)]
    assert got == ["s2", "s3"]


def test_expiry_names_exactly_that_message_and_the_channel_moves_on() -> None:
    cfg = Config(attempts_before_expiration=3, secs_to_await_reply=0.2,
                           secs_between_peer_checks=1e6)
    link = Link(config=cfg)
    send(link.a, "warm-up", message_id=1)
    assert link.run_until(lambda: len(link.at_b) == 1, 2)
    link.drop_ab = lambda d: True
    send(link.a, "doomed", message_id=2)
    send(link.a, "big-doomed", message_id=3, channel=1)
    assert link.run_until(lambda: len(link.a.expired) == 2, 5)
    assert sorted(g.message_id for g in link.a.expired) == [2, 3]
    link.a.expired.clear()
    link.drop_ab = None
    send(link.a, "survivor", message_id=4)
    assert link.run_until(lambda: len(link.at_b) == 2, 5)
    assert link.values_at_b() == ["warm-up", "survivor"]
    link.run_until(lambda: False, 2)
    assert not link.a.expired and link.a.in_flight() == 0


def test_acks_ride_on_data_and_lone_acks_only_when_idle() -> None:
    link = Link(latency=0.0)
    for i in range(30):
        send(link.a, i)
        send(link.b, -i)
        link.step()
    link.run_until(lambda: False, 0.5)
    # each side sent one datagram a frame with data; acks travelled inside them
    assert link.a.counters.packets_sent <= 30 + 3
    assert link.a.in_flight() == 0 and link.b.in_flight() == 0
    link.run_until(lambda: False, 1.5)  # a last round-trip probe may go within a second
    idle_before = link.a.counters.packets_sent
    link.run_until(lambda: False, 5)
    assert link.a.counters.packets_sent == idle_before  # nothing to ack: silence


def test_round_trip_statistics_follow_rfc6298() -> None:
    link = Link(latency=0.05)
    for i in range(200):
        send(link.a, i)
        send(link.b, i)
        link.step()
    st = link.a.stats(link.now)
    assert 0.09 < st.rtt < 0.14  # 2 x 50 ms plus up to a frame of ack delay
    assert st.rtt_var < 0.02
    assert st.rto >= st.rtt
    assert st.packet_loss == 0.0
    assert st.bytes_out_per_sec > 0 and st.bytes_in_per_sec > 0


def test_loss_statistic_tracks_the_link() -> None:
    link = Link(loss=0.25, latency=0.02, seed=9)
    for i in range(600):
        send(link.a, i)
        send(link.b, i)
        link.step()
    loss = link.a.stats(link.now).packet_loss
    assert 10 < loss < 45


def test_send_errors_are_raised_at_the_call() -> None:
    conn, _ = victim(Config(max_message_size=5000))
    with pytest.raises(MessageTooLarge):
        conn.send(Delivery.UNRELIABLE, 0, encode_value(b"x" * 2000))
    with pytest.raises(MessageTooLarge):
        conn.send(Delivery.RELIABLE_ORDERED, 0, encode_value(b"x" * 6000))
    conn.send(Delivery.RELIABLE_ORDERED, 0, encode_value(b"x" * 4000))  # fragmented: fine


def test_every_datagram_fits_the_limit() -> None:
    link = Link(latency=0.0)
    for i in range(500):
        send(link.a, "m" * (i % 300), channel=i % 8)
    sizes: list[int] = []
    link.drop_ab = lambda d: sizes.append(len(d)) or False
    link.run_until(lambda: len(link.at_b) >= 500, 10)
    assert sizes and max(sizes) <= 1200 - 8  # room left for the authentication tag
    assert len(sizes) < 500 / 4  # batched: many messages share a datagram

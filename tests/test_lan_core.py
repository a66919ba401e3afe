"""LAN play with no handshake server, in the pure core on the fake clock: discovery by
broadcast, joins with a join token from the host, the password, and what a hostile LAN
(or the internet) can and cannot do with the discovery datagrams."""

from __future__ import annotations

import random

import pytest

from framework.protocol import events as ev
from framework.protocol.addresses import Address
from framework.protocol.config import Config
from framework.protocol.crypto import KeyPair
from framework.protocol.delivery import Delivery
from framework.protocol.lan import ANSWERS_PER_SEC
from framework.protocol.session import Phase, Session
from framework.protocol.simulator import SimSettings
from framework.protocol.wire import (
    LAN_JOIN_SIZE,
    LAN_QUERY_SIZE,
    LAN_SCHEMAS,
    Kind,
    decode_lan,
    encode_lan,
    header,
)
from tests.fakenet import FakeNet

PORT = 5161
SHARE = KeyPair.generate(random.Random(1).randbytes).public
BROADCAST: Address = ("192.168.1.255", PORT)


def lan_host(net: FakeNet, name: str = "host", password: str | None = None,
             ip: str = "192.168.1.10", config: Config | None = None) -> Session:
    s = net.add(config, (ip, 40000))
    net.call(s, "init_lan_server", (ip, 40000), name, password)
    return s


def lan_player(net: FakeNet, ip: str = "192.168.1.20", config: Config | None = None,
               port: int = 40001) -> Session:
    return net.add(config, (ip, port))


def listing(net: FakeNet, s: Session, targets: list[Address] | None = None
            ) -> list[dict[str, object]]:
    net.call(s, "request_lan_list", targets or [BROADCAST])
    assert net.run(3, until=lambda: net.has(s, ev.ReceivedServerList))
    (event,) = net.take(s, ev.ReceivedServerList)
    assert event.server_names == [e["name"] for e in event.servers]
    return sorted(event.servers, key=lambda e: str(e["name"]))


def join(net: FakeNet, s: Session, host: Session, name: str, password: str | None = None
         ) -> None:
    net.call(s, "init_lan_client", net.addr(host), net.addr(s), name, host.name, password)


def test_a_lan_host_is_listed_and_joined_without_a_handshake_server() -> None:
    net = FakeNet(seed=3)
    net.hs_up = False  # nothing answers there: nothing may need it
    host = lan_host(net, "lanparty")
    assert net.take(host, ev.ConfirmedAsServer) == [ev.ConfirmedAsServer(None)]
    assert host.is_connected() and host.get_server_address() == ("192.168.1.10", 40000)
    alice = lan_player(net)
    entries = listing(net, alice)
    assert entries == [{"name": "lanparty", "password_required": False,
                        "address": ("192.168.1.10", 40000), "lan": True}]
    join(net, alice, host, "alice")
    assert net.run(5, until=lambda: alice.phase is Phase.CONNECTED)
    assert net.take(host, ev.ClientConfirmed) == [ev.ClientConfirmed("alice")]
    assert net.take(alice, ev.ConfirmedAsClient) == [ev.ConfirmedAsClient(
        ("192.168.1.10", 40000))]
    conn = alice.connection("lanparty")
    assert conn is not None and conn.stats(net.now).path == "lan"
    alice.send("lanparty", {"hi": 1}, Delivery.RELIABLE_ORDERED, 0)
    host.send("alice", [1, 2], Delivery.RELIABLE_ORDERED, 0)
    assert net.run(2, until=lambda: net.has(host, ev.ReceivedReliableMessageFromPeer)
                   and net.has(alice, ev.ReceivedReliableMessageFromPeer))


def test_two_players_and_two_games_on_one_lan() -> None:
    net = FakeNet(seed=4)
    a = lan_host(net, "game-a", ip="192.168.1.10")
    b = lan_host(net, "game-b", password="pw", ip="192.168.1.11")
    other_lan = lan_host(net, "elsewhere", ip="192.168.2.10")
    p = lan_player(net)
    entries = listing(net, p)
    assert [(e["name"], e["password_required"]) for e in entries] == [
        ("game-a", False), ("game-b", True)]
    assert other_lan.is_connected()
    join(net, p, b, "bob", "pw")
    q = lan_player(net, "192.168.1.21")
    join(net, q, a, "carol")
    assert net.run(5, until=lambda: p.phase is Phase.CONNECTED and q.phase is Phase.CONNECTED)
    assert b.get_peers() == ["bob"] and a.get_peers() == ["carol"]


def test_the_password_is_proven_on_the_lan_too() -> None:
    net = FakeNet(seed=5)
    host = lan_host(net, "locked", password="right")
    wrong = lan_player(net)
    join(net, wrong, host, "mallory", "wrong")
    assert net.run(5, until=lambda: wrong.phase is Phase.IDLE)
    assert any("wrong password" in e.reason for e in net.take(wrong, ev.SessionTerminated))
    assert net.run(2, until=lambda: net.has(host, ev.PeerConnectionFailed))
    assert host.get_peers() == []
    none = lan_player(net, "192.168.1.21")
    join(net, none, host, "nopass")
    assert net.run(5, until=lambda: none.phase is Phase.IDLE)
    assert any("needs a password" in e.message for e in net.take(none, ev.Error))
    right = lan_player(net, "192.168.1.22")
    join(net, right, host, "alice", "right")
    assert net.run(5, until=lambda: right.phase is Phase.CONNECTED)


def test_the_password_never_crosses_the_lan() -> None:
    net = FakeNet(seed=6)
    seen: list[bytes] = []

    def tap(data: bytes, src: Address, dst: Address) -> bool:
        seen.append(data)
        return True

    net.filter = tap
    host = lan_host(net, "locked", password="hunter2-secret")
    p = lan_player(net)
    listing(net, p)
    join(net, p, host, "alice", "hunter2-secret")
    assert net.run(5, until=lambda: p.phase is Phase.CONNECTED)
    assert seen and not any(b"hunter2" in d for d in seen)


def test_joining_over_a_lossy_lan() -> None:
    net = FakeNet(SimSettings(loss=0.3, seed=7, duplicate=0.1, reorder=0.1))
    host = lan_host(net, "lossy")
    p = lan_player(net)
    join(net, p, host, "alice")
    assert net.run(10, until=lambda: p.phase is Phase.CONNECTED)


def test_a_host_that_does_not_answer_ends_the_join_with_a_clear_error() -> None:
    net = FakeNet(seed=8)
    p = lan_player(net)
    net.call(p, "init_lan_client", ("192.168.1.99", 40000), net.addr(p), "alice", "ghost",
             None)
    assert net.run(10, until=lambda: p.phase is Phase.IDLE)
    errors = [e.message for e in net.take(p, ev.Error)]
    assert any("192.168.1.99:40000 did not answer" in m for m in errors), errors


def test_an_empty_lan_gives_an_empty_list() -> None:
    net = FakeNet(seed=9)
    p = lan_player(net)
    assert listing(net, p) == []


def test_a_handshake_server_host_also_answers_on_the_lan() -> None:
    net = FakeNet(seed=10)
    host = net.add(None, ("192.168.1.10", 40000))
    net.call(host, "init_server", ("203.0.113.1", 5160), ("192.168.1.10", 40000), "both",
             None)
    assert net.run(3, until=lambda: host.phase is Phase.HOSTING)
    p = lan_player(net)
    assert [e["name"] for e in listing(net, p)] == ["both"]
    join(net, p, host, "alice")
    assert net.run(5, until=lambda: p.phase is Phase.CONNECTED)
    quiet = net.add(Config(lan_discovery=False), ("192.168.1.11", 40000))
    net.call(quiet, "init_server", ("203.0.113.1", 5160), ("192.168.1.11", 40000), "quiet",
             None)
    assert net.run(3, until=lambda: quiet.phase is Phase.HOSTING)
    assert [e["name"] for e in listing(net, p)] == ["both"]


def test_a_host_bound_to_loopback_answers_loopback_only() -> None:
    net = FakeNet(seed=11)
    host = net.add(None, ("192.168.1.10", 40000))
    host.init_lan_server(("127.0.0.1", 40000), "local", None, net.now, bound_host="127.0.0.1")
    p = lan_player(net)
    assert listing(net, p) == []


def test_discovery_answers_are_never_larger_than_the_query() -> None:
    # The largest announce: a 32-character name of four-byte characters.
    name = "\U0001d400" * 32
    announce = encode_lan(Kind.LAN_ANNOUNCE, [bytes(8), name, True])
    query = encode_lan(Kind.LAN_QUERY, [bytes(8)])
    assert len(query) == LAN_QUERY_SIZE and len(announce) <= LAN_QUERY_SIZE
    join_ = encode_lan(Kind.LAN_JOIN, [name, name, bytes(8), SHARE])
    intro = encode_lan(Kind.LAN_INTRO, [bytes(8), True, SHARE, bytes(48), 65535])
    assert len(join_) == LAN_JOIN_SIZE and len(intro) <= len(encode_lan(
        Kind.LAN_JOIN, ["a", "b", bytes(8), SHARE]))
    # A query or join cut short (no padding) is refused before anything answers it.
    short = query[:40]
    with pytest.raises(Exception, match="shorter"):
        decode_lan(Kind.LAN_QUERY, short)


def test_a_query_from_a_public_address_is_never_answered() -> None:
    net = FakeNet(seed=12)
    host = lan_host(net, "private")
    query = encode_lan(Kind.LAN_QUERY, [bytes(8)])
    join_ = encode_lan(Kind.LAN_JOIN, ["x", "private", bytes(8), SHARE])
    sent: list[tuple[Address, Address]] = []

    def tap(data: bytes, src: Address, dst: Address) -> bool:
        sent.append((src, dst))
        return True

    net.filter = tap
    for src in (("198.51.100.7", 1234), ("203.0.113.9", 53), ("8.8.8.8", 53)):
        net.inject(query, src, net.addr(host))
        net.inject(join_, src, net.addr(host))
    net.run(1)
    assert not any(src == net.addr(host) for src, _ in sent)
    assert host.blocked_count == 6 and host.remotes == {}


def test_answers_are_rate_limited() -> None:
    net = FakeNet(seed=13)
    host = lan_host(net, "busy")
    query = encode_lan(Kind.LAN_QUERY, [bytes(8)])
    out = 0

    def tap(data: bytes, src: Address, dst: Address) -> bool:
        nonlocal out
        out += src == net.addr(host)
        return True

    net.filter = tap
    for i in range(1000):
        net.inject(query, ("192.168.1.66", 1000 + i), net.addr(host))
    net.run(1)
    assert out <= 2 * ANSWERS_PER_SEC + ANSWERS_PER_SEC + 1


def test_an_unasked_announce_or_intro_is_dropped() -> None:
    net = FakeNet(seed=14)
    p = lan_player(net)
    net.inject(encode_lan(Kind.LAN_ANNOUNCE, [bytes(8), "fake", False]),
               ("192.168.1.66", 5000), net.addr(p))
    net.inject(encode_lan(Kind.LAN_INTRO, [bytes(8), False, SHARE, bytes(48), 5]),
               ("192.168.1.66", 5000), net.addr(p))
    net.run(0.5)
    assert p.blocked_count == 2 and p.phase is Phase.IDLE and not p.remotes


def test_the_join_token_never_travels_in_clear_on_the_lan() -> None:
    net = FakeNet(seed=19)
    seen: list[bytes] = []

    def tap(data: bytes, src: Address, dst: Address) -> bool:
        seen.append(data)
        return True

    net.filter = tap
    host = lan_host(net, "host")
    p = lan_player(net)
    join(net, p, host, "alice")
    assert net.run(5, until=lambda: p.phase is Phase.CONNECTED)
    token = host.remotes["alice"].token
    assert len(token) == 32 and token == p.remotes["host"].token
    assert not any(token in d for d in seen)


def test_a_forged_or_changed_intro_does_not_open() -> None:
    net = FakeNet(seed=20)
    host = lan_host(net, "host")
    p = lan_player(net)
    # Change the sealed token (or the flag it is bound to) in every LAN_INTRO on the way.
    changed: set[bytes] = set()

    def tamper(data: bytes, src: Address, dst: Address) -> bool:
        if data[3] == Kind.LAN_INTRO and data not in changed:
            fields = decode_lan(Kind.LAN_INTRO, data)
            fields[1] = not fields[1]
            forged = encode_lan(Kind.LAN_INTRO, fields)
            changed.add(forged)
            net.inject(forged, src, dst)
            return False
        return True

    net.filter = tamper
    join(net, p, host, "alice")
    net.run(0.5)
    net.filter = None
    assert p.blocked_count >= 1 and p.phase is Phase.JOINING and not p.remotes
    # The honest answer to the next resend gets through.
    assert net.run(6, until=lambda: p.phase is Phase.CONNECTED)
    # A weak (low-order) key share in a join admits nobody.
    net.inject(encode_lan(Kind.LAN_JOIN, ["weak", "host", bytes(8), bytes(32)]),
               ("192.168.1.66", 5000), net.addr(host))
    net.run(0.1)
    assert "weak" not in host.remotes


def test_a_joining_name_is_never_replaced_from_another_address() -> None:
    net = FakeNet(seed=15)
    host = lan_host(net, "host")
    p = lan_player(net)
    join(net, p, host, "alice")
    net.run(0.001)
    # Someone else on the LAN asks under the same name while alice joins.
    net.inject(encode_lan(Kind.LAN_JOIN, ["alice", "host", bytes(8), SHARE]),
               ("192.168.1.66", 5000), net.addr(host))
    assert net.run(5, until=lambda: p.phase is Phase.CONNECTED)
    assert host.get_peers() == ["alice"]


def test_half_open_lan_joins_are_bounded() -> None:
    net = FakeNet(seed=16)
    host = lan_host(net, "host")
    for i in range(100):
        net.inject(encode_lan(Kind.LAN_JOIN, [f"p{i}", "host", bytes(8), SHARE]),
                   ("192.168.1.66", 2000 + i), net.addr(host))
    net.run(0.1)
    assert len(host.remotes) <= 2  # two half-open joins a network
    p = lan_player(net)
    join(net, p, host, "alice")
    assert net.run(5, until=lambda: p.phase is Phase.CONNECTED)


def test_lan_misuse_raises_at_the_call() -> None:
    net = FakeNet(seed=17)
    p = lan_player(net)
    with pytest.raises(ValueError, match="local network"):
        net.call(p, "init_lan_client", ("198.51.100.3", 4000), net.addr(p), "a", "b", None)
    with pytest.raises(ValueError, match="differ"):
        net.call(p, "init_lan_client", ("192.168.1.3", 4000), net.addr(p), "a", "a", None)
    with pytest.raises(ValueError, match="no address"):
        net.call(p, "request_lan_list", [])
    with pytest.raises(ValueError):
        Config(lan_port=0)


def test_fuzzed_lan_datagrams_never_raise() -> None:
    net = FakeNet(seed=18)
    host = lan_host(net, "host", password="pw")
    p = lan_player(net)
    net.call(p, "request_lan_list", [BROADCAST])
    rng = random.Random(18)
    samples = [encode_lan(Kind.LAN_QUERY, [bytes(8)]),
               encode_lan(Kind.LAN_ANNOUNCE, [bytes(8), "x", True]),
               encode_lan(Kind.LAN_JOIN, ["x", "host", bytes(8), SHARE]),
               encode_lan(Kind.LAN_INTRO, [bytes(8), True, SHARE, bytes(48), 5])]
    for _ in range(2000):
        data = bytearray(rng.choice(samples))
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data))]
        for target in (host, p):
            target.receive_datagram(bytes(data), ("192.168.1.66", 999), net.now)
    for kind in LAN_SCHEMAS:
        for target in (host, p):
            target.receive_datagram(header(kind) + b"\xc1", ("192.168.1.66", 999), net.now)
    assert host.internal_errors == 0 and p.internal_errors == 0
    assert host.is_connected()

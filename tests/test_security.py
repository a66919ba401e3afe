"""One test per attack of docs/SECURITY.md that is not already covered elsewhere.

Each fails without its defence. Pure tests on the fake network unless said otherwise.
"""

from __future__ import annotations

import itertools

import msgpack

from framework.protocol import crypto
from framework.protocol import events as ev
from framework.protocol.config import Config
from framework.protocol.delivery import Delivery
from framework.protocol.requests import encode_request
from framework.protocol.session import Session
from framework.protocol.wire import DATA_HEADER, Kind, decode_control, encode_control, peek_kind
from server.core import HandshakeCore, ServerConfig
from tests.fakenet import HS, FakeNet, seeded_bytes

Address = tuple[str, int]
STRANGER: Address = ("192.0.2.99", 6666)


def session_pair(net: FakeNet, password: str | None = None) -> tuple[Session, Session]:
    host = net.add()
    net.call(host, "init_server", HS, net.addr(host), "host", password)
    assert net.run(5, lambda: net.has(host, ev.ConfirmedAsServer))
    alice = net.add()
    net.call(alice, "init_client", HS, net.addr(alice), "alice", "host", password)
    assert net.run(10, lambda: alice.is_connected() and host.get_peers() == ["alice"])
    net.take(host)
    net.take(alice)
    return host, alice


def capture(net: FakeNet, src: Session, dst: Session) -> list[bytes]:
    seen: list[bytes] = []

    def keep(data: bytes, s: Address, d: Address) -> bool:
        if s == net.addr(src) and d == net.addr(dst) and data[3] == Kind.DATA:
            seen.append(data)
        return True

    net.filter = keep
    return seen


def reliable(net: FakeNet, s: Session) -> list[object]:
    return [e.packet_data["message"] for e in net.take(s, ev.ReceivedReliableMessageFromPeer)]


def unreliable(net: FakeNet, s: Session) -> list[object]:
    return [e.packet_data["message"] for e in net.take(s, ev.ReceivedUnreliableMessageFromPeer)]


def test_forged_data_from_a_peers_address_is_blocked() -> None:
    net = FakeNet()
    host, alice = session_pair(net)
    # A well-formed DATA packet carrying a BYE, as an off-path attacker would build it:
    # it cannot know the session key, so its tag is wrong.
    bye_item = b"\x92" + msgpack.packb(15 << 4) + msgpack.packb([5, "spoofed"])
    for seq in range(0, 2000, 50):
        body = DATA_HEADER.pack(b"P2", 1, Kind.DATA, seq, 0, 0) + b"\x91" + bye_item
        net.inject(body + bytes(8), net.addr(alice), net.addr(host))
    net.run(1)
    assert host.get_peers() == ["alice"]
    assert host.blocked_count >= 40
    assert not net.has(alice, ev.SessionTerminated)


def test_tampered_and_replayed_data_is_dropped() -> None:
    net = FakeNet()
    host, alice = session_pair(net)
    seen = capture(net, alice, host)
    alice.send("host", "once", Delivery.UNRELIABLE, 0)
    net.run(0.5)
    assert unreliable(net, host) == ["once"]
    [packet] = [d for d in seen if b"once" in d]
    net.filter = None
    blocked = host.blocked_count
    for _ in range(3):
        net.inject(packet, net.addr(alice), net.addr(host))  # replay
    flipped = bytearray(packet)
    flipped[packet.index(b"once")] ^= 0x20
    net.inject(bytes(flipped), net.addr(alice), net.addr(host))  # tampering
    net.run(0.5)
    assert unreliable(net, host) == []  # neither delivered again, nor altered
    assert host.blocked_count == blocked + 1  # the duplicates are dropped quietly
    # an old packet replayed after 1024 newer ones is refused outright
    for i in range(1100):
        alice.send("host", i, Delivery.UNRELIABLE, 0)
        net.step()
    net.run(0.5)
    net.take(host)
    blocked = host.blocked_count
    net.inject(packet, net.addr(alice), net.addr(host))
    net.run(0.2)
    assert unreliable(net, host) == [] and host.blocked_count == blocked + 1


def test_a_datagram_reflected_back_to_its_sender_is_refused() -> None:
    net = FakeNet()
    host, alice = session_pair(net)
    seen = capture(net, host, alice)
    host.send("alice", "to alice", Delivery.UNRELIABLE, 0)
    net.run(0.5)
    [packet] = [d for d in seen if b"to alice" in d]
    net.filter = None
    blocked = host.blocked_count
    net.inject(packet, net.addr(alice), net.addr(host))  # as if alice had sent it
    net.run(0.2)
    assert unreliable(net, host) == [] and host.blocked_count == blocked + 1


def test_spoofed_requests_create_no_state_on_the_handshake_server() -> None:
    hs = HandshakeCore(ServerConfig(), seeded_bytes(3))
    for i in range(500):
        src = (f"198.51.{i // 250}.{i % 250}", 1000 + i)
        # The spoofer never sees the COOKIE answer, so it can only send requests without it.
        out = hs.receive(encode_request(Kind.REGISTER, i, [f"squat{i}", "", 0, False, 60.0]),
                         src, 0.0)
        assert [peek_kind(d) for d, _ in out] == [Kind.COOKIE]
        hs.receive(encode_request(Kind.JOIN, i, ["squat0", f"u{i}", "", 0]), src, 0.0)
        hs.receive(encode_request(Kind.RELAY_REQUEST, i, ["squat0", f"u{i}"]), src, 0.0)
    assert hs.registrations == {} and hs.relays == {}
    assert hs.stats.introductions == 0
    # a forged cookie does not pass either, nor one made for another address
    [(cookie_reply, _)] = hs.receive(encode_request(Kind.REGISTER, 1, ["x", "", 0, False, 60.0]),
                                     STRANGER, 0.0)
    cookie = decode_control(Kind.COOKIE, cookie_reply)[1]
    out = hs.receive(encode_request(Kind.REGISTER, 1, ["x", "", 0, False, 60.0], cookie),
                     ("192.0.2.100", 6666), 0.0)
    assert [peek_kind(d) for d, _ in out] == [Kind.COOKIE] and hs.registrations == {}
    # ... and cookies grow stale
    out = hs.receive(encode_request(Kind.REGISTER, 1, ["x", "", 0, False, 60.0], cookie),
                     STRANGER, 100.0)
    assert [peek_kind(d) for d, _ in out] == [Kind.COOKIE]


def test_no_answer_is_larger_than_its_request() -> None:
    hs = HandshakeCore(ServerConfig(), seeded_bytes(4))
    sizes: list[tuple[int, int]] = []

    def ask(kind: Kind, fields: list[object], src: Address, cookie: bytes = b"") -> bytes:
        data = encode_request(kind, 1, fields, cookie)
        out = hs.receive(data, src, 0.0)
        mine = [d for d, to in out if to == src]
        sizes.extend((len(data), len(d)) for d in mine)
        return mine[0] if mine else b""

    for i in range(60):
        src = (f"198.51.100.{i + 1}", 2000)
        c = decode_control(Kind.COOKIE, ask(Kind.REGISTER, ["n" * 32, "", 0, True, 60.0], src))[1]
        ask(Kind.REGISTER, [f"{'n' * 29}{i:03d}", "", 0, True, 60.0], src, c)
    for page in range(4):
        ask(Kind.LIST, [page], STRANGER)
    ask(Kind.JOIN, ["nobody-by-that-name-at-all-xxxxx", "u" * 32, "", 0], STRANGER, b"")
    ask(Kind.REFRESH, ["n" * 32, b"\x00" * 16], STRANGER)
    assert sizes and all(reply <= request for request, reply in sizes)
    # a request that skips the padding gets nothing back
    raw = encode_control(Kind.LIST, [1, 0, b""])
    assert hs.receive(raw, STRANGER, 0.0) == []
    assert hs.stats.amplification_refused >= 1


def test_a_flooding_source_is_rate_limited() -> None:
    hs = HandshakeCore(ServerConfig(requests_per_sec_per_ip=20, request_burst=40),
                       seeded_bytes(5))
    data = encode_request(Kind.LIST, 1, [0])
    answered = sum(bool(hs.receive(data, STRANGER, 0.0)) for _ in range(1000))
    assert answered == 40
    answered = sum(bool(hs.receive(data, STRANGER, 1.0)) for _ in range(1000))
    assert answered == 20
    assert hs.receive(data, ("192.0.2.1", 1), 1.0)  # others are still served
    assert hs.stats.rate_limited == 2000 - 60


def test_the_rate_table_and_every_store_are_bounded() -> None:
    cfg = ServerConfig(max_tracked_sources=100, max_introductions_per_ip=3)
    hs = HandshakeCore(cfg, seeded_bytes(6))
    for i in range(5000):
        hs.receive(encode_request(Kind.LIST, 1, [0]), (f"10.{i // 65536}.{i // 256 % 256}."
                                                       f"{i % 256}", 1), 0.0)
    assert len(hs._buckets) <= 100  # internal, but the bound is the point
    net = FakeNet(server_config=cfg)
    host = net.add()
    net.call(host, "init_server", HS, net.addr(host), "host", None)
    assert net.run(5, lambda: net.has(host, ev.ConfirmedAsServer))
    for i in range(10):
        joiner = net.add(address=("192.0.2.50", 3000 + i))  # one IP, many ports
        net.call(joiner, "init_client", HS, net.addr(joiner), f"j{i}", "host", None)
    net.run(0.5)
    assert hs is not net.hs and len(net.hs._intros) == 3


def test_a_client_cannot_aim_the_server_player_at_a_public_address() -> None:
    net = FakeNet()
    host = net.add()
    net.call(host, "init_server", HS, net.addr(host), "host", None)
    assert net.run(5, lambda: net.has(host, ev.ConfirmedAsServer))
    victim = ("203.0.113.200", 80)
    hits: list[bytes] = []
    net.filter = lambda data, src, dst: (hits.append(data) if dst == victim else None) or True
    mallory = net.add(address=("198.51.100.66", 5000))
    net.call(mallory, "init_client", HS, victim, "mallory", "host", None)  # lies about its LAN
    net.run(6)
    assert hits == []  # the host only punched mallory's real (public) address


def test_online_password_guessing_is_slowed_down() -> None:
    net = FakeNet()
    host = net.add()
    net.call(host, "init_server", HS, net.addr(host), "host", "right")
    assert net.run(5, lambda: net.has(host, ev.ConfirmedAsServer))
    guesser_ip = "198.51.100.77"
    judged: list[float] = []
    for i in range(4):
        g = net.add(address=(guesser_ip, 7000 + i))
        net.call(g, "init_client", HS, net.addr(g), f"g{i}", "host", f"guess{i}")
        assert net.run(30, lambda g=g: net.has(g, ev.SessionTerminated))  # type: ignore[misc]
        if any("wrong password" in e.message for e in net.take(g, ev.Error)):
            judged.append(net.now)
    gaps = [b - a for a, b in itertools.pairwise(judged)]
    # each wrong answer doubles the wait before the same address is heard again: the
    # second guess waits 1 s, the third 2 s, and by the fourth (4 s) the guesser's own
    # join gives up before it is heard at all
    assert len(judged) == 3 and gaps[0] >= 1.0 and gaps[1] >= 2.0
    # another address is not slowed down by it
    ok = net.add(address=("198.51.100.78", 7100))
    net.call(ok, "init_client", HS, net.addr(ok), "friend", "host", "right")
    t0 = net.now
    assert net.run(5, ok.is_connected) and net.now - t0 < 1.0


def test_a_forged_challenge_cannot_make_a_right_password_look_wrong() -> None:
    net = FakeNet()
    host = net.add()
    net.call(host, "init_server", HS, net.addr(host), "host", "pw")
    assert net.run(5, lambda: net.has(host, ev.ConfirmedAsServer))
    alice = net.add()

    def forge(data: bytes, src: Address, dst: Address) -> bool:
        if dst == net.addr(host) and data[3] == Kind.HELLO:
            fake = encode_control(Kind.CHALLENGE, [b"f" * 16, True, b"m" * 16])
            net.inject(fake, net.addr(host), net.addr(alice))  # spoofed from the host
        return True

    net.filter = forge
    net.call(alice, "init_client", HS, net.addr(alice), "alice", "host", "pw")
    assert net.run(10, alice.is_connected)
    assert alice.blocked_count >= 1


def test_the_password_key_is_expensive_to_guess_offline() -> None:
    assert crypto.SCRYPT_N >= 1 << 14 and crypto.SCRYPT_R >= 8
    k1 = crypto.password_key("pw", "host-a")
    assert k1 != crypto.password_key("pw", "host-b")  # salted with the server name
    assert len(k1) == 32


def test_spoofed_quit_cannot_end_a_session_and_real_quit_does() -> None:
    net = FakeNet()
    host, alice = session_pair(net)
    seen = capture(net, alice, host)
    for i in range(5):
        alice.send("host", i, Delivery.RELIABLE_ORDERED, 0)
    net.run(0.5)
    net.filter = None
    # replaying any captured packet of alice's cannot end her session either
    for p in seen:
        net.inject(p, STRANGER, net.addr(host))
        net.inject(p, net.addr(alice), net.addr(host))
    net.run(0.5)
    assert host.get_peers() == ["alice"]
    net.call(alice, "quit_connection")
    assert net.run(1, lambda: host.get_peers() == [])
    assert isinstance(Config(), Config)

"""The attacks on players, from the attacker's seat: one test (at least) per attack class
of docs/SECURITY.md. The handshake server's own attacks are in test_server_attacks.py.

The fake network lets the attacker see, replay, redirect and spoof datagrams; an
*authenticated* attacker is a real session of the game (a joined player, or the host)
that sends any plaintext it likes under its valid keys.
"""

from __future__ import annotations

import msgpack
import pytest

from framework.protocol import events as ev
from framework.protocol.addresses import Address
from framework.protocol.config import Config
from framework.protocol.constants import GUESS_BURST, GUESS_INTERVAL, SYSTEM_CHANNEL
from framework.protocol.crypto import (
    KeyPair,
    Pake,
    handshake_transcript,
    session_keys,
)
from framework.protocol.delivery import Delivery
from framework.protocol.hschannel import ServerKeys
from framework.protocol.session import Session
from framework.protocol.wire import (
    AUTH_SIZE,
    SYS_BYE,
    SYS_FORWARD,
    SYS_FORWARD_FAILED,
    HsKind,
    Kind,
    decode_control,
    encode_control,
)
from tests.fakenet import HS, FakeNet, seeded_bytes

STRANGER: Address = ("192.0.2.99", 6666)
DEEP = b"\x91" * 1000 + b"\xc0"  # a list nested 1,000 deep, as msgpack


def start_host(net: FakeNet, password: str | None = None, name: str = "host",
               config: Config | None = None) -> Session:
    host = net.add(config)
    net.call(host, "init_server", HS, net.addr(host), name, password)
    assert net.run(5, lambda: net.has(host, ev.ConfirmedAsServer))
    net.take(host)
    return host


def join(net: FakeNet, name: str, password: str | None = None,
         address: Address | None = None, server: str = "host") -> Session:
    client = net.add(address=address)
    net.call(client, "init_client", HS, net.addr(client), name, server, password)
    return client


def session_pair(net: FakeNet, password: str | None = None) -> tuple[Session, Session]:
    host = start_host(net, password)
    alice = join(net, "alice", password)
    assert net.run(10, lambda: alice.is_connected() and host.get_peers() == ["alice"])
    net.take(host)
    net.take(alice)
    return host, alice


def capture(net: FakeNet, src: Address | None = None, dst: Address | None = None
            ) -> list[tuple[bytes, Address, Address]]:
    seen: list[tuple[bytes, Address, Address]] = []

    def keep(data: bytes, s: Address, d: Address) -> bool:
        if (src is None or s == src) and (dst is None or d == dst):
            seen.append((data, s, d))
        return True

    net.filter = keep
    return seen


def unreliable(net: FakeNet, s: Session) -> list[object]:
    return [e.packet_data["message"] for e in net.take(s, ev.ReceivedUnreliableMessageFromPeer)]


def still_talking(net: FakeNet, a: Session, b: Session, b_name: str) -> bool:
    net.take(b)
    a.send(b_name, "still here", Delivery.RELIABLE_ORDERED, 0)
    return net.run(3, lambda: net.has(b, ev.ReceivedReliableMessageFromPeer))


# --- 2. one datagram from a joined player (or a hostile host) crashes nobody -----------


def test_an_authenticated_player_sending_a_deeply_nested_bye_crashes_nothing() -> None:
    net = FakeNet()
    host, alice = session_pair(net)
    bob = join(net, "bob")
    assert net.run(10, lambda: bob.is_connected() and len(host.get_peers()) == 2)
    conn = alice.connection("host")
    assert conn is not None
    # valid keys, any plaintext: [BYE, <1,000 levels of lists>] on the engine's channel
    conn.send(Delivery.UNRELIABLE, SYSTEM_CHANNEL, b"\x92" + bytes([SYS_BYE]) + DEEP)
    net.run(1)
    assert host.internal_errors == 0 and host.blocked_count >= 1
    assert set(host.get_peers()) == {"alice", "bob"}  # dropped; the session goes on
    assert still_talking(net, alice, host, "host")
    # a reliable one is resent (and dropped) for ever: that hurts only its sender
    conn.send(Delivery.RELIABLE_ORDERED, 0, b"\x92\x01" + DEEP, 7, None)
    net.run(2)
    assert host.internal_errors == 0
    assert still_talking(net, bob, host, "host")


def test_a_hostile_host_sending_a_deeply_nested_forward_failure_crashes_nothing() -> None:
    net = FakeNet()
    host, alice = session_pair(net)
    conn = host.connection("alice")
    assert conn is not None
    for poison in (b"\x93" + bytes([SYS_FORWARD_FAILED]) + b"\x01" + DEEP,
                   msgpack.packb([SYS_FORWARD_FAILED, 1, {"not": "a name"}]),
                   msgpack.packb([SYS_BYE, ["not", "text"]])):
        conn.send(Delivery.UNRELIABLE, SYSTEM_CHANNEL, poison)
        net.run(0.2)
    assert alice.internal_errors == 0 and alice.blocked_count >= 2
    assert not net.has(alice, ev.ReliableMessageTimeout)
    # a BYE whose reason is not text still ends the session, cleanly, with no reason shown
    assert [e.reason for e in net.take(alice, ev.SessionTerminated)] == [
        "the server player left"]


# --- 3. nobody who saw a punch can take a session over; traffic is encrypted -----------


def test_traffic_is_encrypted_and_a_forged_punch_answer_moves_nothing() -> None:
    net = FakeNet()
    seen = capture(net)
    host, alice = session_pair(net)
    alice.send("host", b"TOP-SECRET-MOVE", Delivery.RELIABLE_ORDERED, 0)
    net.run(0.5)
    assert seen and not any(b"TOP-SECRET-MOVE" in d for d, _, _ in seen)
    punches = [(d, s, t) for d, s, t in seen if d[3] in (Kind.PUNCH, Kind.PUNCH_ACK)]
    assert punches
    attacker: Address = ("192.0.2.66", 4444)
    for data, _, dst in punches:  # everything captured, sent again from a new address
        net.inject(data, attacker, dst)
    forged = decode_control(Kind.PUNCH, punches[0][0])
    forged[2] = b"n" * 8  # a new nonce: the MAC no longer fits
    net.inject(encode_control(Kind.PUNCH_ACK, forged), attacker, net.addr(alice))
    net.run(2)
    for s in (host, alice):
        assert not net.has(s, ev.PathChanged)
    assert host.get_peer("alice") == {"name": "alice", "address": net.addr(alice)}
    assert alice.get_server_address() == net.addr(host)
    assert still_talking(net, alice, host, "host")


def test_a_redirected_datagram_is_validated_before_any_traffic_moves() -> None:
    """An on-path attacker re-sends alice's next datagram from its own address (as a NAT
    rebinding would look): the host answers only with a challenge, within what the
    attacker sent, and keeps sending to alice."""
    net = FakeNet()
    host, alice = session_pair(net)
    attacker: Address = ("192.0.2.66", 4444)
    stolen: list[bytes] = []
    to_attacker: list[bytes] = []

    def on_path(data: bytes, src: Address, dst: Address) -> bool:
        if src == net.addr(alice) and dst == net.addr(host) and data[3] == Kind.DATA \
                and not stolen:
            stolen.append(data)
            return False  # taken off the wire...
        if dst == attacker:
            to_attacker.append(data)
        return True

    net.filter = on_path
    alice.send("host", "moved?", Delivery.RELIABLE_ORDERED, 0)
    net.run(0.2)
    net.inject(stolen[0], attacker, net.addr(host))  # ...and delivered from elsewhere
    net.run(3)
    assert not net.has(host, ev.PathChanged)
    assert sum(map(len, to_attacker)) <= len(stolen[0])  # no more than it sent
    assert all(d[3] == Kind.DATA for d in to_attacker)  # only the encrypted challenge
    assert host.get_peer("alice") == {"name": "alice", "address": net.addr(alice)}
    assert still_talking(net, host, alice, "alice")


# --- 4. amplification: nothing unauthenticated adds a destination --------------------


def test_replayed_punches_from_a_thousand_spoofed_sources_are_answered_one_for_one() -> None:
    net = FakeNet()
    host = start_host(net)
    seen = capture(net)
    alice = join(net, "alice")
    assert net.run(10, alice.is_connected)
    [punch, *_] = [d for d, s, _ in seen if d[3] == Kind.PUNCH and s == net.addr(alice)]
    victims = {(f"203.0.113.{i % 250}", 1000 + i) for i in range(1000)}
    sent_to_victims: list[bytes] = []
    net.filter = lambda d, s, t: (sent_to_victims.append(d) if t in victims else None) or True
    for v in victims:
        net.inject(punch, v, net.addr(host))
    net.run(6)
    # each spoofed punch got one answer of its own size, and no victim is punched again
    assert len(sent_to_victims) <= len(victims)
    assert sum(map(len, sent_to_victims)) <= len(victims) * len(punch)


def test_a_spoofed_introduction_is_dropped() -> None:
    net = FakeNet()
    host = start_host(net)
    # an introduction naming a victim, sealed under a key that is not the server's
    impostor = ServerKeys(KeyPair.generate(seeded_bytes(66)), seeded_bytes(67))
    target: Address = ("203.0.113.200", 80)
    share = host.rendezvous.tracker.channels[HS].share
    fake = impostor.seal_reply(share, HsKind.INTRODUCE, 0,
                               ["victim", [[target[0], target[1], 0]], False, b"j" * 32, 30.0])
    hits: list[bytes] = []
    net.filter = lambda d, s, t: (hits.append(d) if t == target else None) or True
    for _ in range(8):
        net.inject(fake, HS, net.addr(host))  # "from" the handshake server's address
    net.run(3)
    assert hits == [] and host.blocked_count >= 8 and host.get_peers() == []


def test_a_client_cannot_aim_the_server_player_at_a_public_address() -> None:
    net = FakeNet()
    start_host(net)
    victim: Address = ("203.0.113.200", 80)
    hits: list[bytes] = []
    net.filter = lambda data, src, dst: (hits.append(data) if dst == victim else None) or True
    mallory = net.add(address=("198.51.100.66", 5000))
    net.call(mallory, "init_client", HS, victim, "mallory", "host", None)  # lies about its LAN
    net.run(6)
    assert hits == []  # the host only punched mallory's real (public) address


# --- 5. a wrong password locks nobody else out ------------------------------------------


def test_guesses_from_one_network_are_limited_and_a_right_player_there_still_gets_in() -> None:
    net = FakeNet()
    host = start_host(net, password="right")
    seen = capture(net, src=net.addr(host))
    ip = "198.51.100.77"
    wrong = 0
    for i in range(8):  # one guesser after another, from one address, as fast as it can
        g = join(net, f"g{i}", f"guess{i}", address=(ip, 7000 + i))
        assert net.run(30, lambda g=g: net.has(g, ev.SessionTerminated))  # type: ignore[misc]
        wrong += any("wrong password" in e.message for e in net.take(g, ev.Error))
    elapsed = net.now
    challenges = sum(1 for d, _, _ in seen if d[3] == Kind.CHALLENGE)
    assert challenges <= GUESS_BURST + elapsed / GUESS_INTERVAL + 1  # guesses were limited
    assert wrong >= 1  # and a failure is told as such
    # a player with the right password, behind the same address, is never turned away
    friend = join(net, "friend", "right", address=(ip, 7100))
    assert net.run(30, friend.is_connected)
    assert not net.has(friend, ev.SessionTerminated)
    # another network is not slowed down at all
    other = join(net, "other", "right", address=("198.51.100.78", 7100))
    t0 = net.now
    assert net.run(5, other.is_connected) and net.now - t0 < 1.0


def test_an_ipv6_guesser_rotating_through_its_64_is_one_network() -> None:
    net = FakeNet()
    host = start_host(net, password="right")
    seen = capture(net, src=net.addr(host))
    t0 = net.now
    for i in range(8):
        g = join(net, f"v6g{i}", "nope", address=(f"2001:db8:1:2::{i + 1:x}", 7000))
        net.run(30, lambda g=g: net.has(g, ev.SessionTerminated))  # type: ignore[misc]
    challenges = sum(1 for d, _, _ in seen if d[3] == Kind.CHALLENGE)
    assert challenges <= GUESS_BURST + (net.now - t0) / GUESS_INTERVAL + 1


# --- 6. joins cannot be blocked cheaply --------------------------------------------------


def test_half_open_joins_from_one_network_cannot_keep_a_player_out() -> None:
    net = FakeNet()
    host = start_host(net)
    attacker_ip = "198.51.100.99"
    for i in range(24):  # 3 joins a second under rotating names, never finishing
        bot = join(net, f"bot{i}", address=(attacker_ip, 9000 + i))
        net.paused.add(net.addr(bot))  # it never answers a punch
        net.run(1 / 3)
    alice = join(net, "alice")
    assert net.run(10, alice.is_connected)
    assert host.get_peers() == ["alice"]


# --- 7. replays change nothing ------------------------------------------------------------


def test_replayed_and_tampered_data_is_dropped_and_refreshes_no_timer() -> None:
    net = FakeNet()
    host, alice = session_pair(net)
    taken: list[bytes] = []

    def intercept(data: bytes, src: Address, dst: Address) -> bool:
        if src == net.addr(alice) and data[3] == Kind.DATA:
            taken.append(data)
            return False
        return True

    net.filter = intercept
    alice.send("host", "once", Delivery.UNRELIABLE, 0)
    net.run(0.2)
    net.filter = None
    assert taken
    for packet in taken:
        flipped = bytearray(packet)
        flipped[-20] ^= 0x20
        net.inject(bytes(flipped), net.addr(alice), net.addr(host))  # tampered: blocked
    net.run(0.2)
    assert unreliable(net, host) == [] and host.blocked_count == len(taken)
    for packet in taken:
        net.inject(packet, net.addr(alice), net.addr(host))  # the real ones
    net.run(0.2)
    assert unreliable(net, host) == ["once"]
    for _ in range(3):
        for packet in taken:
            net.inject(packet, net.addr(alice), net.addr(host))  # replays: dropped quietly
    net.run(0.5)
    assert unreliable(net, host) == [] and host.blocked_count == len(taken)
    packet = taken[0]
    # alice crashes; her datagram replayed every 10 s must not keep her in the game
    net.paused.add(net.addr(alice))
    for _ in range(4):
        net.run(10)
        net.inject(packet, net.addr(alice), net.addr(host))
    assert [e.peer_name for e in net.take(host, ev.PeerTimeout)] == ["alice"]
    assert host.get_peers() == []


def test_a_datagram_reflected_back_to_its_sender_is_refused() -> None:
    net = FakeNet()
    host, alice = session_pair(net)
    seen = capture(net, src=net.addr(host), dst=net.addr(alice))
    host.send("alice", "to alice", Delivery.UNRELIABLE, 0)
    net.run(0.5)
    packet = next(d for d, _, _ in seen if d[3] == Kind.DATA)
    net.filter = None
    net.inject(packet, net.addr(alice), net.addr(host))  # as if alice had sent it
    net.run(0.2)
    # each direction has its own key: it does not open (or is a number already seen)
    assert unreliable(net, host) == [] and host.internal_errors == 0
    assert still_talking(net, alice, host, "host")


def test_handshake_packets_replayed_from_another_address_achieve_nothing() -> None:
    net = FakeNet()
    seen = capture(net)
    host, _ = session_pair(net, password="pw")
    for data, _, dst in [x for x in seen if x[0][3] in (Kind.HELLO, Kind.AUTH)]:
        net.inject(data, STRANGER, dst)
    net.run(2)
    assert host.get_peers() == ["alice"]
    assert not net.has(host, ev.ClientConfirmed) and not net.has(host, ev.PeerConnectionFailed)


def test_spoofed_quit_cannot_end_a_session_and_real_quit_does() -> None:
    net = FakeNet()
    host, alice = session_pair(net)
    seen = capture(net, src=net.addr(alice), dst=net.addr(host))
    for i in range(5):
        alice.send("host", i, Delivery.RELIABLE_ORDERED, 0)
    net.run(0.5)
    net.filter = None
    for p, _, _ in seen:  # replaying any captured packet of alice's ends nothing
        net.inject(p, STRANGER, net.addr(host))
        net.inject(p, net.addr(alice), net.addr(host))
    net.run(0.5)
    assert host.get_peers() == ["alice"]
    net.call(alice, "quit_connection")
    assert net.run(1, lambda: host.get_peers() == [])


# --- 8. no offline guessing; no look-alike names ------------------------------------------


def test_look_alike_and_invisible_names_are_refused_at_the_call() -> None:
    net = FakeNet()
    s = net.add()
    for bad in ["arena\u3164", "\u0430rena", "are\u200bna", "arena\u202e", " arena"]:
        with pytest.raises(ValueError):
            s.init_server(HS, net.addr(s), bad, None, 0.0)


def test_a_look_alike_host_gets_one_guess_and_no_offline_test() -> None:
    """A look-alike host (or the handshake server's operator) runs the handshake with its
    own guess. With the whole transcript and its own secrets, trying other passwords
    offline, the right one included, reproduces nothing the client sent."""
    token = b"j" * 32

    def client_confirm(impostor_guess: str, fixed: bytes) -> tuple[bytes, KeyPair, Pake]:
        rnd = seeded_bytes(1)
        ckey, cpake = KeyPair.generate(rnd), Pake("correct horse", "alice", "arena", True, rnd)
        ikey = KeyPair.generate(seeded_bytes(2))
        ipake = Pake(impostor_guess, "alice", "arena", False, lambda n: fixed[:n])
        th = handshake_transcript("alice", "arena", token, ckey.public, cpake.message,
                                  ikey.public, ipake.message)
        keys = session_keys(ckey.exchange(ikey.public), cpake.finish(ipake.message), token,
                            th)
        return keys.client_confirm, ckey, cpake

    fixed = bytes(range(7, 71))
    confirm, ckey, cpake = client_confirm("wrong-guess", fixed)
    ikey = KeyPair.generate(seeded_bytes(2))
    for candidate in ["wrong-guess", "correct horse", "hunter2", ""]:
        # the impostor's own secret scalar (same randomness) with each candidate
        pake = Pake(candidate, "alice", "arena", False, lambda n: fixed[:n])
        th = handshake_transcript("alice", "arena", token, ckey.public, cpake.message,
                                  ikey.public, pake.message)
        keys = session_keys(ikey.exchange(ckey.public), pake.finish(cpake.message), token, th)
        assert keys.client_confirm != confirm
    # (and the exchange works: an impostor who guessed right would have matched)
    right, ckey2, cpake2 = client_confirm("correct horse", fixed)
    pake = Pake("correct horse", "alice", "arena", False, lambda n: fixed[:n])
    th = handshake_transcript("alice", "arena", token, ckey2.public, cpake2.message,
                              ikey.public, pake.message)
    assert session_keys(ikey.exchange(ckey2.public), pake.finish(cpake2.message), token,
                        th).client_confirm == right


def test_a_look_alike_host_is_told_as_a_wrong_password_not_a_lost_connection() -> None:
    net = FakeNet()
    start_host(net, password="wrong-guess", name="arena")
    victim = join(net, "alice", "correct horse", server="arena")
    assert net.run(10, lambda: net.has(victim, ev.SessionTerminated))
    assert "wrong password" in net.take(victim, ev.Error)[0].message


def test_the_join_token_never_travels_in_clear() -> None:
    net = FakeNet()
    seen = capture(net)
    host, _ = session_pair(net)
    remote = host.remotes["alice"]
    assert len(remote.token) == 32
    assert not any(remote.token in d for d, _, _ in seen)


def test_a_spoofed_auth_cannot_drop_a_connected_or_joining_player() -> None:
    net = FakeNet()
    host, alice = session_pair(net, password="pw")
    for _ in range(3):  # any confirmation, from the player's own address
        net.inject(encode_control(Kind.AUTH, [bytes(16), bytes(16)], AUTH_SIZE),
                   net.addr(alice), net.addr(host))
    net.run(1)
    assert host.get_peers() == ["alice"] and "alice" in host.remotes
    assert not net.has(host, ev.PeerConnectionFailed)
    assert still_talking(net, alice, host, "host")


def test_one_bad_forwarded_message_loses_nothing_else_of_its_datagram() -> None:
    net = FakeNet()
    host = start_host(net)
    alice, mallory = join(net, "alice"), join(net, "mallory")
    assert net.run(10, lambda: alice.is_connected() and mallory.is_connected()
                   and len(host.get_peers()) == 2 and len(alice.get_peers()) == 2)
    net.take(alice)
    conn = mallory.connection("host")
    assert conn is not None
    # a forward to alice whose payload is not msgpack: the host passes it on as it is
    conn.send(Delivery.UNRELIABLE, SYSTEM_CHANNEL,
              msgpack.packb([SYS_FORWARD, "alice", 3, 0, 7, b"\xc1"]))
    net.run(0.05)
    host.send("alice", "important", Delivery.RELIABLE_ORDERED, 0)
    net.run(2)
    got = [e.packet_data["message"] for e in net.take(alice, ev.ReceivedReliableMessageFromPeer)]
    assert got == ["important"] and alice.internal_errors == 0

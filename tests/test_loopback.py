"""The whole seed API over real UDP sockets on loopback, against a real handshake server."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

import numpy as np
import pygame
import pytest

from framework import HS_SERVER_NAME, Config, Delivery, NotConnected, Peer, events
from framework.protocol.crypto import KeyPair
from framework.protocol.hschannel import ServerChannel
from framework.protocol.wire import (
    HELLO_SIZE,
    REQUEST_SIZE,
    HsKind,
    Kind,
    data_prefix,
    encode_control,
    encode_cookie_request,
)
from server import HandshakeServer
from tests.helpers import Recorder, key_fingerprint, server_process

LOCAL = ("127.0.0.1", 0)
FAST = dict(secs_between_peer_checks=1.0, secs_to_await_reply=0.2, attempts_before_expiration=3)


@pytest.fixture
def hs() -> object:
    srv = HandshakeServer("127.0.0.1", 0)
    srv.start()
    yield srv
    srv.stop()


def test_every_method_and_event_against_a_server_process() -> None:
    with server_process() as (_, hs_addr):
        host = Peer(Config(emit_packet_events=True))
        alice, bob = Peer(), Peer()
        rec = Recorder(host, alice, bob)
        assert host.i_am_server() is None and host.get_peers() == []
        assert host.get_server_name() is None and host.get_user_name() is None
        assert host.get_server_address() is None and not host.is_connected()

        host.init_server(list(hs_addr), LOCAL, "host", password="pw")
        assert rec.run(lambda: rec.has(host, events.CONFIRMED_AS_SERVER))
        assert rec.of(host, events.CONFIRMED_AS_SERVER)[0].handshake_address == hs_addr
        assert rec.has(host, events.PACKET_SENT) and rec.has(host, events.PACKET_RECEIVED)
        first, second = (e.packet_data for e in rec.of(host, events.PACKET_SENT)[:2])
        assert first["kind"] == "COOKIE_REQUEST" and first["address"] == hs_addr
        assert second["kind"] == "SEALED_REQUEST"  # the registration, encrypted
        assert host.get_server_address() == host.local_address

        alice.request_server_list(hs_addr)
        assert rec.run(lambda: rec.has(alice, events.RECEIVED_SERVER_LIST))
        lst = rec.of(alice, events.RECEIVED_SERVER_LIST)[0]
        assert lst.server_names == ["host"]
        assert lst.servers == [{"name": "host", "password_required": True}]

        alice.init_client(hs_addr, LOCAL, "alice", "host", password="pw")
        bob.init_client(hs_addr, LOCAL, "bob", "host", password="pw")
        assert rec.run(lambda: alice.is_connected() and bob.is_connected()
                       and len(host.get_peers()) == 2 and len(alice.get_peers()) == 2)
        assert sorted(e.new_peer for e in rec.of(host, events.CLIENT_CONFIRMED)) == ["alice", "bob"]
        assert rec.of(alice, events.CONFIRMED_AS_CLIENT)[0].server_address == host.local_address
        assert sorted(rec.of(host, events.PEER_LIST_UPDATED)[-1].peer_names) == ["alice", "bob"]
        assert sorted(alice.get_peers()) == ["bob", "host"]
        assert alice.i_am_server() is False and host.i_am_server() is True
        assert alice.get_server_name() == "host" and alice.get_user_name() == "alice"
        assert alice.get_server_address() == host.local_address
        assert host.get_peer("alice") == {"name": "alice", "address": alice.local_address}
        assert alice.get_peer("bob") == {"name": "bob", "address": bob.local_address}

        # messages: the seed's two kinds, the general send, numpy, client to client
        rec.clear()
        mid = alice.send_reliable_message_to_peer("host", {"hello": [1, 2]})
        host.send_unreliable_message_to_peer("alice", "ping")
        arr = np.arange(12, dtype=np.float32).reshape(3, 4)
        host.send("bob", arr, Delivery.RELIABLE_UNORDERED, channel=3)
        mid2 = alice.send("bob", "via host", Delivery.RELIABLE_ORDERED, channel=1)
        host.send("alice", 42, Delivery.UNRELIABLE_SEQUENCED, channel=2)
        assert mid2 == mid + 1
        assert rec.run(lambda: len(rec.of(bob, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER)) == 2
                       and rec.has(host, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER)
                       and len(rec.of(alice, events.RECEIVED_UNRELIABLE_MESSAGE_FROM_PEER)) == 2)
        [m] = rec.of(host, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER)
        assert m.packet_data["from"] == "alice" and m.packet_data["to"] == "host"
        assert m.packet_data["message"] == {"hello": [1, 2]} and m.packet_data["message_id"] == mid
        bob_got = {e.packet_data["from"]: e.packet_data for e in
                   rec.of(bob, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER)}
        np.testing.assert_array_equal(bob_got["host"]["message"], arr)
        assert bob_got["host"]["message"].dtype == np.float32
        assert bob_got["alice"]["message"] == "via host"
        assert bob_got["alice"]["message_id"] == mid2
        unrel = [e.packet_data for e in rec.of(alice, events.RECEIVED_UNRELIABLE_MESSAGE_FROM_PEER)]
        assert sorted(str(u["message"]) for u in unrel) == ["42", "ping"]
        assert all(u["from"] == "host" and u["to"] == "alice" for u in unrel)

        stats = alice.get_stats("host")
        assert stats is not None and stats.rtt > 0 and stats.path == "direct"
        assert stats.messages_sent >= 1 and stats.packets_received >= 1
        assert alice.get_stats("nobody") is None

        # drop_peer: bob is told at once
        rec.clear()
        host.drop_peer("bob")
        assert rec.run(lambda: rec.has(bob, events.SESSION_TERMINATED)
                       and alice.get_peers() == ["host"])
        assert "dropped" in rec.of(bob, events.SESSION_TERMINATED)[0].reason
        assert host.get_peers() == ["alice"]

        # without the handshake server the session goes on
        host.drop_connection_with_handshake_server()
        alice.drop_connection_with_handshake_server()
        bob.request_server_list(hs_addr)
        assert rec.run(lambda: rec.has(bob, events.RECEIVED_SERVER_LIST))
        assert rec.of(bob, events.RECEIVED_SERVER_LIST)[0].server_names == []
        alice.send_reliable_message_to_peer("host", "still here")
        assert rec.run(lambda: rec.has(host, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER))

        # quit: the others hear at once
        rec.clear()
        host.quit_connection()
        assert rec.of(host, events.SESSION_TERMINATED) == [] or True
        assert rec.run(lambda: rec.has(alice, events.SESSION_TERMINATED), timeout=1.0)
        assert rec.has(host, events.SESSION_TERMINATED)
        assert not host.is_connected() and host.i_am_server() is None
        for p in (host, alice, bob):
            p.close()


def test_wrong_password_reaches_error_and_connection_failed(hs: HandshakeServer) -> None:
    host, good, bad = Peer(), Peer(), Peer()
    rec = Recorder(host, good, bad)
    host.init_server(hs.address, LOCAL, "locked", password="right")
    assert rec.run(lambda: rec.has(host, events.CONFIRMED_AS_SERVER))
    good.init_client(hs.address, LOCAL, "good", "locked", password="right")
    assert rec.run(good.is_connected)
    bad.init_client(hs.address, LOCAL, "bad", "locked", password="wrong")
    assert rec.run(lambda: rec.has(bad, events.SESSION_TERMINATED))
    assert "wrong password" in rec.of(bad, events.ERROR)[0].message
    assert rec.run(lambda: rec.has(host, events.PEER_CONNECTION_FAILED))
    assert [e.peer_name for e in rec.of(host, events.PEER_CONNECTION_FAILED)] == ["bad"]
    assert host.get_peers() == ["good"] and good.is_connected()
    for p in (host, good, bad):
        p.close()


def test_peer_that_stops_ticking_times_out(hs: HandshakeServer) -> None:
    host, alice = Peer(Config(**FAST)), Peer(Config(**FAST))
    rec = Recorder(host, alice)
    host.init_server(hs.address, LOCAL, "tick")
    assert rec.run(lambda: rec.has(host, events.CONFIRMED_AS_SERVER))
    alice.init_client(hs.address, LOCAL, "alice", "tick")
    assert rec.run(lambda: alice.is_connected() and host.get_peers() == ["alice"])
    # a reliable message to a peer that went silent expires before the peer times out
    rec.clear()
    mid = host.send_reliable_message_to_peer("alice", "anyone?")
    t0 = time.monotonic()
    assert rec.run(lambda: rec.has(host, events.PEER_TIMEOUT), timeout=10, skip=[alice])
    waited = time.monotonic() - t0
    # 1 s of silence before peer checks + 3 checks x 0.2 s
    assert 1.4 < waited < 3.5
    [expired] = rec.of(host, events.RELIABLE_MESSAGE_TIMEOUT)
    assert expired.packet_data == {"from": "tick", "to": "alice", "message": "anyone?",
                                   "message_id": mid}
    assert rec.of(host, events.PEER_TIMEOUT)[0].peer_name == "alice"
    assert rec.of(host, events.PEER_LIST_UPDATED)[-1].peer_names == []
    assert host.is_connected()
    # the client, ticking again, finds its server player gone and ends its session
    assert rec.run(lambda: rec.has(alice, events.SESSION_TERMINATED), timeout=10)
    assert rec.of(alice, events.PEER_TIMEOUT)[0].peer_name == "tick"
    host.close()
    alice.close()


def test_quit_is_noticed_within_a_second(hs: HandshakeServer) -> None:
    host, alice = Peer(), Peer()
    rec = Recorder(host, alice)
    host.init_server(hs.address, LOCAL, "quitter")
    assert rec.run(lambda: rec.has(host, events.CONFIRMED_AS_SERVER))
    alice.init_client(hs.address, LOCAL, "alice", "quitter")
    assert rec.run(lambda: alice.is_connected() and host.get_peers() == ["alice"])
    rec.clear()
    alice.quit_connection()
    t0 = time.monotonic()
    assert rec.run(lambda: host.get_peers() == [], timeout=1.0)
    assert time.monotonic() - t0 < 1.0
    assert rec.of(host, events.PEER_LIST_UPDATED)[-1].peer_names == []
    assert not rec.has(host, events.PACKET_BLOCKED)  # the extra disconnect copies are quiet
    with host:
        pass
    alice.close()


def test_events_are_posted_to_pygame_queue(hs: HandshakeServer) -> None:
    pygame.display.init()
    try:
        pygame.event.clear()
        with Peer() as host:
            host.init_server(hs.address, LOCAL, "poster")
            deadline = time.monotonic() + 5
            got: list[pygame.event.Event] = []
            while time.monotonic() < deadline and not got:
                host.tick()
                got = pygame.event.get(events.CONFIRMED_AS_SERVER)
                time.sleep(0.005)
            assert got and got[0].handshake_address == hs.address
    finally:
        pygame.display.quit()


def test_misuse_raises_clear_errors(hs: HandshakeServer) -> None:
    with Peer() as p:
        with pytest.raises(ValueError):
            p.init_server("127.0.0.1:5160", LOCAL, "x")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            p.init_server(hs.address, LOCAL, HS_SERVER_NAME)
        with pytest.raises(NotConnected):
            p.send_reliable_message_to_peer("x", 1)
        with pytest.raises(TypeError):
            p.init_server(hs.address, LOCAL, "x", password=123)  # type: ignore[arg-type]
    assert HS_SERVER_NAME == "_HANDSHAKE_SERVER"


def test_ten_thousand_hostile_datagrams_change_nothing() -> None:
    """Random and mutated datagrams at the server process and at a Peer, mid-session."""
    with server_process() as (proc, hs_addr):
        host, alice = Peer(Config(emit_packet_events=True)), Peer()
        rec = Recorder(host, alice)
        host.init_server(hs_addr, LOCAL, "target", password="pw")
        assert rec.run(lambda: rec.has(host, events.CONFIRMED_AS_SERVER))
        alice.init_client(hs_addr, LOCAL, "alice", "target", password="pw")
        assert rec.run(lambda: alice.is_connected() and host.get_peers() == ["alice"])
        for i in range(20):
            alice.send("target", i, Delivery.RELIABLE_ORDERED, 0)
        assert rec.run(lambda: len(rec.of(host, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER))
                       == 20)
        assert rec.has(host, events.PACKET_SENT) and rec.has(host, events.PACKET_RECEIVED)
        rng = random.Random(2024)
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attacker.bind(("127.0.0.1", 0))
        # datagrams to mutate: the kinds of packets the protocol sends
        channel = ServerChannel(random.Random(7).randbytes)
        channel.learn(bytes(16), KeyPair.generate(random.Random(8).randbytes).public)
        captured = [
            encode_cookie_request(1),
            channel.seal(HsKind.REGISTER, 1, ["evil", [], False, 60.0, 0], REQUEST_SIZE),
            channel.seal(HsKind.JOIN, 2, ["target", "evil", [], ], REQUEST_SIZE),
            channel.seal(HsKind.LIST, 3, [""], REQUEST_SIZE),
            channel.seal(HsKind.REFRESH, 4, ["target", bytes(16)], REQUEST_SIZE),
            encode_control(Kind.HELLO, ["evil", "target", bytes(32), b"", bytes(16)],
                           HELLO_SIZE),
            encode_control(Kind.REJECT, [8, 0, bytes(16)]),
            data_prefix(3) + bytes(40),
        ]
        rec.clear()
        for n in range(10_000):
            if rng.random() < 0.6:
                d = bytearray(rng.choice(captured))
                for _ in range(rng.randint(1, 3)):
                    d[rng.randrange(len(d))] = rng.randrange(256)
                data = bytes(d)
            else:
                data = rng.randbytes(rng.randint(0, 1400))
            target = hs_addr if n % 2 else host.local_address
            assert target is not None
            attacker.sendto(data, target)
            if n % 200 == 0:
                rec.tick()
        rec.run(lambda: False, timeout=0.5)
        attacker.close()
        assert proc.poll() is None  # the server is alive
        assert host.blocked_count > 3000
        assert len(rec.of(host, events.PACKET_BLOCKED)) >= 1
        assert host.is_connected() and alice.is_connected()
        assert host.get_peers() == ["alice"]
        assert not rec.has(alice, events.SESSION_TERMINATED), rec.names(alice)
        assert alice.get_peers() == ["target"], rec.names(alice)
        # still working: messages, and the server still serves
        rec.clear()
        for i in range(20, 40):
            alice.send("target", i, Delivery.RELIABLE_ORDERED, 0)
        assert rec.run(lambda: [e.packet_data["message"] for e in
                                rec.of(host, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER)]
                       == list(range(20, 40)))
        late = Peer()
        rec.add(late)
        late.request_server_list(hs_addr)
        assert rec.run(lambda: rec.has(late, events.RECEIVED_SERVER_LIST))
        # without the cookie that only a real address can echo, nothing was registered
        assert rec.of(late, events.RECEIVED_SERVER_LIST)[0].server_names == ["target"]
        for p in (host, alice, late):
            p.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_a_session_over_ipv6() -> None:
    srv = HandshakeServer("::1", 0)
    srv.start()
    host, guest = Peer(), Peer()
    rec = Recorder(host, guest)
    try:
        host.init_server(srv.address, ("::1", 0), "v6host", password="pw")
        assert rec.run(host.is_connected)
        guest.init_client(srv.address, ("::", 0), "v6guest", "v6host", password="pw")
        assert rec.run(guest.is_connected)
        guest.send_reliable_message_to_peer("v6host", "hello over IPv6")
        assert rec.run(lambda: rec.has(host, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER))
        assert guest.get_server_address() == host.local_address
        assert ":" in guest.get_server_address()[0]  # type: ignore[index]
    finally:
        host.close()
        guest.close()
        srv.stop()



def test_post_events_false_keeps_events_out_of_pygames_queue(hs: HandshakeServer) -> None:
    pygame.display.init()
    try:
        pygame.event.clear()
        with Peer(Config(post_events=False)) as host:
            host.init_server(hs.address, LOCAL, "quiet-host")
            deadline = time.monotonic() + 5
            returned: list[pygame.event.Event] = []
            while time.monotonic() < deadline and not returned:
                returned = [e for e in host.tick() if e.type == events.CONFIRMED_AS_SERVER]
                time.sleep(0.005)
            assert returned, "tick() still returns the events"
            assert pygame.event.get(events.CONFIRMED_AS_SERVER) == []
    finally:
        pygame.display.quit()


def test_a_pinned_fingerprint_is_checked_and_a_wrong_one_refused(tmp_path: Path) -> None:
    key = tmp_path / "hs.key"
    fingerprint = key_fingerprint(key)
    with server_process(key_file=key) as (_, hs_addr):
        host, impostor_victim = Peer(), Peer()
        rec = Recorder(host, impostor_victim)
        host.init_server(hs_addr, LOCAL, "pinned", handshake_key=fingerprint.upper())
        assert rec.run(lambda: rec.has(host, events.CONFIRMED_AS_SERVER))
        assert host.handshake_fingerprint == fingerprint
        wrong = "0000-" + fingerprint[5:]
        impostor_victim.init_client(hs_addr, LOCAL, "alice", "pinned", handshake_key=wrong)
        assert rec.run(lambda: rec.has(impostor_victim, events.SESSION_TERMINATED))
        assert "not the pinned" in rec.of(impostor_victim, events.ERROR)[0].message
        with pytest.raises(ValueError):
            Peer().init_client(hs_addr, LOCAL, "bob", "pinned", handshake_key="not-a-key")
        for p in (host, impostor_victim):
            p.close()


def test_a_list_of_wide_names_through_a_real_server() -> None:
    """Sixteen games named with 32 CJK characters each, from one address: every name
    comes back, in pages that fit a datagram (this stopped the original server)."""
    names = [chr(0x4E00 + i) * 31 + chr(0x4E00 + 100 + i) for i in range(16)]
    with server_process() as (proc, hs_addr):
        hosts = [Peer() for _ in names]
        asker = Peer()
        rec = Recorder(*hosts, asker)
        for peer, name in zip(hosts, names, strict=True):
            peer.init_server(hs_addr, LOCAL, name)
        assert rec.run(lambda: all(rec.has(p, events.CONFIRMED_AS_SERVER) for p in hosts),
                       timeout=20)
        asker.request_server_list(hs_addr)
        assert rec.run(lambda: rec.has(asker, events.RECEIVED_SERVER_LIST))
        assert sorted(rec.of(asker, events.RECEIVED_SERVER_LIST)[0].server_names) == \
            sorted(names)
        assert proc.poll() is None
        for p in (*hosts, asker):
            p.close()

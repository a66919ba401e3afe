"""LAN play over real sockets on loopback: broadcast to 127.255.255.255 reaches every
host of the machine on the shared discovery port (SO_REUSEADDR + SO_REUSEPORT), and a
player joins one with no handshake server at all."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from framework import Config, Peer, events
from framework.landiscovery import LIMITED_BROADCAST, broadcast_addresses
from framework.protocol.addresses import is_local_address
from framework.protocol.wire import LAN_QUERY_SIZE, Kind, encode_lan
from server import HandshakeServer
from tests.helpers import Recorder

LOCAL = ("127.0.0.1", 0)
LOOPBACK_BROADCAST = "127.255.255.255"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lan_config() -> Iterator[Config]:
    """A discovery port of this test's own (other tests and games may be hosting on the
    default one), queries to loopback's broadcast address only: nothing leaves the machine."""
    yield Config(lan_port=free_udp_port(), lan_broadcast=(LOOPBACK_BROADCAST,),
                 secs_between_peer_checks=1.0)


def lan_list(rec: Recorder, peer: Peer) -> list[dict[str, object]]:
    before = len(rec.of(peer, events.RECEIVED_SERVER_LIST))
    peer.request_lan_server_list()
    assert rec.run(lambda: len(rec.of(peer, events.RECEIVED_SERVER_LIST)) > before, 5)
    servers = rec.of(peer, events.RECEIVED_SERVER_LIST)[-1].servers
    return sorted(servers, key=lambda e: str(e["name"]))


def test_two_games_on_one_machine_are_listed_and_one_is_joined(lan_config: Config) -> None:
    with Peer(lan_config) as a, Peer(lan_config) as b, Peer(lan_config) as alice:
        rec = Recorder(a, b, alice)
        a.init_server(None, LOCAL, "game-a")
        b.init_server(None, LOCAL, "game-b", password="pw")
        assert rec.run(lambda: rec.has(a, events.CONFIRMED_AS_SERVER)
                       and rec.has(b, events.CONFIRMED_AS_SERVER))
        assert rec.of(a, events.CONFIRMED_AS_SERVER)[0].handshake_address is None
        assert a.is_connected() and a.i_am_server()
        assert a.get_server_address() == a.local_address
        entries = lan_list(rec, alice)
        assert entries == [
            {"name": "game-a", "password_required": False, "address": a.local_address,
             "lan": True},
            {"name": "game-b", "password_required": True, "address": b.local_address,
             "lan": True},
        ]
        alice.init_client(None, LOCAL, "alice", "game-b", "pw",
                          host_address=entries[1]["address"])  # type: ignore[arg-type]
        assert rec.run(lambda: alice.is_connected() and b.get_peers() == ["alice"])
        assert rec.of(b, events.CLIENT_CONFIRMED)[0].new_peer == "alice"
        stats = alice.get_stats("game-b")
        assert stats is not None and stats.path == "lan"
        alice.send_reliable_message_to_peer("game-b", {"hello": "lan"})
        assert rec.run(lambda: rec.has(b, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER))
        msg = rec.of(b, events.RECEIVED_RELIABLE_MESSAGE_FROM_PEER)[0].packet_data
        assert msg["from"] == "alice" and msg["message"] == {"hello": "lan"}
        # A host that quits stops answering; the other is still listed.
        b.quit_connection()
        assert [e["name"] for e in lan_list(rec, alice)] == ["game-a"]
        assert a.blocked_count == 0 and b.blocked_count == 0


def test_a_wrong_password_on_the_lan_is_told_as_such(lan_config: Config) -> None:
    with Peer(lan_config) as host, Peer(lan_config) as eve:
        rec = Recorder(host, eve)
        host.init_server(None, LOCAL, "locked", password="right")
        eve.init_client(None, LOCAL, "eve", "locked", "wrong", host_address=host.local_address)
        assert rec.run(lambda: rec.has(eve, events.SESSION_TERMINATED))
        assert rec.of(eve, events.SESSION_TERMINATED)[0].reason == "wrong password"
        assert rec.run(lambda: rec.has(host, events.PEER_CONNECTION_FAILED))
        assert host.get_peers() == []


def test_a_host_with_a_handshake_server_is_found_on_the_lan_too(lan_config: Config) -> None:
    srv = HandshakeServer("127.0.0.1", 0)
    srv.start()
    try:
        with Peer(lan_config) as host, Peer(lan_config) as alice, \
                Peer(Config(lan_port=lan_config.lan_port, lan_discovery=False)) as hidden:
            rec = Recorder(host, alice, hidden)
            host.init_server(srv.address, LOCAL, "both")
            hidden.init_server(srv.address, LOCAL, "hidden")
            assert rec.run(lambda: rec.has(host, events.CONFIRMED_AS_SERVER)
                           and rec.has(hidden, events.CONFIRMED_AS_SERVER))
            assert [e["name"] for e in lan_list(rec, alice)] == ["both"]
            # Joined on the LAN: the handshake server is not asked.
            alice.init_client(None, LOCAL, "alice", "both", host_address=host.local_address)
            assert rec.run(lambda: alice.is_connected() and host.get_peers() == ["alice"])
    finally:
        srv.stop()


def test_a_second_list_request_and_a_list_while_playing(lan_config: Config) -> None:
    with Peer(lan_config) as host, Peer(lan_config) as alice:
        rec = Recorder(host, alice)
        host.init_server(None, LOCAL, "game")
        assert [e["name"] for e in lan_list(rec, alice)] == ["game"]
        alice.init_client(None, LOCAL, "alice", "game", host_address=host.local_address)
        assert rec.run(alice.is_connected)
        # The host lists too, while hosting: it finds itself.
        assert [e["name"] for e in lan_list(rec, host)] == ["game"]


def test_lan_api_misuse_raises_at_the_call(lan_config: Config) -> None:
    with Peer(lan_config) as p:
        with pytest.raises(ValueError, match="host_address"):
            p.init_client(None, LOCAL, "a", "b")
        with pytest.raises(ValueError, match="not both"):
            p.init_client(("127.0.0.1", 5160), LOCAL, "a", "b", host_address=("127.0.0.1", 9))
        with pytest.raises(ValueError, match="handshake_key"):
            p.init_server(None, LOCAL, "x", handshake_key="00" * 16)
        with pytest.raises(ValueError, match="local network"):
            p.init_client(None, LOCAL, "a", "b", host_address=("198.51.100.1", 9))
        with pytest.raises(ValueError):
            p.init_client(None, LOCAL, "a", "b", host_address="127.0.0.1:9")


def test_a_query_is_answered_from_the_game_socket_and_never_larger(lan_config: Config
                                                                    ) -> None:
    with Peer(lan_config) as host:
        host.init_server(None, LOCAL, "x" * 32)
        host.tick()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.05)
            query = encode_lan(Kind.LAN_QUERY, [bytes(8)])
            s.sendto(query, (LOOPBACK_BROADCAST, lan_config.lan_port))
            answer = None
            for _ in range(100):
                host.tick()
                try:
                    answer, src = s.recvfrom(2048)
                    break
                except TimeoutError:
                    continue
            assert answer is not None and src == host.local_address
            assert len(answer) <= len(query) == LAN_QUERY_SIZE
            # Unpadded, the same query gets nothing back.
            s.sendto(query[:20], (LOOPBACK_BROADCAST, lan_config.lan_port))
            for _ in range(20):
                host.tick()
            with pytest.raises(TimeoutError):
                s.recvfrom(2048)
        assert host.blocked_count == 1


def test_broadcast_addresses_end_with_the_limited_broadcast() -> None:
    found = broadcast_addresses()
    assert found[-1] == LIMITED_BROADCAST and len(set(found)) == len(found)
    for address in found[:-1]:
        socket.inet_aton(address)
        assert is_local_address(address)  # never a public network's broadcast address

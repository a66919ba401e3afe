"""The handshake server's pure core, and the real server's shell."""

from __future__ import annotations

import socket
import subprocess
import sys

from framework.protocol.requests import encode_request
from framework.protocol.wire import (
    ErrorCode,
    Kind,
    decode_control,
    encode_control,
    encode_relay,
    peek_kind,
)
from server import HandshakeCore, HandshakeServer, ServerConfig
from tests.fakenet import seeded_bytes

A = ("198.51.100.7", 4000)
B = ("198.51.100.8", 4001)
C = ("203.0.113.9", 5555)


def core(**kw: object) -> HandshakeCore:
    return HandshakeCore(ServerConfig(**kw), seeded_bytes(1))  # type: ignore[arg-type]


def decode(replies: list[tuple[bytes, tuple[str, int]]]
           ) -> list[tuple[Kind, list[object], tuple[str, int]]]:
    out = []
    for data, to in replies:
        k = peek_kind(data)
        out.append((k, decode_control(k, data), to))
    return out


def ask(c: HandshakeCore, kind: Kind, fields: list[object], src: tuple[str, int],
        now: float = 0.0) -> list[tuple[Kind, list[object], tuple[str, int]]]:
    """Send a request as a peer does: padded, and again with the cookie if asked for one."""
    rid, rest = fields[0], fields[1:]
    assert isinstance(rid, int)
    out = decode(c.receive(encode_request(kind, rid, rest), src, now))
    if out and out[0][0] is Kind.COOKIE:
        cookie = out[0][1][1]
        assert isinstance(cookie, bytes)
        out = decode(c.receive(encode_request(kind, rid, rest, cookie), src, now))
    return out


def register(c: HandshakeCore, name: str, src: tuple[str, int], now: float = 0.0,
             pw: bool = False) -> bytes:
    [(kind, f, to)] = ask(c, Kind.REGISTER, [1, name, "10.0.0.5", 7000, pw, 60.0], src, now)
    assert kind is Kind.REGISTERED and to == src
    assert f[2:4] == [src[0], src[1]]  # the public address as the server saw it
    token = f[1]
    assert isinstance(token, bytes)
    return token


def test_register_refresh_unregister_need_the_token_and_address() -> None:
    c = core()
    token = register(c, "arena", A)
    assert register(c, "arena", A) == token  # a repeat from the registrant: same token
    [(k, f, _)] = ask(c, Kind.REGISTER, [2, "arena", "x", 1, False, 60.0], B)
    assert k is Kind.HS_ERROR and f[1] == ErrorCode.NAME_TAKEN
    # knowing the name is not enough: a stranger cannot refresh or drop it
    [(k, f, _)] = ask(c, Kind.REFRESH, [3, "arena", token], B)
    assert k is Kind.HS_ERROR
    [(k, f, _)] = ask(c, Kind.REFRESH, [3, "arena", b"\x00" * 16], A)
    assert k is Kind.HS_ERROR
    assert ask(c, Kind.UNREGISTER, [4, "arena", b"\x00" * 16], A) == []
    assert ask(c, Kind.UNREGISTER, [4, "arena", token], B) == []
    assert "arena" in c.registrations
    [(k, f, _)] = ask(c, Kind.REFRESH, [5, "arena", token], A)
    assert k is Kind.REFRESHED
    [(k, f, _)] = ask(c, Kind.UNREGISTER, [6, "arena", token], A)
    assert k is Kind.UNREGISTERED and "arena" not in c.registrations


def test_registrations_expire_unless_refreshed() -> None:
    c = core()
    token = register(c, "a", A, now=0.0)
    register(c, "b", B, now=0.0)
    ask(c, Kind.REFRESH, [1, "a", token], A, now=50.0)
    c.expire(61.0)
    assert set(c.registrations) == {"a"}
    c.expire(111.0)
    assert c.registrations == {}
    assert c.stats.expired == 2
    register(c, "b", C, now=112.0)  # an expired name is free again


def test_caps_in_total_and_per_address() -> None:
    c = core(max_registrations=5, max_registrations_per_ip=3)
    for i in range(3):
        register(c, f"a{i}", ("198.51.100.1", 1000 + i))
    [(k, f, _)] = ask(c, Kind.REGISTER, [1, "a3", "", 0, False, 60.0], ("198.51.100.1", 2000))
    assert k is Kind.HS_ERROR and f[1] == ErrorCode.TOO_MANY
    register(c, "b0", ("198.51.100.2", 1))
    register(c, "b1", ("198.51.100.3", 1))
    [(k, f, _)] = ask(c, Kind.REGISTER, [1, "b2", "", 0, False, 60.0], ("198.51.100.4", 1))
    assert k is Kind.HS_ERROR and f[1] == ErrorCode.TOO_MANY
    assert len(c.registrations) == 5


def test_reserved_name_and_validity_bounds() -> None:
    c = core()
    [(k, f, _)] = ask(c, Kind.REGISTER, [1, "_HANDSHAKE_SERVER", "", 0, False, 60.0], A)
    assert k is Kind.HS_ERROR and f[1] == ErrorCode.BAD_NAME
    [(k, f, _)] = ask(c, Kind.REGISTER, [1, "short", "", 0, False, 0.001], A)
    assert f[4] == 10.0  # clamped to the minimum
    [(k, f, _)] = ask(c, Kind.REGISTER, [1, "long", "", 0, False, 99999.0], B)
    assert f[4] == 300.0


def test_join_introduces_both_sides_with_public_and_lan_addresses() -> None:
    c = core()
    register(c, "arena", A, pw=True)
    replies = ask(c, Kind.JOIN, [7, "arena", "alice", "192.168.0.9", 6000], B)
    assert len(replies) == 2
    (k1, to_client, dst1), (k2, to_server, dst2) = replies
    assert k1 is k2 is Kind.INTRODUCE and dst1 == B and dst2 == A
    assert to_client[:8] == [7, "arena", A[0], A[1], "10.0.0.5", 7000, True, to_client[7]]
    assert to_server[:7] == [0, "alice", B[0], B[1], "192.168.0.9", 6000, True]
    assert to_client[7] == to_server[7] and len(to_client[7]) == 16  # the shared secret
    again = ask(c, Kind.JOIN, [8, "arena", "alice", "192.168.0.9", 6000], B)
    assert again[0][1][7] == to_client[7]  # a repeated join keeps the same secret
    [(k, f, to)] = ask(c, Kind.JOIN, [9, "nobody", "alice", "", 0], B)
    assert k is Kind.HS_ERROR and f[1] == ErrorCode.NO_SUCH_SERVER and to == B
    [(k, f, _)] = ask(c, Kind.JOIN, [9, "arena", "arena", "", 0], B)
    assert k is Kind.HS_ERROR and f[1] == ErrorCode.BAD_NAME


def test_server_list_is_paged_and_every_reply_fits_a_datagram() -> None:
    c = core()
    for i in range(100):
        register(c, f"{'n' * 28}{i:03d}", (f"198.51.100.{i}", 1), pw=i % 2 == 0)
    names: list[str] = []
    page, pages = 0, 1
    while page < pages:
        replies = c.receive(encode_request(Kind.LIST, 1, [page]), A, 0.0)
        [(data, _)] = replies
        assert len(data) <= 1200
        f = decode_control(Kind.LIST_REPLY, data)
        pages = f[2]
        names += [e[0] for e in f[3]]
        page += 1
    assert names == sorted(c.registrations) and len(names) == 100


def test_non_requests_and_junk_are_dropped_silently() -> None:
    c = core()
    for data in [b"", b"junk", encode_control(Kind.REGISTERED, [1, b"t" * 16, "h", 1, 1.0]),
                 encode_control(Kind.PUNCH, ["a", "b", b"p" * 8]), b"P2\x01\x01\x93"]:
        assert c.receive(data, A, 0.0) == []
    assert c.stats.dropped == 5


def test_server_shell_serves_and_stops() -> None:
    srv = HandshakeServer("127.0.0.1", 0)
    srv.start()
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(encode_request(Kind.LIST, 42, [0]), srv.address)
        data, _ = s.recvfrom(2048)
        assert decode_control(Kind.LIST_REPLY, data)[:3] == [42, 0, 1]
        s.close()
    finally:
        srv.stop()


def test_importing_server_never_imports_pygame() -> None:
    code = "import sys, server, server.__main__; assert 'pygame' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_server_command_line_help() -> None:
    out = subprocess.run([sys.executable, "-m", "server", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--port" in out and "5160" in out


def _introduced(c: HandshakeCore) -> bytes:
    register(c, "arena", A)
    ask(c, Kind.JOIN, [1, "arena", "alice", "10.1.1.1", 1], B)
    [(k, f, to), (k2, f2, to2)] = ask(c, Kind.RELAY_REQUEST, [2, "arena", "alice"], B)
    assert k is k2 is Kind.RELAY_READY and to == B and to2 == A
    assert f[1] == f2[1] and f[2] == "arena" and f2[2] == "alice"
    relay_id = f[1]
    assert isinstance(relay_id, bytes)
    return relay_id


def test_relay_forwards_only_between_the_two_players() -> None:
    c = core()
    relay_id = _introduced(c)
    # the server player asking too gets the same relay
    [(_, f, _), _] = ask(c, Kind.RELAY_REQUEST, [3, "arena", "alice"], A)
    assert f[1] == relay_id and len(c.relays) == 1
    inner = encode_control(Kind.PUNCH, ["alice", "arena", b"p" * 8])
    data = encode_relay(relay_id, inner)
    assert c.receive(data, B, 1.0) == [(data, A)]
    assert c.receive(data, A, 1.0) == [(data, B)]
    assert c.receive(data, C, 1.0) == []  # a stranger cannot inject
    assert c.receive(encode_relay(b"\x00" * 8, inner), B, 1.0) == []
    assert c.stats.relayed_packets == 2 and c.stats.relay_dropped == 2


def test_relay_needs_an_introduction_and_can_be_disabled() -> None:
    c = core()
    register(c, "arena", A)
    [(k, f, to)] = ask(c, Kind.RELAY_REQUEST, [1, "arena", "alice"], B)
    assert k is Kind.HS_ERROR and f[1] == ErrorCode.NOT_INTRODUCED and to == B
    ask(c, Kind.JOIN, [1, "arena", "alice", "10.1.1.1", 1], B)
    [(k, f, _)] = ask(c, Kind.RELAY_REQUEST, [1, "arena", "alice"], C)  # not one of them
    assert k is Kind.HS_ERROR and f[1] == ErrorCode.NOT_INTRODUCED
    off = core(relay=False)
    register(off, "arena", A)
    ask(off, Kind.JOIN, [1, "arena", "alice", "10.1.1.1", 1], B)
    [(k, f, _)] = ask(off, Kind.RELAY_REQUEST, [1, "arena", "alice"], B)
    assert k is Kind.HS_ERROR and f[1] == ErrorCode.RELAY_DISABLED


def test_relay_rate_and_lifetime_are_capped() -> None:
    c = core(relay_bytes_per_sec=10_000, relay_idle_timeout=5.0, relay_max_duration=100.0)
    relay_id = _introduced(c)
    data = encode_relay(relay_id, b"P2\x01\x27" + b"x" * 980)  # 1000 bytes
    passed = sum(bool(c.receive(data, B, 0.0)) for _ in range(50))
    assert passed == 10  # the first second's budget
    passed = sum(bool(c.receive(data, B, 1.0)) for _ in range(50))
    assert passed == 10  # refilled at 10 kB/s
    c.expire(7.0)
    assert c.relays == {}  # idle too long
    relay_id = _introduced(core())
    c2 = core(relay_max_duration=10.0)
    rid2 = _introduced(c2)
    for t in range(0, 12):
        c2.receive(encode_relay(rid2, b"P2\x01\x27xx"), B, float(t))
        c2.expire(float(t))
    assert c2.relays == {} and relay_id

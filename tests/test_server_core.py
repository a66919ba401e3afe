"""The handshake server's pure core (v2), and the real server's shell."""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from framework.protocol.constants import JOIN_TOKEN_SIZE, RELAY_ID_SIZE, TOKEN_SIZE
from framework.protocol.crypto import fingerprint
from framework.protocol.hschannel import ServerChannel
from framework.protocol.wire import (
    HEADER_SIZE,
    LIST_REQUEST_SIZE,
    RELAY_HEADER_SIZE,
    CandidateKind,
    ErrorCode,
    HsKind,
    Kind,
    decode_cookie,
    encode_cookie_request,
    encode_relay,
    header,
    peek_kind,
)
from server import HandshakeServer, ServerConfig
from server.keys import KeyFileError, load_or_create
from tests.hspeer import HsNet, HsPeer, Opened

A = ("198.51.100.7", 4000)
B = ("198.51.100.8", 4001)
C = ("203.0.113.9", 5555)
LAN, MAPPED, PUBLIC = int(CandidateKind.LAN), int(CandidateKind.MAPPED), int(CandidateKind.PUBLIC)


def net(**kw: Any) -> HsNet:
    return HsNet(ServerConfig(**kw))


def register(p: HsPeer, name: str, now: float = 0.0, pw: bool = False,
             candidates: list[list[Any]] | None = None, secs: float = 60.0) -> bytes:
    r = p.ask_one(HsKind.REGISTER, [name, candidates if candidates is not None else
                                    [["10.0.0.5", 7000, LAN]], pw, secs, 0], now)
    assert r.kind is HsKind.REGISTERED and r.to == p.address
    assert r.fields[1:3] == [p.address[0], p.address[1]]  # as the server saw it
    token = r.fields[0]
    assert isinstance(token, bytes)
    return token


def error(r: Opened) -> ErrorCode:
    assert r.kind is HsKind.HS_ERROR and r.fields != []
    return ErrorCode(r.fields[0])


def test_register_refresh_unregister_need_the_token_and_address() -> None:
    n = net()
    a, b = n.peer(A), n.peer(B)
    token = register(a, "arena")
    assert register(a, "arena") == token  # a repeat from the registrant: same token
    assert error(b.ask_one(HsKind.REGISTER, ["arena", [], False, 60.0, 0])) is ErrorCode.NAME_TAKEN
    # knowing the name is not enough: a stranger cannot refresh or drop it
    assert error(b.ask_one(HsKind.REFRESH, ["arena", token])) is ErrorCode.NOT_REGISTERED
    assert error(a.ask_one(HsKind.REFRESH, ["arena", bytes(TOKEN_SIZE)])) is \
        ErrorCode.NOT_REGISTERED
    assert a.ask(HsKind.UNREGISTER, ["arena", bytes(TOKEN_SIZE)]) == []
    assert b.ask(HsKind.UNREGISTER, ["arena", token]) == []
    assert "arena" in n.core.registrations
    r = a.ask_one(HsKind.REFRESH, ["arena", token])
    assert r.kind is HsKind.REFRESHED and r.fields == [60.0]
    assert a.ask_one(HsKind.UNREGISTER, ["arena", token]).kind is HsKind.UNREGISTERED
    assert "arena" not in n.core.registrations
    token = register(a, "arena")
    assert a.ask(HsKind.UNREGISTER, ["arena", token], rid=0) == []  # req 0: no answer
    assert n.core.registrations == {}


def test_registrations_expire_unless_refreshed() -> None:
    n = net()
    a, b, c = n.peer(A), n.peer(B), n.peer(C)
    token = register(a, "a", now=0.0)
    register(b, "b", now=0.0)
    a.ask(HsKind.REFRESH, ["a", token], now=50.0)
    n.core.expire(61.0)
    assert set(n.core.registrations) == {"a"}
    n.core.expire(111.0)
    assert n.core.registrations == {}
    assert n.core.stats.expired == 2
    register(c, "b", now=112.0)  # an expired name is free again


def test_an_expired_name_is_free_before_expire_runs() -> None:
    n = net()
    register(n.peer(A), "arena", now=0.0)
    register(n.peer(B), "arena", now=61.0)
    assert n.core.registrations["arena"].public == B


def test_caps_in_total_and_per_prefix() -> None:
    n = net(max_registrations=5, max_registrations_per_ip=3)
    for i in range(3):
        register(n.peer(("198.51.100.1", 1000 + i)), f"a{i}")
    late = n.peer(("198.51.100.1", 2000))
    assert error(late.ask_one(HsKind.REGISTER, ["a3", [], False, 60.0, 0])) is ErrorCode.TOO_MANY
    register(n.peer(("198.51.100.2", 1)), "b0")
    register(n.peer(("198.51.100.3", 1)), "b1")
    full = n.peer(("198.51.100.4", 1))
    assert error(full.ask_one(HsKind.REGISTER, ["b2", [], False, 60.0, 0])) is ErrorCode.TOO_MANY
    assert len(n.core.registrations) == 5


def test_validity_is_clamped() -> None:
    n = net()
    r = n.peer(A).ask_one(HsKind.REGISTER, ["short", [], False, 0.001, 0])
    assert r.fields[3] == ServerConfig.min_reg_valid
    r = n.peer(B).ask_one(HsKind.REGISTER, ["long", [], False, 99999.0, 0])
    assert r.fields[3] == ServerConfig.max_reg_valid


def test_join_introduces_both_sides_with_checked_candidates() -> None:
    n = net()
    host, client = n.peer(A), n.peer(B)
    register(host, "arena", pw=True, candidates=[
        ["10.0.0.5", 7000, LAN],
        ["8.8.8.8", 53, LAN],  # not a local address: a packet cannon, dropped
        [A[0], 7001, MAPPED],  # a mapping on the host's own router: kept
        ["192.0.2.1", 9, PUBLIC],  # the server says what is public, not the peer
    ])
    [to_client] = client.ask(HsKind.JOIN, ["arena", "alice", [
        ["192.168.0.9", 6000, LAN], ["203.0.113.50", 6001, MAPPED]]])  # not its IP: dropped
    [to_host] = host.inbox  # opened with the host's own channel
    assert to_client.kind is to_host.kind is HsKind.INTRODUCE
    assert to_client.to == B and to_host.to == A and to_client.rid != 0 and to_host.rid == 0
    server, cands, pw, token, valid = to_client.fields
    assert server == "arena" and pw is True and valid == ServerConfig.intro_valid
    assert cands == [[A[0], A[1], PUBLIC], ["10.0.0.5", 7000, LAN], [A[0], 7001, MAPPED]]
    user, cands, pw, token2, _ = to_host.fields
    assert user == "alice" and pw is True and token2 == token and len(token) == JOIN_TOKEN_SIZE
    assert cands == [[B[0], B[1], PUBLIC], ["192.168.0.9", 6000, LAN]]


def test_an_older_register_arriving_late_never_brings_back_older_candidates() -> None:
    n = net()
    host = n.peer(A)
    old = [["10.0.0.5", 7000, LAN]]
    new = [*old, [A[0], 7001, MAPPED]]  # a port mapping made since
    ask = host.ask_one
    assert ask(HsKind.REGISTER, ["arena", new, False, 60.0, 1]).kind is HsKind.REGISTERED
    # a copy (or resend) of the first REGISTER, delivered after the second
    assert ask(HsKind.REGISTER, ["arena", old, False, 60.0, 0]).kind is HsKind.REGISTERED
    [intro] = n.peer(B).ask(HsKind.JOIN, ["arena", "alice", []])
    assert intro.fields[1][-1] == [A[0], 7001, MAPPED]
    # the mapping is lost: a newer generation without it is taken
    assert ask(HsKind.REGISTER, ["arena", old, False, 60.0, 2]).kind is HsKind.REGISTERED
    [intro] = n.peer(B).ask(HsKind.JOIN, ["arena", "alice", []])
    assert intro.fields[1] == [[A[0], A[1], PUBLIC], *old]
    # a new session from the same address (a new channel key) counts from 0 again
    restarted = n.peer(A)
    assert restarted.ask_one(HsKind.REGISTER, ["arena", new, False, 60.0, 0]).kind \
        is HsKind.REGISTERED
    [intro] = n.peer(B).ask(HsKind.JOIN, ["arena", "alice", []])
    assert intro.fields[1][-1] == [A[0], 7001, MAPPED]


def test_join_errors_go_to_the_asker_only() -> None:
    n = net()
    register(n.peer(A), "arena")
    client = n.peer(B)
    r = client.ask_one(HsKind.JOIN, ["nobody", "alice", []])
    assert error(r) is ErrorCode.NO_SUCH_SERVER and r.to == B
    assert error(client.ask_one(HsKind.JOIN, ["arena", "arena", []])) is ErrorCode.BAD_NAME


def test_a_repeated_join_keeps_its_token_and_tells_the_host_at_a_bounded_rate() -> None:
    n = net()
    host, client = n.peer(A), n.peer(B)
    register(host, "arena")
    gap = ServerConfig.intro_resend_interval
    first = client.ask(HsKind.JOIN, ["arena", "alice", []], now=1.0)[0].fields[3]
    assert len(host.inbox) == 1
    [again] = client.ask(HsKind.JOIN, ["arena", "alice", []], now=1.0 + gap / 2)
    assert again.fields[3] == first and len(host.inbox) == 1
    [again] = client.ask(HsKind.JOIN, ["arena", "alice", []], now=2.0)
    assert again.fields[3] == first and len(host.inbox) == 2
    assert host.inbox[-1].fields[3] == first
    assert again.fields[4] == ServerConfig.intro_valid - 1.0  # seconds left
    # after it expires, a new introduction and a new token
    later = client.ask(HsKind.JOIN, ["arena", "alice", []], now=40.0)
    assert later[0].fields[3] != first and n.core.stats.introductions == 2


def test_introductions_follow_the_hosts_channel_after_a_refresh() -> None:
    n = net()
    host = n.peer(A)
    token = register(host, "arena")
    moved = n.peer(A)  # the same host with a fresh channel key (say, after a restart)
    assert moved.ask_one(HsKind.REFRESH, ["arena", token]).kind is HsKind.REFRESHED
    n.peer(B).ask(HsKind.JOIN, ["arena", "alice", []])
    assert [r.fields[0] for r in moved.inbox] == ["alice"]


def test_the_server_list_covers_every_name_once_in_order() -> None:
    n = net()
    for i in range(100):
        register(n.peer((f"198.51.100.{i}", 1)), f"{'n' * 28}{i:03d}", pw=i % 2 == 0)
    asker = n.peer(C)
    names: list[str] = []
    after, more = "", True
    while more:
        r = asker.ask_one(HsKind.LIST, [after])
        assert r.size <= LIST_REQUEST_SIZE
        entries, more = r.fields
        names += [e[0] for e in entries]
        after = names[-1]
    assert names == sorted(n.core.registrations) and len(names) == 100
    first = asker.ask_one(HsKind.LIST, [""]).fields[0]
    assert [e[1] for e in first[:2]] == [True, False]  # password_required, per game


def test_non_requests_and_junk_are_dropped_silently() -> None:
    n = net()
    a = n.peer(A)
    other_version = bytearray(encode_cookie_request(1))
    other_version[2] += 1
    for data in [b"", b"junk", encode_cookie_request(1)[:-1], bytes(other_version),
                 *(header(k) + bytes(96) for k in (Kind.COOKIE, Kind.SEALED_REPLY, Kind.PUNCH,
                                                  Kind.DATA))]:
        assert a.send(data) == []
    assert n.core.stats.dropped == 8 and n.core.stats.internal_errors == 0


def test_cookies_are_bound_to_the_address_and_last_one_window_more() -> None:
    n = net(cookie_window=30.0)
    a = n.peer(A)
    a.get_cookie(now=0.0)
    cookie = a.channel.cookie
    register(a, "arena", now=59.0)  # the next window: still good, no new round trip
    assert a.channel.cookie == cookie and n.core.stats.cookies_sent == 1
    register(a, "arena", now=61.0)  # two windows on: a fresh cookie first, then served
    assert n.core.stats.cookies_sent == 2
    # a cookie is worth nothing from another address (a spoofer never sees its own)
    stranger = n.peer(B)
    stranger.channel.learn(a.channel.cookie, n.key.public)
    [(data, to)] = stranger.send(stranger.seal(HsKind.LIST, [""]), now=61.0)
    assert peek_kind(data) is Kind.COOKIE and to == B
    assert decode_cookie(data)[1] != a.channel.cookie


def _relayed(n: HsNet) -> tuple[HsPeer, HsPeer, bytes]:
    host, client = n.peer(A), n.peer(B)
    register(host, "arena")
    client.ask(HsKind.JOIN, ["arena", "alice", []])
    mine = client.ask_one(HsKind.RELAY_REQUEST, ["arena", "alice"])
    assert mine.kind is HsKind.RELAY_READY and mine.fields[1] == "arena"
    theirs = host.inbox[-1]
    assert theirs.kind is HsKind.RELAY_READY and theirs.rid == 0 and theirs.to == A
    assert theirs.fields == [mine.fields[0], "alice"]
    relay_id = mine.fields[0]
    assert isinstance(relay_id, bytes)
    return host, client, relay_id


def test_relay_forwards_only_between_the_two_players() -> None:
    n = net()
    host, _, relay_id = _relayed(n)
    # the host asking too gets the same relay
    assert host.ask_one(HsKind.RELAY_REQUEST, ["arena", "alice"]).fields == [relay_id,
                                                                               "alice"]
    assert len(n.core.relays) == 1
    data = encode_relay(relay_id, header(Kind.DATA) + bytes(30))
    assert n.core.receive(data, B, 1.0) == [(data, A)]
    assert n.core.receive(data, A, 1.0) == [(data, B)]
    assert n.core.receive(data, C, 1.0) == []  # a stranger cannot inject
    unknown = encode_relay(bytes(RELAY_ID_SIZE), data[RELAY_HEADER_SIZE:])
    assert n.core.receive(unknown, B, 1.0) == []
    assert n.core.stats.relayed_packets == 2 and n.core.stats.relay_dropped == 2


def test_relay_needs_an_introduction_and_can_be_disabled() -> None:
    n = net()
    register(n.peer(A), "arena")
    client = n.peer(B)
    r = client.ask_one(HsKind.RELAY_REQUEST, ["arena", "alice"])
    assert error(r) is ErrorCode.NOT_INTRODUCED and r.to == B
    client.ask(HsKind.JOIN, ["arena", "alice", []])
    stranger = n.peer(C)
    assert error(stranger.ask_one(HsKind.RELAY_REQUEST, ["arena", "alice"])) is \
        ErrorCode.NOT_INTRODUCED
    off = net(relay=False)
    register(off.peer(A), "arena")
    c2 = off.peer(B)
    c2.ask(HsKind.JOIN, ["arena", "alice", []])
    assert error(c2.ask_one(HsKind.RELAY_REQUEST, ["arena", "alice"])) is \
        ErrorCode.RELAY_DISABLED


def test_relay_rate_and_lifetime_are_capped() -> None:
    n = net(relay_bytes_per_sec=10_000, relay_idle_timeout=5.0, relay_max_duration=100.0)
    _, _, relay_id = _relayed(n)
    data = encode_relay(relay_id, header(Kind.DATA) + bytes(1000 - RELAY_HEADER_SIZE
                                                            - HEADER_SIZE))
    assert len(data) == 1000
    passed = sum(bool(n.core.receive(data, B, 0.0)) for _ in range(50))
    assert passed == 20  # the burst: two seconds' worth
    passed = sum(bool(n.core.receive(data, B, 1.0)) for _ in range(50))
    assert passed == 10  # refilled at 10 kB/s
    n.core.expire(7.0)
    assert n.core.relays == {}  # idle too long
    n2 = net(relay_max_duration=10.0, intro_valid=1000.0)
    _, _, rid2 = _relayed(n2)
    for t in range(12):
        n2.core.receive(encode_relay(rid2, header(Kind.DATA)), B, float(t))
        n2.core.expire(float(t))
    assert n2.core.relays == {}  # lived too long, however busy


def test_server_shell_serves_and_stops() -> None:
    srv = HandshakeServer("127.0.0.1", 0)
    srv.start()
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        ch = ServerChannel(os.urandom, pinned=srv.fingerprint)
        s.sendto(encode_cookie_request(7), srv.address)
        rid, cookie, public = decode_cookie(s.recvfrom(2048)[0])
        assert rid == 7 and fingerprint(public) == srv.fingerprint
        ch.learn(cookie, public)
        s.sendto(ch.seal(HsKind.LIST, 42, [""], LIST_REQUEST_SIZE), srv.address)
        assert ch.open(s.recvfrom(2048)[0]) == (HsKind.LIST_REPLY, 42, [[], False])
        s.close()
    finally:
        srv.stop()


def test_importing_server_never_imports_pygame() -> None:
    code = "import sys, server, server.__main__; assert 'pygame' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_server_command_line_help() -> None:
    out = subprocess.run([sys.executable, "-m", "server", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--port" in out and "5160" in out and "--key-file" in out
    assert "--print-fingerprint" in out


def test_the_key_file_is_made_private_kept_and_checked(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state" / "hs.key"
    key = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(path).public == key.public  # the same key at every start
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="server"):
        assert load_or_create(path).public == key.public
    assert "chmod 600" in caplog.text
    out = subprocess.run([sys.executable, "-m", "server", "--key-file", str(path),
                          "--print-fingerprint"], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == fingerprint(key.public)
    assert re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){7}", out.strip())
    bad = tmp_path / "bad.key"
    for text in ["", "hello\n", "pygame-p2p handshake-server key v1\nzz\n",
                 "pygame-p2p handshake-server key v1\n" + "00" * 31 + "\n"]:
        bad.write_text(text)
        with pytest.raises(KeyFileError):
            load_or_create(bad)
    res = subprocess.run([sys.executable, "-m", "server", "--key-file", str(bad),
                          "--print-fingerprint"], capture_output=True, text=True, check=False)
    assert res.returncode == 1 and res.stdout == ""
    assert "cannot use the key file" in res.stderr


def test_the_default_key_path_follows_xdg_state_home(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "server", "--print-fingerprint"], env=env,
                         capture_output=True, text=True, check=True).stdout
    path = tmp_path / "pygame-p2p" / "handshake-server.key"
    assert out.strip() == fingerprint(load_or_create(path).public)
    # Nowhere to keep the default key: a key for this run, and a warning saying so.
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    env["XDG_STATE_HOME"] = str(blocked)
    res = subprocess.run([sys.executable, "-m", "server", "--print-fingerprint"], env=env,
                         capture_output=True, text=True, check=True)
    assert re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){7}", res.stdout.strip())
    assert "for this run only" in res.stderr

"""The handshake server from the attacker's seat (issue 10). Each test is an attack that
worked against the v1 server; each now fails, and the core never raises."""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

import pytest

from framework.protocol.constants import (
    JOIN_TOKEN_SIZE,
    MAX_DATAGRAM,
    MAX_NAME_LENGTH,
    RELAY_ID_SIZE,
    TOKEN_SIZE,
)
from framework.protocol.crypto import (
    AEAD_NONCE_SIZE,
    PUBLIC_KEY_SIZE,
    Aead,
    KeyPair,
    channel_keys,
    fingerprint,
)
from framework.protocol.errors import ProtocolError
from framework.protocol.hschannel import KeyMismatch, ServerChannel
from framework.protocol.limits import prefix_of
from framework.protocol.names import is_valid_name, normalize_name
from framework.protocol.wire import (
    HS_SCHEMAS,
    LIST_REQUEST_SIZE,
    REQUEST_SIZE,
    CandidateKind,
    ErrorCode,
    HsKind,
    Kind,
    decode_cookie,
    encode_cookie_request,
    encode_hs_body,
    encode_relay,
    header,
    peek_kind,
    sealed_request_head,
)
from server import ServerConfig
from tests.hspeer import Address, HsNet, HsPeer, Opened, seeded_bytes

A = ("198.51.100.7", 4000)
B = ("198.51.100.8", 4001)
C = ("203.0.113.9", 5555)
LAN, MAPPED = int(CandidateKind.LAN), int(CandidateKind.MAPPED)
#: 32 CJK ideographs are 96 bytes of UTF-8; 32 Cyrillic letters are 64.
CJK = [chr(0x4E00 + i) for i in range(0, 2000, 7)]
CYRILLIC = [chr(c) for c in range(0x0430, 0x0450)]
FULLWIDTH = "\uff41\uff52\uff45\uff4e\uff41"  # "arena" in full-width letters


def long_names(alphabet: list[str], count: int) -> list[str]:
    rng = random.Random(len(alphabet) * 1000 + count)
    return ["".join(rng.choice(alphabet) for _ in range(MAX_NAME_LENGTH)) for _ in range(count)]


def error(r: Opened) -> ErrorCode:
    assert r.kind is HsKind.HS_ERROR
    return ErrorCode(r.fields[0])


def register(p: HsPeer, name: str, now: float = 0.0,
             candidates: list[list[Any]] | None = None) -> Opened:
    return p.ask_one(HsKind.REGISTER, [name, candidates or [], False, 60.0, 0], now)


def read_list(p: HsPeer, size: int = LIST_REQUEST_SIZE, now: float = 0.0) -> list[str]:
    """Every page, as a peer asks for them; checks each reply's size."""
    names: list[str] = []
    after, more = "", True
    while more:
        r = p.ask_one(HsKind.LIST, [after], now, size)
        entries, more = r.fields
        assert entries or not more, "a page with nothing on it would never end"
        names += [e[0] for e in entries]
        after = names[-1] if names else after
    assert all(reply <= request for request, reply in p.exchanges)
    return names


# --- 1. one IP stops the server with long names -------------------------------------


@pytest.mark.parametrize("alphabet", [CJK, CYRILLIC], ids=["cjk", "cyrillic"])
def test_pages_of_the_longest_names_always_fit_their_request(alphabet: list[str]) -> None:
    n = HsNet(ServerConfig(requests_per_sec_per_ip=1e9, request_burst=1e9))
    names = long_names(alphabet, 16)
    for i, name in enumerate(names):  # all from one IP, as in the issue
        assert register(n.peer(("198.51.100.1", 1000 + i)), name).kind is HsKind.REGISTERED
    assert read_list(n.peer(C)) == sorted(names)
    for i, name in enumerate(long_names(alphabet, 300)):  # and many more, from anywhere
        register(n.peer((f"10.{i // 200}.{i % 200}.1", 1)), name)
    everyone = sorted(n.core.registrations)
    assert read_list(n.peer(("192.0.2.1", 1))) == everyone
    assert read_list(n.peer(("192.0.2.2", 1)), size=REQUEST_SIZE) == everyone  # smaller asks
    assert n.core.stats.internal_errors == 0 and n.core.stats.amplification_refused == 0


# --- 4. amplification ---------------------------------------------------------------


def test_no_reply_of_any_kind_is_larger_than_its_request() -> None:
    n = HsNet(ServerConfig(max_relays_per_ip=1))
    # The largest answers: IPv6 sources, the longest literal IPs and names.
    host_ip, client_ip = "2001:db8:ffff:ffff:ffff:ffff:ffff:1", "2001:db8:eeee:eeee::2"
    host, client = n.peer((host_ip, 65535)), n.peer((client_ip, 65535))
    long_lan = [[f"fdff:ffff:ffff:ffff:ffff:ffff:255.255.255.{i}", 65535, LAN]
                for i in range(3)]
    game, user = long_names(CJK, 2)
    host_lan = [*long_lan[:2], [host_ip, 1, MAPPED]]
    token = register(host, game, candidates=host_lan).fields[0]
    register(host, game, candidates=host_lan)  # the same again
    client.ask(HsKind.REGISTER, [game, [], False, 60.0, 0])  # NAME_TAKEN
    host.ask(HsKind.REFRESH, [game, token])
    client.ask(HsKind.REFRESH, [game, token])  # NOT_REGISTERED
    intro = client.ask_one(HsKind.JOIN, [game, user, long_lan])
    assert intro.kind is HsKind.INTRODUCE and len(intro.fields[1]) == 4
    client.ask(HsKind.JOIN, ["nobody", user, []])  # NO_SUCH_SERVER
    client.ask(HsKind.JOIN, [game, game, []])  # BAD_NAME
    client.ask(HsKind.RELAY_REQUEST, [game, user])
    host.ask(HsKind.RELAY_REQUEST, [game, user])
    client.ask(HsKind.JOIN, [game, "other", []])
    client.ask(HsKind.RELAY_REQUEST, [game, "other"])  # TOO_MANY
    client.ask(HsKind.RELAY_REQUEST, [game, "nobody"])  # NOT_INTRODUCED
    client.ask(HsKind.LIST, [""])
    host.ask(HsKind.UNREGISTER, [game, token])
    exchanges = host.exchanges + client.exchanges
    assert len(exchanges) == 17 and all(reply <= request for request, reply in exchanges)
    assert {e.kind for e in host.inbox} == {HsKind.INTRODUCE, HsKind.RELAY_READY}
    assert n.core.stats.amplification_refused == 0  # padded requests get every answer
    # Unpadded requests: whatever would be larger than the request is not sent at all.
    stingy = n.peer(("192.0.2.9", 9))
    register(n.peer(A), "g", candidates=long_lan)
    stingy_asks: list[tuple[HsKind, list[Any]]] = [
        (HsKind.JOIN, ["g", "u", []]), (HsKind.LIST, [""]),
        (HsKind.REGISTER, ["h", [], False, 60.0, 0])]
    for kind, fields in stingy_asks:
        stingy.ask(kind, fields, size=1)
    assert all(reply <= request for request, reply in stingy.exchanges)
    assert n.core.stats.amplification_refused == 1  # the INTRODUCE
    # Garbage and truncated requests: never more bytes back than in.
    for data in hostile_datagrams(n, stingy):
        for reply, to in n.core.receive(data, stingy.address, 0.0):
            assert to == stingy.address and len(reply) <= len(data)
    assert n.core.stats.internal_errors == 0


# --- 7/8. spoofed introductions, the token in clear -----------------------------------


def test_only_the_server_can_seal_a_reply_and_only_its_peer_can_open_it() -> None:
    n = HsNet()
    host, client = n.peer(A), n.peer(B)
    register(host, "arena")
    intro = client.ask_one(HsKind.JOIN, ["arena", "alice", []])
    token = intro.fields[3]
    # The token travels sealed: it is nowhere in the datagram's bytes.
    sealed = n.core.keys.seal_reply(client.channel.share, HsKind.INTRODUCE, 1, intro.fields)
    assert token not in sealed
    # Another peer (another channel) cannot open it...
    with pytest.raises(ProtocolError):
        host.channel.open(sealed)
    # ...and an impostor with another key cannot make a reply the host accepts, whatever
    # source address it spoofs (a spoofed INTRODUCE or RELAY_READY).
    impostor = HsNet(seed=2)
    forgeries: list[tuple[HsKind, list[Any]]] = [
        (HsKind.INTRODUCE, ["mallory", [[C[0], C[1], 0]], False, bytes(JOIN_TOKEN_SIZE), 30.0]),
        (HsKind.RELAY_READY, [bytes(RELAY_ID_SIZE), "alice"])]
    for kind, fields in forgeries:
        forged = impostor.core.keys.seal_reply(host.channel.share, kind, 0, fields)
        with pytest.raises(ProtocolError):
            host.channel.open(forged)


def test_a_peer_pinning_the_fingerprint_refuses_another_server() -> None:
    real, impostor = HsNet(seed=1), HsNet(seed=2)
    pinned = fingerprint(real.key.public)
    assert real.core.fingerprint == pinned
    p = impostor.peer(A, pinned=pinned)
    with pytest.raises(KeyMismatch):
        p.get_cookie()
    ok = real.peer(A, pinned=pinned)
    ok.get_cookie()
    # A COOKIE later claiming another key (a spoofed answer) is refused too.
    [(data, _)] = impostor.core.receive(encode_cookie_request(1), A, 0.0)
    _, cookie, public = decode_cookie(data)
    with pytest.raises(KeyMismatch):
        ok.channel.learn(cookie, public)
    tofu = ServerChannel(seeded_bytes(5))  # no pin: the first key is kept
    tofu.learn(cookie, public)
    with pytest.raises(KeyMismatch):
        tofu.learn(cookie, real.key.public)


# --- names -----------------------------------------------------------------------------


def test_look_alike_names_are_refused() -> None:
    n = HsNet()
    assert register(n.peer(A), "arena").kind is HsKind.REGISTERED
    other = n.peer(B)
    for look_alike in ["ARENA", "Arena", normalize_name(FULLWIDTH.upper())]:
        assert error(register(other, look_alike)) is ErrorCode.LOOK_ALIKE
    # Case and the letters that look like digits together: "HELLO" is "hello".
    assert register(n.peer(("192.0.2.10", 1)), "hello").kind is HsKind.REGISTERED
    assert register(n.peer(("192.0.2.11", 1)), "Ill").kind is HsKind.REGISTERED
    for look_alike in ["HELLO", "He1lo", "lll", "III"]:
        assert error(register(other, look_alike)) is ErrorCode.LOOK_ALIKE
    # The full-width "arena" *is* "arena" once normalised (as every peer sends it).
    assert normalize_name(FULLWIDTH) == "arena"
    assert error(register(other, normalize_name(FULLWIDTH))) is ErrorCode.NAME_TAKEN
    # Mixed scripts (a Cyrillic a) and invisible characters never pass the wire's check:
    # the request is dropped, however it is sealed.
    dropped = n.core.stats.dropped
    for bad in ["\u0430rena", "are\u200bna", "arena\u3164", FULLWIDTH, "arena\u202e"]:
        assert not is_valid_name(bad)
        assert other.ask(HsKind.REGISTER, [bad, [], False, 60.0, 0]) == []
        assert other.ask(HsKind.JOIN, ["arena", bad, []]) == []
    assert n.core.stats.dropped == dropped + 10
    assert read_list(n.peer(C)) == ["Ill", "arena", "hello"]
    # Once "arena" is gone, its look-alike is free; and look-alike players can join.
    n.core.expire(61.0)
    assert register(other, "ARENA", now=61.0).kind is HsKind.REGISTERED


# --- 6. blocking joins cheaply --------------------------------------------------------------


def test_a_second_join_cannot_replace_a_pending_player() -> None:
    n = HsNet()
    host, alice, mallory = n.peer(A), n.peer(B), n.peer(C)
    register(host, "arena")
    token = alice.ask_one(HsKind.JOIN, ["arena", "alice", []], now=1.0).fields[3]
    assert error(mallory.ask_one(HsKind.JOIN, ["arena", "alice", []], now=2.0)) is \
        ErrorCode.NAME_BUSY
    assert [m.fields[0] for m in host.inbox] == ["alice"]  # the host heard of alice only
    assert host.inbox[0].fields[1][0][:2] == list(B)
    # alice, repeating JOIN while she punches, keeps her token
    assert alice.ask_one(HsKind.JOIN, ["arena", "alice", []], now=3.0).fields[3] == token
    # and mallory cannot take her relay either
    assert error(mallory.ask_one(HsKind.RELAY_REQUEST, ["arena", "alice"], now=3.0)) is \
        ErrorCode.NOT_INTRODUCED
    assert alice.ask_one(HsKind.RELAY_REQUEST, ["arena", "alice"], now=3.0).kind is \
        HsKind.RELAY_READY
    # When alice's introduction has expired, the name is free again.
    later = mallory.ask_one(HsKind.JOIN, ["arena", "alice", []], now=40.0)
    assert later.kind is HsKind.INTRODUCE and later.fields[3] != token


def test_relays_are_counted_against_the_joining_client_not_the_host() -> None:
    cap = ServerConfig.max_relays_per_ip
    n = HsNet()
    host = n.peer(A)
    register(host, "arena")
    answers = []
    for i in range(cap + 1):  # one attacker IP joins the host again and again
        mallory = n.peer(("203.0.113.66", 1000 + i))
        mallory.ask(HsKind.JOIN, ["arena", f"m{i}", []])
        answers.append(mallory.ask_one(HsKind.RELAY_REQUEST, ["arena", f"m{i}"]).kind)
    assert answers == [HsKind.RELAY_READY] * cap + [HsKind.HS_ERROR]
    assert error(host.ask_one(HsKind.RELAY_REQUEST, ["arena", f"m{cap}"])) is \
        ErrorCode.TOO_MANY  # still the attacker's quota, whoever asks
    bob = n.peer(B)  # a real player still gets a relay to that host
    bob.ask(HsKind.JOIN, ["arena", "bob", []])
    assert bob.ask_one(HsKind.RELAY_REQUEST, ["arena", "bob"]).kind is HsKind.RELAY_READY
    assert host.ask_one(HsKind.RELAY_REQUEST, ["arena", "bob"]).kind is HsKind.RELAY_READY
    assert len(n.core.relays) == cap + 1


# --- floods and prefixes --------------------------------------------------------------------


def test_an_ipv6_host_rotating_inside_its_64_is_one_source() -> None:
    n = HsNet(ServerConfig(max_registrations_per_ip=3, requests_per_sec_per_ip=5,
                           request_burst=10))
    kinds = [register(n.peer((f"2001:db8:1:2::{i:x}", 5000)), f"g{i}").kind for i in range(4)]
    assert kinds[:3] == [HsKind.REGISTERED] * 3 and kinds[3] is HsKind.HS_ERROR
    assert register(n.peer(("2001:db8:1:3::1", 5000)), "elsewhere").kind is HsKind.REGISTERED
    # 8 of its 10-request burst are spent (a cookie and a request each); rotating on:
    answered = sum(bool(n.core.receive(encode_cookie_request(1), (f"2001:db8:1:2::{i:x}:1", 1),
                                       0.0)) for i in range(1, 100))
    assert answered == 2 and n.core.stats.rate_limited == 97
    assert n.core.receive(encode_cookie_request(1), ("2001:db8:1:3::2", 1), 0.0)
    assert n.core.tracked_sources == 2


def test_a_flooding_source_is_limited_and_the_rate_table_stays_bounded() -> None:
    n = HsNet(ServerConfig(max_tracked_sources=100))
    flood = encode_cookie_request(1)
    assert sum(bool(n.core.receive(flood, A, 0.0)) for _ in range(100)) == \
        ServerConfig.request_burst
    assert sum(bool(n.core.receive(flood, A, 1.0)) for _ in range(100)) == \
        ServerConfig.requests_per_sec_per_ip
    for i in range(5000):
        n.core.receive(flood, (f"10.{i >> 8}.{i & 255}.1", 1), 2.0)
    assert n.core.tracked_sources == 100


def test_the_channel_cache_stays_bounded() -> None:
    n = HsNet(ServerConfig(max_channels=50))
    for i in range(200):  # each peer a new ephemeral key: an X25519 and a cache entry
        n.peer((f"10.0.{i}.1", 1)).ask(HsKind.LIST, [""])
    assert len(n.core.keys) == 50
    # an evicted peer is still served (its keys are derived again)
    assert n.peers[("10.0.0.1", 1)].ask_one(HsKind.LIST, [""]).kind is HsKind.LIST_REPLY


def test_introductions_are_capped_per_prefix_and_in_total() -> None:
    n = HsNet(ServerConfig(max_introductions_per_ip=3, max_introductions=5))
    register(n.peer(A), "arena")
    kinds = [n.peer(("203.0.113.66", 1000 + i)).ask_one(
        HsKind.JOIN, ["arena", f"m{i}", []]).kind for i in range(4)]
    assert kinds == [HsKind.INTRODUCE] * 3 + [HsKind.HS_ERROR]
    kinds = [n.peer((f"192.0.2.{i}", 1)).ask_one(HsKind.JOIN, ["arena", f"p{i}", []]).kind
             for i in range(3)]
    assert kinds == [HsKind.INTRODUCE] * 2 + [HsKind.HS_ERROR]


def test_spoofed_sources_get_a_cookie_and_cause_no_key_work() -> None:
    n = HsNet()
    victim = n.peer(A)
    victim.get_cookie()
    spoofer = n.peer(B)  # it can put any source on a datagram, but never sees the replies
    # A sealed request with someone else's cookie, and a share no X25519 could use: the
    # answer is a COOKIE (to the spoofed source), so the share was never looked at.
    data = raw_sealed(n, victim.channel.cookie, b"\x93\x01\x01\xc0", share=bytes(PUBLIC_KEY_SIZE))
    [(reply, to)] = n.core.receive(data, B, 0.0)
    assert peek_kind(reply) is Kind.COOKIE and to == B and len(reply) < len(data)
    assert n.core.stats.dropped == 0
    spoofer.channel.learn(victim.channel.cookie, n.key.public)
    requests: list[tuple[HsKind, list[Any]]] = [(HsKind.REGISTER, ["arena", [], False, 60.0, 0]),
                                                (HsKind.JOIN, ["arena", "x", []])]
    for kind, fields in requests:
        [(reply, _)] = spoofer.send(spoofer.seal(kind, fields))
        assert peek_kind(reply) is Kind.COOKIE
    assert n.core.registrations == {}


# --- hostile input ---------------------------------------------------------------------------


def raw_sealed(n: HsNet, cookie: bytes, plaintext: bytes, rid: int = 1,
               share: bytes | None = None) -> bytes:
    """A sealed request with any plaintext at all, as an attacker can make one."""
    key = KeyPair.generate(seeded_bytes(len(plaintext)))
    req, _ = channel_keys(key.exchange(n.key.public), key.public, n.key.public)
    nonce = bytes(AEAD_NONCE_SIZE)
    head = sealed_request_head(rid, cookie, key.public if share is None else share, nonce)
    return head + Aead(req).seal(nonce, plaintext, head)


VALID: dict[HsKind, list[Any]] = {
    HsKind.REGISTER: ["arena", [["10.0.0.1", 1, LAN]], False, 60.0, 0],
    HsKind.REFRESH: ["arena", bytes(TOKEN_SIZE)],
    HsKind.UNREGISTER: ["arena", bytes(TOKEN_SIZE)],
    HsKind.JOIN: ["arena", "alice", []],
    HsKind.LIST: [""],
    HsKind.RELAY_REQUEST: ["arena", "alice"],
}
WRONG: list[Any] = [None, -1, 2**40, 1.5, float("nan"), True, "", "x" * 100, b"", bytes(17),
                    [], [[]], [["10.0.0.1", 1]], [["example.com", 1, 1]], {}, {"a": 1}]


def hostile_datagrams(n: HsNet, attacker: HsPeer) -> list[bytes]:
    """Garbage, truncations, bad seals and wrongly typed fields, from one attacker."""
    if not attacker.channel.ready:
        attacker.get_cookie()
    cookie = attacker.channel.cookie
    rng = random.Random(7)
    out = [rng.randbytes(rng.randrange(0, MAX_DATAGRAM + 100)) for _ in range(300)]
    out += [header(k) + rng.randbytes(rng.randrange(0, 700)) for k in Kind for _ in range(20)]
    valid = [encode_cookie_request(3), encode_relay(bytes(RELAY_ID_SIZE), header(Kind.DATA)),
             *(attacker.seal(k, f) for k, f in VALID.items())]
    out += [d[:i] for d in valid for i in range(0, len(d), 3)]  # every kind, truncated
    for d in valid[2:]:  # bad tags: one flipped bit anywhere after the cookie
        for i in (60, 90, len(d) - 1):
            flipped = bytearray(d)
            flipped[i] ^= 1
            out.append(bytes(flipped))
    body = encode_hs_body(HsKind.LIST, 1, [""])
    out += [raw_sealed(n, cookie, body, share=bytes(PUBLIC_KEY_SIZE)),  # an all-zero X25519 share
            raw_sealed(n, cookie, body, share=b"\x01" + bytes(31)),  # a low-order point
            raw_sealed(n, cookie, body, rid=2),  # header and body disagree on the id
            raw_sealed(n, cookie, b"\x93\x09\x01" + b"\x91" * 1000 + b"\xc0"),  # depth 1000
            raw_sealed(n, cookie, b"\x91" * 100_000 + b"\xc0"),
            raw_sealed(n, cookie, b"\xdd\xff\xff\xff\xff"),  # an array of 4 billion
            raw_sealed(n, cookie, b""),
            raw_sealed(n, cookie, encode_hs_body(HsKind.REGISTERED, 1, [  # a reply kind
                bytes(TOKEN_SIZE), "192.0.2.1", 1, 1.0]))]
    for kind, fields in VALID.items():  # wrong types in every field
        for i in range(len(fields) + 1):
            for wrong in WRONG:
                f = [*fields, b""]
                f[i] = wrong
                if not HS_SCHEMAS[kind][i](wrong):
                    out.append(raw_sealed(n, cookie, encode_hs_body(kind, 1, f)))
    return out


def test_hostile_input_is_dropped_and_counted_and_never_raises() -> None:
    n = HsNet(ServerConfig(requests_per_sec_per_ip=1e9, request_burst=1e9))
    attacker = n.peer(C)
    data = hostile_datagrams(n, attacker)
    assert len(data) > 1000
    for d in data:
        for reply, to in n.core.receive(d, attacker.address, 0.0):
            # at most a COOKIE, for a sealed request whose cookie the truncation broke
            assert peek_kind(reply) is Kind.COOKIE and to == C and len(reply) <= len(d)
    st = n.core.stats
    assert st.internal_errors == 0 and st.dropped > 900 and n.core.registrations == {}
    # and the server still serves
    assert register(n.peer(A), "arena").kind is HsKind.REGISTERED


def test_a_bug_is_counted_logged_once_a_second_and_survived(
        caplog: pytest.LogCaptureFixture) -> None:
    # Every cookie divides by zero: a stand-in for a bug.
    n = HsNet(ServerConfig(cookie_window=0.0, requests_per_sec_per_ip=1e9, request_burst=1e9))
    caplog.set_level(logging.ERROR, logger="server")
    secret = "x\n" * 40
    for i in range(100):
        data = encode_cookie_request(i) + secret.encode()
        assert n.core.receive(data, A, i / 100) == []
    assert n.core.stats.internal_errors == 100
    assert len(caplog.records) == 1
    n.core.receive(encode_cookie_request(1), A, 1.0)
    assert len(caplog.records) == 2
    assert "ZeroDivisionError" in caplog.text and "x\n" not in caplog.text


def test_random_traffic_keeps_the_invariants() -> None:
    """Many peers doing valid but random things at random times, look-alike and long
    names included: no internal error, no reply larger than its padded request, the list
    always exactly the live names, the caps always held."""
    cfg = ServerConfig(max_registrations_per_ip=3, max_relays_per_ip=2,
                       max_introductions_per_ip=4, requests_per_sec_per_ip=1e9,
                       request_burst=1e9)
    n = HsNet(cfg, seed=11)
    rng = random.Random(11)
    names = ["arena", "ARENA", "Arena", "pong", "p0ng", *long_names(CJK, 3),
             *long_names(CYRILLIC, 3)]
    addresses = [(f"198.51.100.{i % 4}", 1000 + i) for i in range(12)]
    addresses += [(f"2001:db8:0:{i % 2}::{i:x}", 7) for i in range(1, 6)]
    peers = [n.peer(a) for a in addresses]
    tokens: dict[tuple[str, Address], bytes] = {}
    now = 0.0
    for _ in range(3000):
        now += rng.expovariate(4.0)
        p = rng.choice(peers)
        game, user = rng.choice(names), rng.choice(names)
        op = rng.randrange(7)
        if op == 0:
            r = register(p, game, now, [["10.0.0.1", 1, LAN]] if rng.random() < 0.5 else [])
            if r.kind is HsKind.REGISTERED:
                tokens[(game, p.address)] = r.fields[0]
        elif op == 1:
            p.ask(HsKind.REFRESH, [game, tokens.get((game, p.address), bytes(TOKEN_SIZE))],
                  now)
        elif op == 2 and rng.random() < 0.3:
            p.ask(HsKind.UNREGISTER, [game, tokens.get((game, p.address),
                                                      bytes(TOKEN_SIZE))], now)
        elif op == 3:
            p.ask(HsKind.JOIN, [game, user, []], now)
        elif op == 4:
            p.ask(HsKind.RELAY_REQUEST, [game, user], now)
        elif op == 5:
            live = sorted(name for name, reg in n.core.registrations.items()
                          if reg.expires > now)
            assert read_list(p, now=now) == live
        elif rng.random() < 0.1:
            n.core.expire(now)
        prefixes = [prefix_of(reg.public[0]) for reg in n.core.registrations.values()]
        assert max(Counter(prefixes).values(), default=0) <= cfg.max_registrations_per_ip
    st = n.core.stats
    assert st.internal_errors == 0 and st.amplification_refused == 0
    assert st.registrations > 10 and st.introductions > 10 and st.relays_opened > 0
    assert st.errors[ErrorCode.LOOK_ALIKE] > 0 and st.errors[ErrorCode.NAME_BUSY] > 0
    assert all(reply <= request for p in peers for request, reply in p.exchanges)

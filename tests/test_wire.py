"""The wire format and message values: round trips, and the guarded boundary."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.protocol.config import Config
from framework.protocol.connection import Connection
from framework.protocol.constants import MAX_DATAGRAM
from framework.protocol.crypto import KeyPair
from framework.protocol.errors import ProtocolError
from framework.protocol.hschannel import ServerChannel, ServerKeys
from framework.protocol.protection import PacketProtection
from framework.protocol.values import check_depth, decode_value, encode_value
from framework.protocol.wire import (
    HS_SCHEMAS,
    LIST_REQUEST_SIZE,
    RELAY_BIND_SIZE,
    REQUEST_SIZE,
    REQUESTS,
    SCHEMAS,
    HsKind,
    Kind,
    decode_control,
    decode_hs_body,
    decode_relay_bind,
    encode_control,
    encode_hs_body,
    encode_relay_bind,
    peek_kind,
)
from tests.fakenet import seeded_bytes

PUBLIC = ["203.0.113.5", 40000, 0]
LAN = ["192.168.1.2", 5000, 1]
SAMPLES: dict[Kind, list[Any]] = {
    Kind.PUNCH: ["alice", "host", b"p" * 8, b"m" * 16],
    Kind.PUNCH_ACK: ["host", "alice", b"p" * 8, b"m" * 16],
    Kind.HELLO: ["alice", "host", b"c" * 32, b"A" * 33, b"m" * 16, b""],
    Kind.CHALLENGE: [b"s" * 32, b"B" * 33, True, b"c" * 16, b"m" * 16],
    Kind.AUTH: [b"a" * 16, b"m" * 16, b""],
    Kind.WELCOME: [b"w" * 16],
    Kind.REJECT: [8, 0, b"m" * 16],
}
HS_SAMPLES: dict[HsKind, list[Any]] = {
    HsKind.REGISTER: ["host", [LAN], True, 60.0, 0, b""],
    HsKind.REGISTERED: [b"t" * 16, "203.0.113.5", 40000, 60.0],
    HsKind.REFRESH: ["host", b"t" * 16, b""],
    HsKind.REFRESHED: [60],
    HsKind.UNREGISTER: ["host", b"t" * 16, b""],
    HsKind.UNREGISTERED: [],
    HsKind.JOIN: ["host", "alice", [LAN], b""],
    HsKind.INTRODUCE: ["host", [PUBLIC, LAN], False, b"j" * 32, 30.0],
    HsKind.LIST: ["", b""],
    HsKind.LIST_REPLY: [[["host", True], ["b", False]], False],
    HsKind.HS_ERROR: [3],
    HsKind.RELAY_REQUEST: ["host", "alice", b""],
    HsKind.RELAY_READY: [b"r" * 8, "alice"],
    HsKind.RELAY_AT: [b"r" * 8, "alice", "203.0.113.21", 5170, b"k" * 16],
    HsKind.RELAY_MOVE: [b"r" * 8, b"k" * 16, b""],
}


def test_every_peer_kind_round_trips() -> None:
    assert set(SAMPLES) == set(SCHEMAS)
    for kind, fields in SAMPLES.items():
        data = encode_control(kind, fields)
        assert data[:2] == b"P2" and data[2] == 2 and data[3] == kind
        assert len(data) <= MAX_DATAGRAM
        assert peek_kind(data) is kind
        assert decode_control(kind, data) == fields


def test_every_sealed_kind_round_trips() -> None:
    assert set(HS_SAMPLES) == set(HS_SCHEMAS)
    for kind, fields in HS_SAMPLES.items():
        assert decode_hs_body(encode_hs_body(kind, 7, fields)) == (kind, 7, fields)


def _channel() -> tuple[ServerChannel, ServerKeys]:
    rnd = seeded_bytes(3)
    keys = ServerKeys(KeyPair.generate(rnd), rnd)
    peer = ServerChannel(rnd)
    peer.learn(b"c" * 16, keys.static.public)
    return peer, keys


def test_sealed_requests_are_padded_so_answers_never_amplify() -> None:
    peer, keys = _channel()
    for kind in REQUESTS:
        fields = HS_SAMPLES[kind][:-1]
        data = peer.seal(kind, 1, fields, REQUEST_SIZE if kind is not HsKind.LIST
                         else LIST_REQUEST_SIZE)
        assert len(data) == (LIST_REQUEST_SIZE if kind is HsKind.LIST else REQUEST_SIZE)
        got_kind, rid, got, share = keys.decrypt_request(data)
        assert (got_kind, rid, got[:-1], share) == (kind, 1, fields, peer.share)
    # the largest answer, an introduction with four addresses and 32 wide characters,
    # still fits in what a request is padded to
    intro = [chr(0x4E00) * 32, [["2001:db8::1234:5678:9abc:def0", 65535, 0]] * 4, True,
             b"j" * 32, 30.0]
    reply = keys.seal_reply(peer.share, HsKind.INTRODUCE, 0xFFFFFFFF, intro)
    assert len(reply) <= REQUEST_SIZE
    assert peer.open(reply) == (HsKind.INTRODUCE, 0xFFFFFFFF, intro)


def test_a_reply_sealed_under_another_key_does_not_open() -> None:
    peer, _ = _channel()
    other = ServerKeys(KeyPair.generate(seeded_bytes(4)), seeded_bytes(5))
    forged = other.seal_reply(peer.share, HsKind.INTRODUCE, 0, HS_SAMPLES[HsKind.INTRODUCE])
    with pytest.raises(ProtocolError):
        peer.open(forged)


@pytest.mark.parametrize("data", [
    b"", b"P", b"P2\x02", b"XX\x02\x22\x90", b"P2\x01\x22\x90", b"P2\x02\xff\x90",
    b"P2\x02\x22", b"P2\x02\x22\xc1", b"P2\x02\x22" + b"\x00" * 1300,
])
def test_bad_headers_and_bodies_are_rejected(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        kind = peek_kind(data)
        decode_control(kind, data)


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_wrong_types_and_lengths_are_rejected(kind: Kind) -> None:
    fields = SAMPLES[kind]
    bad: list[list[Any]] = [fields[:-1], [*fields, 1]]
    for i, v in enumerate(fields):
        replaced = list(fields)
        replaced[i] = {"x": 1} if not isinstance(v, dict) else 1
        bad.append(replaced)
    for b in bad:
        data = encode_control(kind, b)
        with pytest.raises(ProtocolError):
            decode_control(kind, data)


def test_names_and_addresses_are_checked() -> None:
    for name in ["", "x" * 33, "tab\there", "\x00", "arena\u3164", "\u0430rena", " x"]:
        with pytest.raises(ProtocolError):
            decode_hs_body(encode_hs_body(HsKind.JOIN, 1, [name, "alice", [], b""]))
    for host in ["example.com", "localhost", "1.2.3", "", "1.2.3.4 "]:
        with pytest.raises(ProtocolError):  # literal IPs only: nothing on the wire is looked up
            decode_hs_body(encode_hs_body(HsKind.JOIN, 1, ["host", "alice", [[host, 1, 1]],
                                                         b""]))


def test_deep_nesting_is_refused() -> None:
    deep: Any = None
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(ProtocolError):
        decode_value(msgpack.packb(deep))
    shallow: Any = 1
    for _ in range(31):
        shallow = [shallow]
    check_depth(shallow)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=50) | st.binary(max_size=50),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10) | st.integers(-100, 100), children, max_size=5),
    max_leaves=20,
)


@given(values)
@settings(max_examples=300, deadline=None)
def test_values_round_trip(value: Any) -> None:
    assert decode_value(encode_value(value)) == value


@given(st.sampled_from(["<f4", "<f8", "<i2", "|u1", "|b1", "<c8", ">i4"]),
       st.lists(st.integers(0, 4), min_size=0, max_size=3))
@settings(max_examples=100, deadline=None)
def test_numpy_arrays_keep_dtype_and_shape(dtype: str, shape: list[int]) -> None:
    arr = (np.arange(math.prod(shape)) % 7).astype(dtype).reshape(shape)
    out = decode_value(encode_value({"a": arr}))["a"]
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_unsendable_values_raise_type_error() -> None:
    for bad in [object(), {1, 2}, np.array(["a"], dtype=object), lambda: 0, 2**70]:
        with pytest.raises(TypeError):
            encode_value(bad)


def test_numpy_extension_is_checked_on_decode() -> None:
    def ext(parts: list[Any]) -> bytes:
        return msgpack.packb(msgpack.ExtType(1, msgpack.packb(parts)))

    for parts in [["|O", [1], b"x" * 8], ["<f4", [3], b"x" * 4], ["zz", [1], b"x"],
                  ["<f4", [-1], b""], ["<f4", "1", b""], [1, 2]]:
        with pytest.raises(ProtocolError):
            decode_value(ext(parts))
    with pytest.raises(ProtocolError):
        decode_value(msgpack.packb(msgpack.ExtType(9, b"")))


_PROTECTION = PacketProtection.pair(seeded_bytes(9))[0]


@given(st.binary(max_size=1400))
@settings(max_examples=1000, deadline=None)
def test_no_input_raises_past_the_boundary(data: bytes) -> None:
    try:
        kind = peek_kind(data)
        if kind is Kind.DATA:
            Connection(Config(), 0.0, _PROTECTION).receive(data, 0.0)
        else:
            decode_control(kind, data)
    except ProtocolError:
        pass


@given(st.sampled_from(list(SAMPLES)), st.data())
@settings(max_examples=500, deadline=None)
def test_mutated_packets_raise_nothing_but_protocol_error(kind: Kind, data: st.DataObject
                                                          ) -> None:
    raw = bytearray(encode_control(kind, SAMPLES[kind]))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        k = peek_kind(bytes(raw))
        if k is not Kind.DATA:
            decode_control(k, bytes(raw))
    except ProtocolError:
        pass


LAN_SAMPLES: dict[Kind, list[Any]] = {
    Kind.LAN_QUERY: [b"q" * 8],
    Kind.LAN_ANNOUNCE: [b"q" * 8, "host", True],
    Kind.LAN_JOIN: ["alice", "host", b"n" * 8, b"c" * 32],
    Kind.LAN_INTRO: [b"n" * 8, False, b"s" * 32, b"j" * 48, 5],
}


def test_every_lan_kind_round_trips_and_queries_are_padded() -> None:
    from framework.protocol.wire import (  # noqa: PLC0415
        LAN_JOIN_SIZE,
        LAN_QUERY_SIZE,
        LAN_SCHEMAS,
        decode_lan,
        encode_lan,
    )

    assert set(LAN_SAMPLES) == set(LAN_SCHEMAS)
    for kind, fields in LAN_SAMPLES.items():
        data = encode_lan(kind, fields)
        assert peek_kind(data) is kind
        got = decode_lan(kind, data)
        padded = kind in (Kind.LAN_QUERY, Kind.LAN_JOIN)
        assert (got[:-1] if padded else got) == fields
        if padded:
            assert len(data) == (LAN_QUERY_SIZE if kind is Kind.LAN_QUERY else LAN_JOIN_SIZE)
        # wrong types and lengths
        for i, v in enumerate(fields):
            replaced = list(fields)
            replaced[i] = {"x": 1} if not isinstance(v, dict) else 1
            with pytest.raises(ProtocolError):
                decode_lan(kind, encode_lan(kind, replaced))
        with pytest.raises(ProtocolError):
            decode_lan(kind, encode_lan(kind, [*fields, b"", 1]))
    with pytest.raises(ProtocolError):
        decode_lan(Kind.PUNCH, encode_control(Kind.PUNCH, SAMPLES[Kind.PUNCH]))


def test_relay_binds_round_trip_and_refuse_what_is_not_one() -> None:
    data = encode_relay_bind(Kind.RELAY_BIND, b"r" * 8, 1, 2**64 - 1, b"t" * 16)
    assert len(data) == RELAY_BIND_SIZE and peek_kind(data) is Kind.RELAY_BIND
    assert decode_relay_bind(data) == (b"r" * 8, 1, 2**64 - 1, b"t" * 16)
    with pytest.raises(ProtocolError):
        decode_relay_bind(data + b"x")
    with pytest.raises(ProtocolError):
        decode_relay_bind(data[:-1])
    with pytest.raises(ProtocolError, match="two ends"):
        decode_relay_bind(encode_relay_bind(Kind.RELAY_BOUND, b"r" * 8, 2, 1, b"t" * 16))

"""The wire format and message values: round trips, and the guarded boundary."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.protocol.connection import Connection, ConnectionConfig
from framework.protocol.constants import MAX_DATAGRAM
from framework.protocol.errors import ProtocolError
from framework.protocol.requests import encode_request
from framework.protocol.values import decode_value, encode_value
from framework.protocol.wire import (
    COOKIE_KINDS,
    LIST_REQUEST,
    MIN_REQUEST,
    SCHEMAS,
    Kind,
    decode_control,
    encode_control,
    peek_kind,
)

SAMPLES: dict[Kind, list[Any]] = {
    Kind.REGISTER: [1, "host", "192.168.1.2", 5000, True, 60.0, b"c" * 16, b""],
    Kind.REGISTERED: [1, b"t" * 16, "203.0.113.5", 40000, 60.0],
    Kind.REFRESH: [2, "host", b"t" * 16, b"\x00" * 100],
    Kind.REFRESHED: [2, 60],
    Kind.UNREGISTER: [3, "host", b"t" * 16, b""],
    Kind.UNREGISTERED: [3],
    Kind.JOIN: [4, "host", "alice", "10.0.0.2", 4000, b"", b""],
    Kind.INTRODUCE: [4, "host", "203.0.113.5", 1, "10.0.0.1", 2, False, b"n" * 16],
    Kind.LIST: [5, 0, b""],
    Kind.LIST_REPLY: [5, 0, 1, [["host", True], ["b", False]]],
    Kind.HS_ERROR: [6, 3, "no server named 'x'"],
    Kind.RELAY_REQUEST: [7, "host", "alice", b"", b""],
    Kind.COOKIE: [7, b"k" * 16],
    Kind.RELAY_READY: [7, b"r" * 8, "alice"],
    Kind.PUNCH: ["alice", "host", b"p" * 8],
    Kind.PUNCH_ACK: ["host", "alice", b"p" * 8],
    Kind.HELLO: ["alice", "host", b"c" * 16, b"m" * 16],
    Kind.CHALLENGE: [b"s" * 16, True, b"m" * 16],
    Kind.AUTH: [b"a" * 32],
    Kind.WELCOME: [b"w" * 32],
    Kind.REJECT: [8, "wrong password", b"m" * 16],
}


def test_every_control_kind_round_trips() -> None:
    assert set(SAMPLES) == set(SCHEMAS)
    for kind, fields in SAMPLES.items():
        data = encode_control(kind, fields)
        assert data[:2] == b"P2" and data[2] == 1 and data[3] == kind
        assert len(data) <= MAX_DATAGRAM
        assert peek_kind(data) is kind
        assert decode_control(kind, data) == fields


def test_requests_are_padded_so_answers_never_amplify() -> None:
    for kind in (Kind.REGISTER, Kind.REFRESH, Kind.UNREGISTER, Kind.JOIN, Kind.RELAY_REQUEST):
        data = encode_request(kind, 1, SAMPLES[kind][1:-2 if kind in COOKIE_KINDS else -1])
        assert len(data) == MIN_REQUEST
    assert len(encode_request(Kind.LIST, 1, [0])) == LIST_REQUEST
    assert len(encode_request(Kind.JOIN, 1, SAMPLES[Kind.JOIN][1:-2], b"c" * 16)) == MIN_REQUEST


def test_compact() -> None:
    # before padding, a REGISTER (with its cookie) is a few dozen bytes, not the
    # original's long JSON object
    assert len(encode_control(Kind.REGISTER, SAMPLES[Kind.REGISTER])) < 64


@pytest.mark.parametrize("data", [
    b"", b"P", b"P2\x01", b"XX\x01\x01\x90", b"P2\x02\x01\x90", b"P2\x01\xff\x90",
    b"P2\x01\x01", b"P2\x01\x01\xc1", b"P2\x01\x01" + b"\x00" * 1300,
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
        data = b"P2\x01" + bytes([kind]) + msgpack.packb(b)
        with pytest.raises(ProtocolError):
            decode_control(kind, data)


def test_names_are_checked() -> None:
    for name in ["", "x" * 33, "tab\there", "\x00"]:
        data = b"P2\x01" + bytes([Kind.JOIN]) + msgpack.packb([1, name, "a", "h", 1, b"", b""])
        with pytest.raises(ProtocolError):
            decode_control(Kind.JOIN, data)


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


@given(st.binary(max_size=1400))
@settings(max_examples=1000, deadline=None)
def test_no_input_raises_past_the_boundary(data: bytes) -> None:
    try:
        kind = peek_kind(data)
        if kind is Kind.DATA:
            Connection(ConnectionConfig(), 0.0).receive(data, 0.0)
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

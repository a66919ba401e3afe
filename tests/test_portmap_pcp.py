"""PCP (RFC 6887) MAP codec and client, on a fake clock."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from framework.protocol.portmap import pcp
from framework.protocol.portmap.common import (
    MappingDeleted,
    MappingEstablished,
    MappingFailed,
    MappingLost,
    MappingState,
)
from framework.protocol.portmap.pcp import PcpClient

GW = ("10.0.0.1", 5351)
NONCE = bytes(range(1, 13))


def response(result: int = 0, lifetime: int = 600, epoch: int = 50, nonce: bytes = NONCE,
             internal: int = 4000, ext: tuple[str, int] = ("100.63.0.1", 4000),
             opcode: int = 0x81) -> bytes:
    return (pcp.RESPONSE_HEADER.pack(2, opcode, 0, result, lifetime, epoch)
            + pcp.MAP_BODY.pack(nonce, 17, internal, ext[1], pcp.mapped_v6(ext[0])))


def state(c: Any) -> MappingState:
    """The client's state, read fresh (no narrowing across calls)."""
    return MappingState(c.state)


def events(c: PcpClient) -> list[object]:
    out: list[object] = []
    while (e := c.next_event()) is not None:
        out.append(e)
    return out


def client(**kw: object) -> PcpClient:
    return PcpClient(GW, 4000, "10.0.0.2", nonce=NONCE, lifetime=600,
                     rng=random.Random(7), **kw)  # type: ignore[arg-type]


def test_map_request_layout() -> None:
    data = pcp.encode_map_request("10.0.0.2", NONCE, 4000, 600)
    assert len(data) == 60
    assert data[:24] == bytes.fromhex(
        "02 01 0000 00000258" + "00000000000000000000ffff0a000002")
    # nonce, protocol 17, 3 reserved, internal 4000, external 0, ::ffff:0.0.0.0
    assert data[24:] == NONCE + bytes.fromhex(
        "11 000000 0fa0 0000" + "00000000000000000000ffff00000000")


def test_map_renew_delete_with_the_same_nonce() -> None:
    c = client()
    c.start(0.0)
    [first] = c.datagrams_to_send()
    assert first == pcp.encode_map_request("10.0.0.2", NONCE, 4000, 600)
    c.receive_datagram(response(ext=("100.63.0.1", 4321)), GW, 0.05)
    assert events(c) == [MappingEstablished("pcp", ("100.63.0.1", 4321), 600.0)]
    assert c.get_timer() == 300.05  # renew at half the lifetime (§11.2.1)
    c.handle_timer(300.05)
    [renew] = c.datagrams_to_send()
    assert renew == pcp.encode_map_request("10.0.0.2", NONCE, 4000, 600, ("100.63.0.1", 4321))
    c.receive_datagram(response(ext=("100.63.0.1", 4321), epoch=350), GW, 300.1)
    assert events(c) == []
    c.close(400.0)
    [delete] = c.datagrams_to_send()
    assert delete == pcp.encode_map_request("10.0.0.2", NONCE, 4000, 0, ("100.63.0.1", 4321))
    c.receive_datagram(response(lifetime=0, ext=("0.0.0.0", 0), epoch=450), GW, 400.1)
    assert state(c) is MappingState.CLOSED
    assert events(c) == [MappingDeleted("pcp", True)]


def test_retransmission_follows_irt_with_jitter_and_gives_up() -> None:
    c = client()
    c.start(0.0)
    times = [0.0]
    c.datagrams_to_send()
    while state(c) is MappingState.REQUESTING:
        timer = c.get_timer()
        assert timer is not None
        c.handle_timer(timer)
        if c.datagrams_to_send():
            times.append(timer)
    assert len(times) == 2
    assert 2.7 <= times[1] <= 3.3  # IRT 3 s, RAND in [-0.1, 0.1] (§8.1.1)
    assert events(c) == [MappingFailed("pcp", "no pcp answer from 10.0.0.1")]


def test_renewal_without_answer_keeps_trying_until_the_lifetime_ends() -> None:
    c = client()
    c.start(0.0)
    c.receive_datagram(response(), GW, 0.0)
    events(c)
    t = 300.0
    sent = 0
    while True:
        c.handle_timer(t)
        sent += len(c.datagrams_to_send())
        if state(c) is not MappingState.MAPPED:
            break
        timer = c.get_timer()
        assert timer is not None
        t = timer
    assert t == 600.0
    assert sent > 2
    assert [type(e) for e in events(c)] == [MappingLost]


def test_natpmp_only_server_is_recognised() -> None:
    c = client()
    c.start(0.0)
    c.receive_datagram(bytes.fromhex("00 81 0001 00000010"), GW, 0.01)
    assert c.natpmp_only
    assert state(c) is MappingState.FAILED


def test_unexpected_replies_are_dropped() -> None:
    c = client()
    c.start(0.0)
    bad = [
        response(nonce=bytes(12)), response(internal=4001), response(opcode=0x01),
        response(opcode=0x82), response()[:59], response()[:58] + b"\0\0" + b"\0",
        response(ext=("0.0.0.0", 4000)), b"\x03" + response()[1:], bytes(1101),
        response()[:24],
    ]
    for data in bad:
        c.receive_datagram(data, GW, 0.1)
    assert c.dropped == len(bad)
    assert state(c) is MappingState.REQUESTING
    # An error with its opcode data ends it.
    c.receive_datagram(response(result=2), GW, 0.2)
    assert state(c) is MappingState.FAILED


def test_nonce_must_be_96_bits() -> None:
    try:
        PcpClient(GW, 4000, "10.0.0.2", nonce=b"short")
    except ValueError:
        return
    raise AssertionError("a short nonce was taken")


@given(st.binary(max_size=128))
def test_random_bytes_never_raise(data: bytes) -> None:
    c = client()
    c.start(0.0)
    c.receive_datagram(data, GW, 0.1)

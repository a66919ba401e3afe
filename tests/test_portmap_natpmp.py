"""NAT-PMP (RFC 6886) codec and client, on a fake clock."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from framework.protocol.portmap import natpmp
from framework.protocol.portmap.common import (
    MappingDeleted,
    MappingEstablished,
    MappingFailed,
    MappingState,
)
from framework.protocol.portmap.natpmp import NatPmpClient

GW = ("10.0.0.1", 5351)


def address_reply(ip: bytes = bytes([100, 63, 0, 1]), epoch: int = 100, result: int = 0) -> bytes:
    return natpmp.ADDRESS_REPLY.pack(0, 128, result, epoch, ip)


def map_reply(ext: int = 4000, lifetime: int = 7200, epoch: int = 100, result: int = 0,
              internal: int = 4000) -> bytes:
    return natpmp.MAP_REPLY.pack(0, 129, result, epoch, internal, ext, lifetime)


def state(c: Any) -> MappingState:
    """The client's state, read fresh (no narrowing across calls)."""
    return MappingState(c.state)


def events(c: NatPmpClient) -> list[object]:
    out: list[object] = []
    while (e := c.next_event()) is not None:
        out.append(e)
    return out


def mapped_client() -> NatPmpClient:
    c = NatPmpClient(GW, 4000, lifetime=7200)
    c.start(0.0)
    c.datagrams_to_send()
    c.receive_datagram(address_reply(), GW, 0.01)
    c.receive_datagram(map_reply(), GW, 0.02)
    return c


def test_byte_layouts_of_section_3() -> None:
    assert natpmp.encode_address_request() == b"\x00\x00"
    # version 0, opcode 1 (UDP), reserved 0, internal 4000, suggested 4000, 7200 s
    assert natpmp.encode_map_request(4000, 4000, 7200) == bytes.fromhex(
        "00 01 0000 0fa0 0fa0 00001c20")
    # §3.4: delete with external port 0 and lifetime 0
    assert natpmp.encode_map_request(4000, 0, 0) == bytes.fromhex("00 01 0000 0fa0 0000 00000000")


def test_map_then_renew_at_half_lifetime_then_delete() -> None:
    c = NatPmpClient(GW, 4000, lifetime=7200)
    c.start(0.0)
    assert c.datagrams_to_send() == [b"\x00\x00", natpmp.encode_map_request(4000, 0, 7200)]
    c.receive_datagram(map_reply(ext=4444), GW, 0.01)
    assert state(c) is MappingState.REQUESTING  # still waiting for the public address
    c.receive_datagram(address_reply(), GW, 0.02)
    assert state(c) is MappingState.MAPPED
    assert events(c) == [MappingEstablished("natpmp", ("100.63.0.1", 4444), 7200.0)]
    assert c.get_timer() == 0.01 + 3600
    c.handle_timer(3600.0)
    assert c.datagrams_to_send() == []
    c.handle_timer(3600.01)
    assert c.datagrams_to_send() == [natpmp.encode_map_request(4000, 4444, 7200)]
    c.receive_datagram(map_reply(ext=4444, epoch=3700), GW, 3600.1)
    assert events(c) == []  # same external address: nothing new to say
    assert c.get_timer() == 3600.1 + 3600
    c.close(3700.0)
    assert c.datagrams_to_send() == [natpmp.encode_map_request(4000, 0, 0)]
    c.receive_datagram(map_reply(ext=0, lifetime=0, epoch=3800), GW, 3700.1)
    assert state(c) is MappingState.CLOSED
    assert events(c) == [MappingDeleted("natpmp", True)]


def test_retransmits_at_250ms_doubling_and_gives_up() -> None:
    c = NatPmpClient(GW, 4000)
    c.start(0.0)
    sends = {0.0: len(c.datagrams_to_send())}
    t = 0.0
    while state(c) is MappingState.REQUESTING:
        timer = c.get_timer()
        assert timer is not None
        t = timer
        c.handle_timer(t)
        n = len(c.datagrams_to_send())
        if n:
            sends[t] = n
    assert sends == {0.0: 2, 0.25: 2, 0.75: 2, 1.75: 2, 3.75: 2}
    assert t == 6.0
    assert events(c) == [MappingFailed("natpmp", "no natpmp answer from 10.0.0.1")]


def test_delete_unanswered_still_finishes() -> None:
    c = mapped_client()
    c.close(10.0)
    for _ in range(20):
        timer = c.get_timer()
        if timer is None:
            break
        c.handle_timer(timer)
    assert state(c) is MappingState.CLOSED
    assert [e for e in events(c) if isinstance(e, MappingDeleted)] == [
        MappingDeleted("natpmp", False)]


def test_error_result_fails() -> None:
    c = NatPmpClient(GW, 4000)
    c.start(0.0)
    c.receive_datagram(address_reply(result=3), GW, 0.1)
    assert state(c) is MappingState.FAILED
    assert isinstance(events(c)[0], MappingFailed)


def test_malformed_and_foreign_replies_are_dropped_and_counted() -> None:
    c = NatPmpClient(GW, 4000)
    c.start(0.0)
    bad = [
        b"", b"\x00", map_reply()[:-1], map_reply() + b"\x00", b"\x01" + map_reply()[1:],
        struct.pack("!BBH", 0, 130, 0) + bytes(12), map_reply(internal=4001),
        address_reply(ip=bytes(4)),
    ]
    for data in bad:
        c.receive_datagram(data, GW, 0.1)
    c.receive_datagram(map_reply(), ("10.0.0.9", 5351), 0.1)  # not the gateway
    c.receive_datagram(map_reply(), ("10.0.0.1", 5350), 0.1)
    assert c.dropped == len(bad) + 2
    assert state(c) is MappingState.REQUESTING
    assert events(c) == []


def test_epoch_going_back_is_noticed_and_the_renewal_remaps() -> None:
    c = mapped_client()
    c.receive_datagram(address_reply(epoch=5), GW, 100.0)  # unsolicited: not awaited
    assert c.dropped == 1
    c.handle_timer(3600.02)
    assert c.datagrams_to_send() == [natpmp.encode_map_request(4000, 4000, 7200)]
    c.receive_datagram(map_reply(epoch=3), GW, 3600.03)  # the gateway restarted
    assert c.epoch_resets == 1
    assert state(c) is MappingState.MAPPED
    assert c.external == ("100.63.0.1", 4000)


@given(st.binary(max_size=64))
def test_random_bytes_never_raise(data: bytes) -> None:
    c = NatPmpClient(GW, 4000)
    c.start(0.0)
    c.receive_datagram(data, GW, 0.1)
    assert c.state in (MappingState.REQUESTING, MappingState.FAILED, MappingState.MAPPED)

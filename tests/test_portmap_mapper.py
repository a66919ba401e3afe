"""The PortMapper shell on loopback: a fake PCP / NAT-PMP gateway, a missing gateway, and
the default route lookup. Real sockets, fake clock (``tick(now)``), no waiting on time."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from framework.portmap import PortMapper, default_gateway
from framework.protocol.portmap import natpmp, pcp
from framework.protocol.portmap.common import MappingDeleted, MappingEstablished, MappingFailed

LO = "127.0.0.1"


@pytest.fixture
def gateway() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LO, 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def drain(m: PortMapper) -> list[object]:
    out: list[object] = []
    while (e := m.next_event()) is not None:
        out.append(e)
    return out


def external(m: PortMapper) -> tuple[str, int] | None:
    """Read fresh (mypy keeps a narrowed property across calls otherwise)."""
    return m.external_address


def pcp_answer(request: bytes, ext_port: int, epoch: int) -> bytes:
    lifetime = struct.unpack_from("!I", request, 4)[0]
    nonce, _, internal, _, _ = pcp.MAP_BODY.unpack_from(request, 24)
    return (pcp.RESPONSE_HEADER.pack(2, 0x81, 0, 0, lifetime, epoch)
            + pcp.MAP_BODY.pack(nonce, 17, internal, ext_port if lifetime else 0,
                                pcp.mapped_v6("100.63.0.1" if lifetime else "0.0.0.0")))


def test_pcp_through_a_fake_gateway(gateway: socket.socket) -> None:
    m = PortMapper(4000, gateway=LO, protocols=("pcp",), lifetime=600,
                   gateway_port=gateway.getsockname()[1])
    m.tick(0.0)
    request, addr = gateway.recvfrom(2048)
    assert len(request) == 60 and request[:2] == b"\x02\x01"
    assert request[8:24] == pcp.mapped_v6(LO)  # the client IP field is our own address
    gateway.sendto(b"\x02junk", addr)  # dropped and counted, never raised
    gateway.sendto(pcp_answer(request, 4555, 10), addr)
    for i in range(1, 200):
        m.tick(i * 0.001)
        if m.external_address:
            break
    assert m.external_address == ("100.63.0.1", 4555)
    assert m.protocol == "pcp"
    assert m.stats["dropped"] == 1
    assert drain(m) == [MappingEstablished("pcp", ("100.63.0.1", 4555), 600.0)]
    m.close(1.0)
    delete, addr = gateway.recvfrom(2048)
    assert struct.unpack_from("!I", delete, 4)[0] == 0 and delete[24:36] == request[24:36]
    gateway.sendto(pcp_answer(delete, 0, 11), addr)
    for i in range(200):
        m.tick(1.0 + i * 0.001)
        if m.done():
            break
    assert m.done()
    assert external(m) is None
    assert drain(m) == [MappingDeleted("pcp", True)]
    m.shutdown()


def test_falls_back_to_natpmp_when_the_gateway_only_speaks_it(gateway: socket.socket) -> None:
    m = PortMapper(4000, gateway=LO, protocols=("pcp", "natpmp"),
                   gateway_port=gateway.getsockname()[1])
    m.tick(0.0)
    _, addr = gateway.recvfrom(2048)
    gateway.sendto(bytes.fromhex("00 81 0001 00000001"), addr)  # NAT-PMP: unsupported version
    answered: set[bytes] = set()
    for i in range(1, 400):
        m.tick(i * 0.001)
        gateway.setblocking(False)
        try:
            req, addr = gateway.recvfrom(2048)
        except BlockingIOError:
            continue
        if req == natpmp.encode_address_request() and req not in answered:
            gateway.sendto(natpmp.ADDRESS_REPLY.pack(0, 128, 0, 5, bytes([100, 63, 0, 1])), addr)
        elif req[:2] == b"\x00\x01" and req not in answered:
            gateway.sendto(natpmp.MAP_REPLY.pack(0, 129, 0, 5, 4000, 4001, 7200), addr)
        answered.add(req)
        if m.external_address:
            break
    assert m.protocol == "natpmp" and m.external_address == ("100.63.0.1", 4001)
    assert "pcp" in m.failures
    m.shutdown()


def test_a_silent_gateway_is_given_up_within_seconds() -> None:
    quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    quiet.bind((LO, 0))  # receives and never answers
    m = PortMapper(4000, gateway=LO, protocols=("pcp", "natpmp"),
                   gateway_port=quiet.getsockname()[1])
    t = 0.0
    while not m.failed and t < 30.0:
        m.tick(t)
        t += 0.05
    assert m.failed and t < 13.0
    events = drain(m)
    assert isinstance(events[-1], MappingFailed) and events[-1].protocol == "all"
    assert m.external_address is None and m.protocol is None
    m.shutdown()
    quiet.close()


def test_no_gateway_gives_up_cleanly(tmp_path: Path) -> None:
    route = tmp_path / "route"
    route.write_text("Iface\tDestination\tGateway\tFlags\n"
                     "eth0\t0000000A\t00000000\t0001\n")
    assert default_gateway(str(route)) is None
    route.write_text("Iface\tDestination\tGateway\tFlags\n"
                     "eth0\t00000000\t0100000A\t0003\n")
    assert default_gateway(str(route)) == "10.0.0.1"
    assert default_gateway(str(tmp_path / "missing")) is None
    m = PortMapper(4000, gateway=None, protocols=("pcp",))
    m.gateway = None  # as on a machine without a default route
    m.tick(0.0)
    assert m.failed
    assert drain(m) == [MappingFailed("all", "no IPv4 default gateway")]


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError):
        PortMapper(4000, protocols=("smtp",))

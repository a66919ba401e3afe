"""The userspace NAT's translation table (tests/usernat.py), pure: no namespace needed."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.usernat import NatBehavior, NatTable, parse, rewrite

PUB = "198.51.100.1"
A = ("10.0.0.2", 4000)
S1, S1B, S2 = ("203.0.113.10", 3478), ("203.0.113.10", 3479), ("203.0.113.20", 3478)


def out_port(t: NatTable, src: tuple[str, int], dst: tuple[str, int], now: float = 0.0) -> int:
    res = t.translate(src, dst, True, now)
    assert res is not None and res[0][0] == PUB and res[1] == dst
    return res[0][1]


@pytest.mark.parametrize(("mapping", "distinct"), [
    ("endpoint", 1), ("address", 2), ("address-port", 3)])
def test_mapping(mapping: str, distinct: int) -> None:
    t = NatTable(PUB, NatBehavior(mapping, "endpoint"))
    ports = {out_port(t, A, d) for d in (S1, S1B, S2)}
    assert len(ports) == distinct


@pytest.mark.parametrize(("filtering", "let_in"), [
    ("endpoint", {S1, S1B, S2}), ("address", {S1, S1B}), ("address-port", {S1})])
def test_filtering(filtering: str, let_in: set[tuple[str, int]]) -> None:
    t = NatTable(PUB, NatBehavior("endpoint", filtering))
    port = out_port(t, A, S1)
    passed = {src for src in (S1, S1B, S2) if t.translate(src, (PUB, port), False, 1.0)}
    assert passed == let_in
    assert t.translate(S1, (PUB, port), False, 1.0) == (S1, A)
    assert t.translate(S1, (PUB, port + 1), False, 1.0) is None  # nothing mapped there


def test_idle_mappings_expire() -> None:
    t = NatTable(PUB, NatBehavior("endpoint", "endpoint", timeout=30.0))
    port = out_port(t, A, S1, now=0.0)
    assert t.translate(S2, (PUB, port), False, 29.0) is not None  # refreshed at 29
    assert t.translate(S2, (PUB, port), False, 58.0) is not None
    assert t.translate(S2, (PUB, port), False, 89.0) is None


def test_hairpinning() -> None:
    b = ("10.0.0.3", 4000)
    for hairpin in (False, True):
        t = NatTable(PUB, NatBehavior("endpoint", "address-port", hairpin=hairpin))
        pa, pb = out_port(t, A, S1), out_port(t, b, S1)
        first = t.translate(b, (PUB, pa), True, 1.0)  # a's filter has not seen (PUB, pb)
        assert first is None
        res = t.translate(A, (PUB, pb), True, 2.0)
        assert res == (((PUB, pa), b) if hairpin else None)


def test_rewrite_keeps_a_valid_udp_packet() -> None:
    payload = b"hello"
    udp = struct.pack("!HHHH", 4000, 3478, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(A[0]), socket.inet_aton(S1[0]))
    new = rewrite(ip + udp, (PUB, 20001), S1)
    assert parse(new) == ((PUB, 20001), S1)
    assert new.endswith(payload)

    def fold(data: bytes) -> int:
        data += b"\0" * (len(data) % 2)
        total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return total

    assert fold(new[:20]) == 0xFFFF  # header checksum verifies
    pseudo = new[12:20] + struct.pack("!BBH", 0, 17, len(new) - 20)
    assert fold(pseudo + new[20:]) == 0xFFFF  # and the UDP checksum

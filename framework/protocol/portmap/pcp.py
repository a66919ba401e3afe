"""PCP (RFC 6887), MAP opcode only: byte layouts and the mapping client for one UDP port.

The 96-bit nonce ties replies to our mapping (§11.1) and is reused for renewals and the
deletion (lifetime 0, §15). Retransmission per §8.1.1 (IRT 3 s, doubling, ±10 % jitter),
bounded so a missing gateway is given up after a few seconds. A server that only speaks
NAT-PMP answers with version 0 and "unsupported version": ``failure`` then says so and
``natpmp_only`` is set, so the caller can fall back.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
import struct

from .client import Drop, Reply, UdpMappingClient
from .common import Address, Schedule

PORT = 5351
VERSION = 2
OP_MAP = 1
RESPONSE_BIT = 0x80
PROTO_UDP = 17
NONCE_SIZE = 12
MAX_SIZE = 1100  # §7: a PCP message is at most 1100 bytes
#: §7.1: version, opcode, reserved, requested lifetime, client IP (16, IPv4-mapped).
REQUEST_HEADER = struct.Struct("!BBHI16s")
#: §7.2: version, R|opcode, reserved, result, lifetime, epoch, 96 reserved bits.
RESPONSE_HEADER = struct.Struct("!BBBBII12x")
#: §11.1: nonce, protocol, 24 reserved bits, internal port, external port, external IP.
MAP_BODY = struct.Struct("!12sB3xHH16s")
RESULT_UNSUPP_VERSION = 1
RESULTS = {0: "SUCCESS", 1: "UNSUPP_VERSION", 2: "NOT_AUTHORIZED", 3: "MALFORMED_REQUEST",
           4: "UNSUPP_OPCODE", 5: "UNSUPP_OPTION", 6: "MALFORMED_OPTION",
           7: "NETWORK_FAILURE", 8: "NO_RESOURCES", 9: "UNSUPP_PROTOCOL",
           10: "USER_EX_QUOTA", 11: "CANNOT_PROVIDE_EXTERNAL", 12: "ADDRESS_MISMATCH",
           13: "EXCESSIVE_REMOTE_PEERS"}


def mapped_v6(ip: str) -> bytes:
    """An IPv4 address as the IPv4-mapped IPv6 address PCP carries (§5)."""
    return ipaddress.IPv6Address(f"::ffff:{ipaddress.IPv4Address(ip)}").packed


def unmapped_v4(raw: bytes) -> str | None:
    """The IPv4 address inside an IPv4-mapped IPv6 field, None for anything else."""
    v4 = ipaddress.IPv6Address(raw).ipv4_mapped
    return None if v4 is None else str(v4)


def encode_map_request(
    client_ip: str, nonce: bytes, internal_port: int, lifetime: int,
    external: Address | None = None,
) -> bytes:
    """§11.1 MAP for UDP. ``external``: the suggested address (renewals pass the one given);
    None suggests nothing (port 0, ::ffff:0.0.0.0 as §11.1 asks for IPv4)."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError("the PCP nonce is 96 bits")
    ext_ip, ext_port = external or ("0.0.0.0", 0)
    return (REQUEST_HEADER.pack(VERSION, OP_MAP, 0, lifetime, mapped_v6(client_ip))
            + MAP_BODY.pack(nonce, PROTO_UDP, internal_port, ext_port, mapped_v6(ext_ip)))


def decode_map_response(data: bytes, nonce: bytes, internal_port: int) -> Reply:
    """Parse a MAP response meant for (nonce, internal_port); raises Drop otherwise."""
    if len(data) < 4 or len(data) > MAX_SIZE:
        raise Drop(f"PCP reply of {len(data)} bytes")
    if data[0] != VERSION:
        if data[0] == 0 and struct.unpack_from("!H", data, 2)[0] == RESULT_UNSUPP_VERSION:
            return Reply("map", RESULT_UNSUPP_VERSION, 0)  # a NAT-PMP server (§9)
        raise Drop(f"PCP version {data[0]}")
    if len(data) < RESPONSE_HEADER.size or len(data) % 4:
        raise Drop(f"PCP reply of {len(data)} bytes")
    _, r_op, _, result, lifetime, epoch = RESPONSE_HEADER.unpack_from(data)
    if r_op != RESPONSE_BIT | OP_MAP:
        raise Drop(f"PCP opcode byte {r_op:#x}, not a MAP response")
    if len(data) < RESPONSE_HEADER.size + MAP_BODY.size:
        if result == 0:
            raise Drop("PCP MAP success without its body")
        return Reply("map", result, epoch, lifetime=lifetime)
    got_nonce, proto, internal, ext_port, ext_ip = MAP_BODY.unpack_from(
        data, RESPONSE_HEADER.size)
    if got_nonce != nonce:
        raise Drop("PCP reply with another nonce")
    if proto != PROTO_UDP or internal != internal_port:
        raise Drop(f"PCP reply for protocol {proto} port {internal}")
    ip = unmapped_v4(ext_ip)
    if result == 0 and lifetime and (ip is None or ip == "0.0.0.0" or ext_port == 0):
        raise Drop("PCP success without an IPv4 external address")
    return Reply("map", result, epoch, lifetime=lifetime, external_port=ext_port,
                 external_ip=ip)


class PcpClient(UdpMappingClient):
    """Maps ``internal_port`` (UDP) on the gateway with PCP MAP.

    ``client_ip``: our address towards the gateway (the PCP server checks it equals the
    source address it sees, §8.1); ``nonce``: given by tests, random otherwise.
    """

    protocol = "pcp"
    #: §8.1.1: IRT 3 s, doubling, RAND ±0.1; sends at 0 and ~3 s, given up at 6 s.
    schedule = Schedule(initial=3.0, maximum=1024.0, attempts=2, give_up=6.0, jitter=0.1)

    def __init__(
        self, server: Address, internal_port: int, client_ip: str, *, lifetime: int = 7200,
        external_port: int = 0, rng: random.Random | None = None, nonce: bytes | None = None,
    ) -> None:
        super().__init__(server, internal_port, lifetime=lifetime,
                         external_port=external_port, rng=rng)
        self.client_ip = client_ip
        self.nonce = nonce if nonce is not None else secrets.token_bytes(NONCE_SIZE)
        if len(self.nonce) != NONCE_SIZE:
            raise ValueError("the PCP nonce is 96 bits")
        self.natpmp_only = False

    def _map_request(self, lifetime: int) -> bytes:
        suggested = self.external or (
            ("0.0.0.0", self.suggested_port) if self.suggested_port else None)
        return encode_map_request(self.client_ip, self.nonce, self.internal_port, lifetime,
                                  suggested)

    def _parse(self, data: bytes) -> Reply:
        reply = decode_map_response(data, self.nonce, self.internal_port)
        if reply.result == RESULT_UNSUPP_VERSION:
            self.natpmp_only = True
        return reply

"""NAT-PMP (RFC 6886): byte layouts and the mapping client for one UDP port.

Requests go to the gateway's port 5351. Retransmission per §3.1 (250 ms, doubling), but
bounded to a few seconds so a missing gateway is given up quickly (the RFC allows 64 s).
"""

from __future__ import annotations

import ipaddress
import struct

from .client import Drop, Reply, UdpMappingClient
from .common import Schedule

PORT = 5351
VERSION = 0
OP_ADDRESS = 0
OP_MAP_UDP = 1
#: A reply's opcode is the request's plus 128 (§3.2).
REPLY = 128
ADDRESS_REPLY = struct.Struct("!BBHI4s")  # version, opcode, result, epoch, ip
MAP_REQUEST = struct.Struct("!BBHHHI")  # version, opcode, reserved, internal, external, life
MAP_REPLY = struct.Struct("!BBHIHHI")  # version, opcode, result, epoch, int, ext, lifetime
RESULTS = {0: "success", 1: "unsupported version", 2: "not authorized or refused",
           3: "network failure", 4: "out of resources", 5: "unsupported opcode"}


def encode_address_request() -> bytes:
    """§3.2: version 0, opcode 0, nothing else."""
    return bytes((VERSION, OP_ADDRESS))


def encode_map_request(internal_port: int, external_port: int, lifetime: int) -> bytes:
    """§3.3: a UDP mapping; lifetime 0 with external port 0 deletes it (§3.4)."""
    return MAP_REQUEST.pack(VERSION, OP_MAP_UDP, 0, internal_port, external_port, lifetime)


def decode_reply(data: bytes) -> Reply:
    """Parse an address or UDP-map reply; raises Drop for anything else."""
    if len(data) < 4 or data[0] != VERSION:
        raise Drop(f"not a NAT-PMP reply ({len(data)} bytes)")
    op = data[1]
    if op == REPLY + OP_ADDRESS:
        if len(data) != ADDRESS_REPLY.size:
            raise Drop(f"address reply of {len(data)} bytes")
        _, _, result, epoch, raw = ADDRESS_REPLY.unpack(data)
        return Reply("address", result, epoch, external_ip=str(ipaddress.IPv4Address(raw)))
    if op == REPLY + OP_MAP_UDP:
        if len(data) != MAP_REPLY.size:
            raise Drop(f"map reply of {len(data)} bytes")
        _, _, result, epoch, _internal, external, lifetime = MAP_REPLY.unpack(data)
        return Reply("map", result, epoch, lifetime=lifetime, external_port=external)
    raise Drop(f"unexpected NAT-PMP opcode {op}")


class NatPmpClient(UdpMappingClient):
    """Maps ``internal_port`` (UDP) on the gateway; also asks its public address."""

    protocol = "natpmp"
    #: §3.1: 250 ms, doubled each time; 5 sends (0, .25, .75, 1.75, 3.75 s), give up at 6 s.
    schedule = Schedule(initial=0.25, maximum=64.0, attempts=5, give_up=6.0)

    def _map_request(self, lifetime: int) -> bytes:
        if lifetime == 0:
            return encode_map_request(self.internal_port, 0, 0)
        port = self.external[1] if self.external else self.suggested_port
        return encode_map_request(self.internal_port, port, lifetime)

    def _extra_requests(self) -> dict[str, bytes]:
        return {"address": encode_address_request()}

    def _parse(self, data: bytes) -> Reply:
        reply = decode_reply(data)
        if reply.kind == "map" and struct.unpack_from("!H", data, 8)[0] != self.internal_port:
            raise Drop("map reply for another internal port")
        if reply.kind == "address" and reply.result == 0 and reply.external_ip == "0.0.0.0":
            raise Drop("address reply without an address")
        return reply

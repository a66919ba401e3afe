"""A userspace NAT for the test bed, with the behaviour chosen per RFC 4787.

Linux gives two behaviours for free (MASQUERADE: endpoint-independent mapping with
address-and-port-dependent filtering; --random-fully: address-and-port-dependent mapping).
The rest of the matrix comes from here: ``NatTable`` is the pure translation table (mapping
x filtering x hairpinning, idle timeout, seeded port choice) and ``run`` serves it on an
NFQUEUE in the router's namespace, rewriting UDP packets in raw/PREROUTING, before
conntrack (which is switched off for UDP there) and before routing.

    NatBehavior(mapping="address", filtering="endpoint", hairpin=True)

Mapping ``endpoint``: one public port per internal (ip, port), whatever the destination.
``address``: one per internal (ip, port) and destination IP. ``address-port``: one per
destination (ip, port). Filtering ``endpoint``: anyone may send to a mapped port;
``address``: only IPs the mapping has sent to; ``address-port``: only (ip, port)s it has
sent to. Hairpinning: a LAN host's packet to the NAT's own public address and a mapped
port is translated (source mapped as if it went out) and, if the target's filter lets
(public IP, source's public port) in, delivered to the target host.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

from tests import netbed as nb

KINDS = ("endpoint", "address", "address-port")
SHORT = {"endpoint": "EI", "address": "AD", "address-port": "APD"}
PORT_LO, PORT_HI = 20000, 60000

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class NatBehavior:
    """How a NAT maps and filters (RFC 4787 §4.1, §5), and whether it hairpins (§6)."""

    mapping: str = "endpoint"
    filtering: str = "address-port"
    hairpin: bool = False
    #: Seconds an idle mapping lives (RFC 4787 REQ-5 asks for at least 120).
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.mapping not in KINDS or self.filtering not in KINDS:
            raise ValueError(f"mapping and filtering are among {KINDS}")

    @property
    def label(self) -> str:
        """E.g. "EIM-APDF-hairpin"."""
        return (f"{SHORT[self.mapping]}M-{SHORT[self.filtering]}F"
                + ("-hairpin" if self.hairpin else ""))

    @property
    def symmetric(self) -> bool:
        """Hole punching between two such NATs fails without port prediction."""
        return self.mapping != "endpoint"


@dataclass
class Mapping:
    public_port: int
    internal: Addr
    last_used: float
    sent_to: set[Addr] = field(default_factory=set)


class NatTable:
    """The translation state of one NAT: pure, clocked by the caller."""

    def __init__(self, public_ip: str, behavior: NatBehavior, seed: int = 1) -> None:
        self.public_ip = public_ip
        self.behavior = behavior
        self._rng = random.Random(seed)
        self._by_key: dict[tuple[object, ...], Mapping] = {}
        self._by_port: dict[int, Mapping] = {}

    def _key(self, internal: Addr, remote: Addr) -> tuple[object, ...]:
        if self.behavior.mapping == "endpoint":
            return (internal,)
        if self.behavior.mapping == "address":
            return (internal, remote[0])
        return (internal, remote)

    def expire(self, now: float) -> None:
        for key, m in list(self._by_key.items()):
            if now - m.last_used > self.behavior.timeout:
                del self._by_key[key]
                self._by_port.pop(m.public_port, None)

    def outbound(self, internal: Addr, remote: Addr, now: float) -> int:
        """The public port for a packet internal -> remote (made if needed)."""
        self.expire(now)
        key = self._key(internal, remote)
        m = self._by_key.get(key)
        if m is None:
            port = self._rng.randrange(PORT_LO, PORT_HI)
            while port in self._by_port:
                port = self._rng.randrange(PORT_LO, PORT_HI)
            m = Mapping(port, internal, now)
            self._by_key[key] = m
            self._by_port[port] = m
        m.last_used = now
        m.sent_to.add(remote)
        return m.public_port

    def inbound(self, remote: Addr, public_port: int, now: float) -> Addr | None:
        """Where a packet remote -> public_port goes, or None when the filter drops it."""
        self.expire(now)
        m = self._by_port.get(public_port)
        if m is None:
            return None
        kind = self.behavior.filtering
        if kind == "address" and remote[0] not in {ip for ip, _ in m.sent_to}:
            return None
        if kind == "address-port" and remote not in m.sent_to:
            return None
        m.last_used = now
        return m.internal

    def translate(
        self, src: Addr, dst: Addr, from_lan: bool, now: float
    ) -> tuple[Addr, Addr] | None:
        """New (src, dst) of a UDP packet, None to drop it; unchanged when not ours."""
        if from_lan:
            if dst[0] == self.public_ip:
                if not self.behavior.hairpin:
                    return None
                port = self.outbound(src, dst, now)
                target = self.inbound((self.public_ip, port), dst[1], now)
                return None if target is None else ((self.public_ip, port), target)
            return (self.public_ip, self.outbound(src, dst, now)), dst
        if dst[0] == self.public_ip:
            target = self.inbound(src, dst[1], now)
            return None if target is None else (src, target)
        return src, dst


# --------------------------------------------------------------------------- packets


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def rewrite(packet: bytes, src: Addr, dst: Addr) -> bytes:
    """An IPv4/UDP packet with new addresses and ports, both checksums recomputed."""
    ihl = (packet[0] & 0x0F) * 4
    header = bytearray(packet[:ihl])
    header[12:16] = socket.inet_aton(src[0])
    header[16:20] = socket.inet_aton(dst[0])
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", _checksum(bytes(header)))
    udp = bytearray(packet[ihl:])
    udp[0:4] = struct.pack("!HH", src[1], dst[1])
    udp[6:8] = b"\0\0"
    pseudo = bytes(header[12:20]) + struct.pack("!BBH", 0, socket.IPPROTO_UDP, len(udp))
    csum = _checksum(pseudo + bytes(udp)) or 0xFFFF
    udp[6:8] = struct.pack("!H", csum)
    return bytes(header) + bytes(udp)


def parse(packet: bytes) -> tuple[Addr, Addr] | None:
    """(src, dst) of an unfragmented IPv4/UDP packet, else None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if struct.unpack_from("!H", packet, 6)[0] & 0x3FFF or len(packet) < ihl + 8:
        return None  # fragments are not translated
    sport, dport = struct.unpack_from("!HH", packet, ihl)
    return ((socket.inet_ntoa(packet[12:16]), sport), (socket.inet_ntoa(packet[16:20]), dport))


# --------------------------------------------------------------------------- NFQUEUE service


def run(args: argparse.Namespace) -> int:
    """Serve ``NatTable`` on NFQUEUE ``--queue`` (raw/PREROUTING, UDP only)."""
    NFQA_PAYLOAD = 10
    NFQNL_COPY_PACKET = 2
    behavior = NatBehavior(args.mapping, args.filtering, args.hairpin, args.timeout)
    table = NatTable(args.public, behavior, args.seed)
    lan = ipaddress.IPv4Network(args.lan)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nb.NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind((0, 0))
    for seq, attr in enumerate((
        nb._nla(nb.NFQA_CFG_CMD, struct.pack("!BxH", nb.NFQNL_CFG_CMD_BIND, socket.AF_INET)),
        nb._nla(nb.NFQA_CFG_PARAMS, struct.pack("!IB", 0xFFFF, NFQNL_COPY_PACKET)),
    ), start=1):
        sock.send(nb._nfq_msg(nb.NFQNL_MSG_CONFIG, args.queue, attr,
                              nb.NLM_F_REQUEST | nb.NLM_F_ACK, seq))
        for kind, payload in nb._nl_messages(sock.recv(65536)):
            if kind == nb.NLMSG_ERROR and struct.unpack_from("=i", payload)[0] != 0:
                print("usernat: NFQUEUE config failed", file=sys.stderr)
                return 1
    print("ready", flush=True)

    def verdict(packet_id: int, what: int, data: bytes | None = None) -> None:
        attrs = nb._nla(nb.NFQA_VERDICT_HDR, struct.pack("!II", what, packet_id))
        if data is not None:
            attrs += nb._nla(NFQA_PAYLOAD, data)
        sock.send(nb._nfq_msg(nb.NFQNL_MSG_VERDICT, args.queue, attrs, nb.NLM_F_REQUEST, 0))

    while True:
        data = sock.recv(1 << 20)
        for kind, payload in nb._nl_messages(data):
            if kind != (nb.NFNL_SUBSYS_QUEUE << 8) | nb.NFQNL_MSG_PACKET:
                continue
            attrs = nb._nl_attrs(payload[4:])
            if nb.NFQA_PACKET_HDR not in attrs:
                continue
            (packet_id,) = struct.unpack_from("!I", attrs[nb.NFQA_PACKET_HDR])
            packet = attrs.get(NFQA_PAYLOAD, b"")
            addrs = parse(packet)
            if addrs is None:
                verdict(packet_id, nb.NF_ACCEPT)
                continue
            src, dst = addrs
            from_lan = ipaddress.IPv4Address(src[0]) in lan
            if from_lan and ipaddress.IPv4Address(dst[0]) in lan:
                verdict(packet_id, nb.NF_ACCEPT)  # LAN to LAN (or to the router)
                continue
            out = table.translate(src, dst, from_lan, time.monotonic())
            if out is None:
                verdict(packet_id, nb.NF_DROP)
            elif out == (src, dst):
                verdict(packet_id, nb.NF_ACCEPT)
            else:
                verdict(packet_id, nb.NF_ACCEPT, rewrite(packet, *out))


def main() -> int:
    parser = argparse.ArgumentParser(description="userspace NAT on an NFQUEUE")
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--public", required=True)
    parser.add_argument("--lan", required=True)
    parser.add_argument("--mapping", choices=KINDS, default="endpoint")
    parser.add_argument("--filtering", choices=KINDS, default="address-port")
    parser.add_argument("--hairpin", action="store_true")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    try:
        return run(parser.parse_args())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

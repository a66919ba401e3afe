"""The LAN discovery shell: the socket a host listens on for LAN_QUERY, and where a
player's queries go (the protocol is in ``protocol/lan.py``; this only does I/O).

Every host on a machine binds the discovery port with SO_REUSEADDR and SO_REUSEPORT, so
several games can be hosted side by side: a broadcast reaches each of their sockets.
Answers leave from the game's own socket, so the player learns the game's address from
them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import sys
from collections.abc import Iterator

from .protocol.addresses import Address, is_local_address
from .protocol.constants import MAX_READS_PER_TICK

log = logging.getLogger(__name__)

LIMITED_BROADCAST = "255.255.255.255"
_SIOCGIFBRDADDR = 0x8919  # Linux: an interface's IPv4 broadcast address


def broadcast_addresses() -> list[str]:
    """The IPv4 broadcast address of each interface on a local network (private,
    link-local, loopback: discovery is never sent to a public network's broadcast
    address), then 255.255.255.255 (which no router forwards)."""
    found: list[str] = []
    if sys.platform.startswith("linux"):
        import fcntl  # noqa: PLC0415 - Linux only

        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _, name in socket.if_nameindex():
                request = struct.pack("256s", name.encode()[:15])
                try:
                    answer = fcntl.ioctl(probe.fileno(), _SIOCGIFBRDADDR, request)
                except OSError:
                    continue  # no IPv4 address, or no broadcast (a point-to-point link)
                address = socket.inet_ntoa(answer[20:24])
                if is_local_address(address) and address not in found:
                    found.append(address)
        except OSError as exc:  # pragma: no cover - no interface list on this system
            log.debug("listing interfaces failed: %s", exc)
        finally:
            probe.close()
    found.append(LIMITED_BROADCAST)
    return found


class DiscoveryListener:
    """A host's socket on the discovery port (shared with other hosts of the machine)."""

    def __init__(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setblocking(False)
            sock.bind(("", port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = port

    def read(self) -> Iterator[tuple[bytes, Address]]:
        """The datagrams waiting (a bounded number a call)."""
        for _ in range(MAX_READS_PER_TICK):
            try:
                data, addr = self._sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("discovery recvfrom failed: %s", exc)
                return
            yield data, (str(addr[0]), int(addr[1]))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

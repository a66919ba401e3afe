"""Relay nodes (``python -m server --relay-only``) of a deployment sharing one Redis.

Real processes on loopback: one handshake node, two relay nodes, a redis-server of the
test's own. The players are bare sockets holding their end of the sealed channel
(``Client`` of test_server_cluster), so every datagram is visible. Waits are bounded;
nothing is timed.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from framework.protocol.addresses import Address
from framework.protocol.relaying import bind_tag
from framework.protocol.wire import (
    RELAY_BIND_SIZE,
    ErrorCode,
    HsKind,
    Kind,
    decode_relay_bind,
    encode_relay,
    encode_relay_bind,
    peek_kind,
)
from server.relaytier import NODE_TTL
from tests.helpers import server_process
from tests.redisbed import free_port, redis_server
from tests.test_server_cluster import Client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def directory(url: str) -> dict[str, float]:
    import redis  # noqa: PLC0415

    r = redis.Redis.from_url(url)
    return {m.decode(): s for m, s in r.zrange(b"p2p:relaynodes", 0, -1, withscores=True)}


class End:
    """One player's end of a relay on a relay node."""

    def __init__(self, client: Client, offer: list[Any], end: int) -> None:
        self.client, self.end = client, end
        self.relay_id, self.peer = offer[0], offer[1]
        self.at: Address = (offer[2], offer[3])
        self.key: bytes = offer[4]
        self.counter = 0

    def bind_datagram(self) -> bytes:
        self.counter += 1
        return encode_relay_bind(Kind.RELAY_BIND, self.relay_id, self.end, self.counter,
                                 bind_tag(self.key, Kind.RELAY_BIND, self.relay_id,
                                          self.end, self.counter))

    def bind(self) -> list[bytes]:
        """Bind until the node confirms; what else came with the confirmation."""
        sock = self.client.sock
        for _ in range(20):
            sock.sendto(self.bind_datagram(), self.at)
            extra: list[bytes] = []
            while (data := self.client._recv()) is not None:
                if peek_kind(data) is Kind.RELAY_BOUND:
                    assert len(data) == RELAY_BIND_SIZE  # no larger than the bind
                    relay_id, end, counter, tag = decode_relay_bind(data)
                    assert (relay_id, end, counter) == (self.relay_id, self.end, self.counter)
                    assert tag == bind_tag(self.key, Kind.RELAY_BOUND, relay_id, end, counter)
                    while (more := self.client._recv()) is not None:
                        extra.append(more)
                    return extra
                extra.append(data)
        raise AssertionError("no RELAY_BOUND")

    def send(self, payload: bytes) -> None:
        self.client.sock.sendto(encode_relay(self.relay_id, payload), self.at)

    def recv(self) -> bytes | None:
        return self.client._recv()


def relayed_pair(hs: Address, game: str, user: str) -> tuple[End, End]:
    """A host registered as ``game`` and ``user`` joined it; the relay they were given."""
    host, client = Client(hs), Client(hs)
    assert host.ask(HsKind.REGISTER, [game, [], False, 60.0, 0], HsKind.REGISTERED)[0] \
        is HsKind.REGISTERED
    assert client.ask(HsKind.JOIN, [game, user, []], HsKind.INTRODUCE)[0] is HsKind.INTRODUCE
    kind, f = client.ask(HsKind.RELAY_REQUEST, [game, user], HsKind.RELAY_AT)
    assert kind is HsKind.RELAY_AT and f[1] == game, (kind, f)
    offers = []
    while (data := host._recv()) is not None:
        offers.append(host.channel.open(data))
    host_offer = next(f_ for k, _, f_ in offers if k is HsKind.RELAY_AT)
    assert host_offer[0] == f[0] and host_offer[1] == user and host_offer[2:4] == f[2:4]
    assert host_offer[4] != f[4]  # each end its own key
    return End(host, host_offer, 0), End(client, f, 1)


def relay_node(stack: ExitStack, url: str, name: str, key: Path
               ) -> tuple[Any, Address]:
    port = free_port(socket.SOCK_DGRAM)
    return stack.enter_context(server_process(
        "--relay-only", "--redis", url, "--port", str(port), "--node-id", name,
        "--relay-capacity", "10", key_file=key))


def test_relays_go_to_the_least_loaded_relay_node_bind_and_move_when_it_dies(
        redis_url: str, tmp_path: Path) -> None:
    key = tmp_path / "deployment.key"
    with ExitStack() as stack:
        _, hs = stack.enter_context(server_process("--redis", redis_url, key_file=key))
        nodes = {name: relay_node(stack, redis_url, name, key) for name in ("r1", "r2")}
        deadline = time.monotonic() + 15
        while set(directory(redis_url)) != {"r1", "r2"}:
            assert time.monotonic() < deadline, directory(redis_url)
            time.sleep(0.1)
        by_address = {addr: name for name, (_, addr) in nodes.items()}

        host, guest = relayed_pair(hs, "arena", "bob")
        first = by_address[guest.at]
        # Data sent before the other end bound is held (the last datagram) and handed
        # over with its RELAY_BOUND.
        assert guest.bind() == []
        guest.send(b"early")
        assert host.bind() == [encode_relay(host.relay_id, b"early")]
        for i in range(3):
            host.send(b"to bob %d" % i)
            assert guest.recv() == encode_relay(host.relay_id, b"to bob %d" % i)
            guest.send(b"to host %d" % i)
            assert host.recv() == encode_relay(host.relay_id, b"to host %d" % i)
        # Placed, the relay lapses after 15 s unless it carries data; binds do not renew
        # it, data does (the relay node reports once a second).
        import redis  # noqa: PLC0415

        records = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 10
        while records.pttl(b"p2p:relay:" + host.relay_id) <= 15_000:
            assert time.monotonic() < deadline, "the relay node did not renew the relay"
            time.sleep(0.2)

        # From the attacker's seat: no key, or a replayed bind, moves nothing.
        stranger = Client(hs)
        try:
            stranger.sock.sendto(encode_relay(host.relay_id, b"spam"), guest.at)
            replay_source = guest.bind_datagram()
            guest.client.sock.sendto(replay_source, guest.at)  # the real one first
            assert guest.recv() is not None  # its RELAY_BOUND
            stranger.sock.sendto(replay_source, guest.at)  # then replayed elsewhere
            forged = bytearray(guest.bind_datagram())
            forged[-1] ^= 1
            stranger.sock.sendto(bytes(forged), guest.at)
            stolen = encode_relay_bind(Kind.RELAY_BIND, host.relay_id, 1, 10**6, bytes(16))
            stranger.sock.sendto(stolen, guest.at)
            assert stranger._recv() is None
            host.send(b"still bob's")
            assert guest.recv() == encode_relay(host.relay_id, b"still bob's")
            assert host.recv() is None
        finally:
            stranger.close()

        # The next relay goes to the other node: the first carries one relay now.
        host2, guest2 = relayed_pair(hs, "arena2", "carol")
        assert by_address[guest2.at] != first
        assert host2.bind() == [] and guest2.bind() == []
        time.sleep(1.5)  # a report or two: bound, but no data
        assert 0 < records.pttl(b"p2p:relay:" + host2.relay_id) <= 15_000

        # A wrong key learns nothing.
        kind, f = guest.client.ask(HsKind.RELAY_MOVE, [guest.relay_id, bytes(16)])
        assert kind is HsKind.HS_ERROR and f[0] == ErrorCode.NOT_INTRODUCED
        # While its node lives, the relay stays where it is.
        kind, f = guest.client.ask(HsKind.RELAY_MOVE, [guest.relay_id, guest.key])
        assert kind is HsKind.RELAY_AT and (f[2], f[3]) == guest.at

        # The first relay's node dies. Once its directory entry lapses, the players'
        # RELAY_MOVE puts the relay on the survivor, and they carry on there.
        proc, _ = nodes[first]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        moved: Address | None = None
        while moved is None:
            assert time.monotonic() - killed_at < NODE_TTL + 10, "the relay never moved"
            kind, f = guest.client.ask(HsKind.RELAY_MOVE, [guest.relay_id, guest.key])
            assert kind is HsKind.RELAY_AT, (kind, f)
            if (f[2], f[3]) != guest.at:
                moved = (f[2], f[3])
                assert f[0] == guest.relay_id and f[1] == "arena" and f[4] == guest.key
            else:
                time.sleep(0.5)
        assert by_address[moved] != first
        # The other end is told without asking (a quiet player may not notice for a
        # while): the handshake server sends it RELAY_AT, sealed under its channel.
        pushed = host.client._recv()
        assert pushed is not None, "the host was not told"
        kind, rid, f = host.client.channel.open(pushed)
        assert (kind, rid) == (HsKind.RELAY_AT, 0)
        assert (f[2], f[3]) == moved and f[1] == "bob" and f[4] == host.key
        # Asked, it says the same.
        kind, f = host.client.ask(HsKind.RELAY_MOVE, [host.relay_id, host.key])
        assert kind is HsKind.RELAY_AT and (f[2], f[3]) == moved and f[1] == "bob"
        host.at = guest.at = moved
        assert host.bind() == []
        assert guest.bind() == []
        for i in range(3):
            host.send(b"moved %d" % i)
            assert guest.recv() == encode_relay(host.relay_id, b"moved %d" % i)
            guest.send(b"back %d" % i)
            assert host.recv() == encode_relay(host.relay_id, b"back %d" % i)
        assert first not in directory(redis_url)
        for end in (host, guest, host2, guest2):
            end.client.close()


def test_a_relay_node_needs_redis_and_its_public_address(tmp_path: Path) -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from tests.netbed import ROOT  # noqa: PLC0415

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server", "--key-file",
                               str(tmp_path / "k"), *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=False)

    no_redis = run("--relay-only", "--host", "127.0.0.1")
    assert no_redis.returncode == 1 and "--relay-only needs --redis" in no_redis.stderr
    wildcard = run("--relay-only", "--redis", "redis://127.0.0.1:1/0")
    assert wildcard.returncode == 1 and "needs --public" in wildcard.stderr
    bad = run("--relay-only", "--redis", "redis://127.0.0.1:1/0", "--public", "nowhere")
    assert bad.returncode == 1 and "--public wants HOST:PORT" in bad.stderr

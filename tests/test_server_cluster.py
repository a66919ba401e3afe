"""Several ``python -m server --redis`` processes sharing one list of games.

Each test starts its own redis-server (tests/redisbed.py: a free loopback port, a
temporary directory, no persistence) and real server processes sharing one key file.
Waits are bounded; nothing is timed.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from framework import Peer, events
from framework.protocol.addresses import Address
from framework.protocol.errors import ProtocolError
from framework.protocol.hschannel import ServerChannel
from framework.protocol.wire import (
    ErrorCode,
    HsKind,
    Kind,
    decode_cookie,
    encode_cookie_request,
    encode_relay,
    peek_kind,
    request_size,
)
from tests.helpers import Recorder, server_process
from tests.redisbed import free_port, redis_server, require_redis

LOCAL = ("127.0.0.1", 0)


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def key_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp) / "deployment.key"


class Client:
    """A bare socket with the peer's end of the sealed channel."""

    def __init__(self, target: Address) -> None:
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(LOCAL)
        self.sock.settimeout(0.5)
        self.channel = ServerChannel(os.urandom)
        self.rid = 0
        self.cookies_fetched = 0

    def close(self) -> None:
        self.sock.close()

    def _recv(self) -> bytes | None:
        try:
            return self.sock.recv(2048)
        except (TimeoutError, BlockingIOError):
            return None

    def cookie(self) -> None:
        for _ in range(20):
            self.sock.sendto(encode_cookie_request(0), self.target)
            data = self._recv()
            if data is not None and peek_kind(data) is Kind.COOKIE:
                _, cookie, public = decode_cookie(data)
                self.channel.learn(cookie, public)
                self.cookies_fetched += 1
                return
        raise AssertionError("no cookie")

    def ask(self, kind: HsKind, fields: list[Any], want: HsKind | None = None,
            tries: int = 20) -> tuple[HsKind, list[Any]]:
        """Send until a sealed reply comes (a fresh cookie first when asked for one)."""
        if not self.channel.ready:
            self.cookie()
        for _ in range(tries):
            self.rid += 1
            self.sock.sendto(self.channel.seal(kind, self.rid, fields, request_size(kind)),
                             self.target)
            while (data := self._recv()) is not None:
                if peek_kind(data) is Kind.COOKIE:
                    _, cookie, public = decode_cookie(data)
                    self.channel.learn(cookie, public)
                    self.cookies_fetched += 1
                    break
                try:
                    got, _, f = self.channel.open(data)
                except ProtocolError:
                    continue
                if want is None or got is want or got is HsKind.HS_ERROR:
                    return got, f
        raise AssertionError(f"no answer to {kind.name}")


def test_a_host_registered_on_one_node_is_listed_and_joined_through_another(
        redis_url: str, key_file: Path) -> None:
    metrics_port = free_port()
    with server_process("--redis", redis_url, "--node-id", "a",
                        "--metrics", f"127.0.0.1:{metrics_port}", key_file=key_file) as (_, a), \
            server_process("--redis", redis_url, "--node-id", "b", key_file=key_file) as (_, b):
        assert a != b
        host, alice = Peer(), Peer()
        rec = Recorder(host, alice)
        try:
            host.init_server(a, LOCAL, "arena")
            assert rec.run(lambda: rec.has(host, events.CONFIRMED_AS_SERVER), 15)
            alice.request_server_list(b)
            assert rec.run(lambda: rec.has(alice, events.RECEIVED_SERVER_LIST), 15)
            assert rec.of(alice, events.RECEIVED_SERVER_LIST)[0].server_names == ["arena"]
            alice.init_client(b, LOCAL, "alice", "arena")
            assert rec.run(lambda: alice.is_connected() and host.get_peers() == ["alice"],
                           20)
            assert rec.of(host, events.CLIENT_CONFIRMED)[0].new_peer == "alice"
            # The host heard of alice from node a (its NAT lets only a in): node b handed
            # the introduction over, node a sent it.
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                        timeout=10) as r:
                text = r.read().decode()
            def value(prefix: str) -> float:
                found = [line for line in text.splitlines() if line.startswith(prefix + " ")]
                assert found, prefix
                return float(found[0].rsplit(" ", 1)[1])
            assert value('p2p_requests_total{kind="REGISTER"}') >= 1
            assert value("p2p_cluster_delivered_total") >= 1
            assert "p2p_registrations 1" in text.splitlines()
        finally:
            host.close()
            alice.close()


def _recvfrom(client: Client) -> tuple[bytes, Address] | None:
    try:
        data, source = client.sock.recvfrom(2048)
    except (TimeoutError, BlockingIOError):
        return None
    return data, (source[0], source[1])


def _node_of(redis_url: str, name: str) -> str:
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(redis_url)
    try:
        node = client.hget(b"p2p:reg:" + name.encode(), b"n")
    finally:
        client.close()
    assert isinstance(node, bytes), f"{name} is not in Redis"
    return node.decode()


def test_a_node_killed_loses_no_registration(redis_url: str, key_file: Path) -> None:
    """Two nodes on one port (SO_REUSEPORT); the one the host registered through is
    killed with SIGKILL; the host's next REFRESH (to the same address) reaches the
    other, which knows the registration and the host's cookie."""
    port = free_port(socket.SOCK_DGRAM)
    common = ("--redis", redis_url, "--reuse-port", "--port", str(port))
    with server_process(*common, "--node-id", "a", key_file=key_file) as (proc_a, addr), \
            server_process(*common, "--node-id", "b", key_file=key_file) as (proc_b, _):
        host = Client(addr)
        try:
            kind, f = host.ask(HsKind.REGISTER, ["arena", [], False, 10.0, 0],
                               HsKind.REGISTERED)
            assert kind is HsKind.REGISTERED
            token = f[0]
            holder = _node_of(redis_url, "arena")
            victim = {"a": proc_a, "b": proc_b}[holder]
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            cookies = host.cookies_fetched
            kind, f = host.ask(HsKind.REFRESH, ["arena", token], HsKind.REFRESHED)
            assert kind is HsKind.REFRESHED
            assert host.cookies_fetched == cookies  # the dead node's cookie still passes
            assert _node_of(redis_url, "arena") != holder
            # and the game is still listed and joinable, through the survivor
            player = Client(addr)
            try:
                kind, f = player.ask(HsKind.LIST, [""], HsKind.LIST_REPLY)
                assert f[0] == [["arena", False]]
                kind, f = player.ask(HsKind.JOIN, ["arena", "bob", []], HsKind.INTRODUCE)
                assert kind is HsKind.INTRODUCE and f[0] == "arena"
            finally:
                player.close()
        finally:
            host.close()


def test_names_are_shared_and_refused_across_nodes(redis_url: str, key_file: Path) -> None:
    with server_process("--redis", redis_url, key_file=key_file) as (_, a), \
            server_process("--redis", redis_url, key_file=key_file) as (_, b):
        one, two = Client(a), Client(b)
        try:
            assert one.ask(HsKind.REGISTER, ["arena", [], True, 60.0, 0])[0] \
                is HsKind.REGISTERED
            kind, f = two.ask(HsKind.REGISTER, ["arena", [], False, 60.0, 0])
            assert kind is HsKind.HS_ERROR  # taken, though registered elsewhere
            kind, f = two.ask(HsKind.REGISTER, ["ARENA", [], False, 60.0, 0])
            assert kind is HsKind.HS_ERROR  # a look-alike
            kind, f = two.ask(HsKind.LIST, [""], HsKind.LIST_REPLY)
            assert f[0] == [["arena", True]]
            kind, token = one.ask(HsKind.REGISTER, ["arena", [], True, 60.0, 0])
            assert one.ask(HsKind.UNREGISTER, ["arena", token[0]])[0] is HsKind.UNREGISTERED
            kind, f = two.ask(HsKind.LIST, [""], HsKind.LIST_REPLY)
            assert f[0] == []
            assert two.ask(HsKind.REGISTER, ["arena", [], False, 60.0, 0])[0] \
                is HsKind.REGISTERED
        finally:
            one.close()
            two.close()


def test_redis_down_degrades_and_recovers(key_file: Path) -> None:
    """No Redis yet: the node starts, answers cookies, drops what needs shared state
    (logged), and serves normally once Redis is there."""
    require_redis()
    redis_port = free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    with server_process("--redis", url, key_file=key_file) as (proc, addr):
        client = Client(addr)
        try:
            client.cookie()  # answered without Redis
            with pytest.raises(AssertionError):
                client.ask(HsKind.LIST, [""], HsKind.LIST_REPLY, tries=3)
            assert proc.poll() is None
            with redis_server(redis_port):
                deadline = time.monotonic() + 30
                answer = None
                while answer is None and time.monotonic() < deadline:
                    try:
                        answer = client.ask(HsKind.REGISTER, ["later", [], False, 60.0, 0],
                                            HsKind.REGISTERED, tries=4)
                    except AssertionError:
                        continue
                assert answer is not None and answer[0] is HsKind.REGISTERED
            assert proc.poll() is None
        finally:
            client.close()


def test_metrics_without_redis() -> None:
    """The endpoint on a single in-memory server: counters by kind, and 404 elsewhere."""
    port = free_port()
    with server_process("--metrics", f"127.0.0.1:{port}") as (_, addr):
        client = Client(addr)
        try:
            assert client.ask(HsKind.LIST, [""], HsKind.LIST_REPLY)[0] is HsKind.LIST_REPLY
        finally:
            client.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=5) as r:
                    text = r.read().decode()
                    ctype = r.headers["Content-Type"]
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert ctype.startswith("text/plain")
        assert 'p2p_requests_total{kind="LIST"} 1' in text
        assert "p2p_cookies_sent_total 1" in text
        assert "# TYPE p2p_dropped_total counter" in text
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=5)
        assert err.value.code == 404
        # a client that connects and says nothing does not stop the server
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                        timeout=5) as r:
                assert r.status == 200
        finally:
            idle.close()


def test_a_relay_opened_on_one_node_forwards_on_another(redis_url: str,
                                                        key_file: Path) -> None:
    with server_process("--redis", redis_url, key_file=key_file) as (_, a), \
            server_process("--redis", redis_url, key_file=key_file) as (_, b):
        host, client = Client(a), Client(b)
        try:
            assert host.ask(HsKind.REGISTER, ["arena", [], False, 60.0, 0],
                            HsKind.REGISTERED)[0] is HsKind.REGISTERED
            assert client.ask(HsKind.JOIN, ["arena", "bob", []], HsKind.INTRODUCE)[0] \
                is HsKind.INTRODUCE
            kind, f = client.ask(HsKind.RELAY_REQUEST, ["arena", "bob"], HsKind.RELAY_READY)
            assert kind is HsKind.RELAY_READY and f[1] == "arena"
            relay_id = f[0]
            # Unused, the relay lapses after 15 s; its first datagram renews it to 60 s.
            import redis  # noqa: PLC0415

            records = redis.Redis.from_url(redis_url)
            assert 0 < records.pttl(b"p2p:relay:" + relay_id) <= 15_000
            # the host hears of it from node a, where it registered (and the INTRODUCE)
            offers = []
            while (data := host._recv()) is not None:
                kind_, _, f_ = host.channel.open(data)
                offers.append((kind_, f_))
            assert (HsKind.RELAY_READY, [relay_id, "bob"]) in offers
            # Each end talks to its own node, and hears the other end from that node only
            # (its NAT admits nothing else): a hands bob's datagrams over to b, and b
            # the host's to a. Node a did not open the relay: it learns it from Redis.
            for _ in range(3):
                host.sock.sendto(encode_relay(relay_id, b"hello bob"), a)
                assert client.sock.recvfrom(2048) == (encode_relay(relay_id, b"hello bob"), b)
                client.sock.sendto(encode_relay(relay_id, b"hello host"), b)
                assert host.sock.recvfrom(2048) == (encode_relay(relay_id, b"hello host"), a)
            assert records.pttl(b"p2p:relay:" + relay_id) > 15_000
            # a stranger cannot use it, on either node
            stranger = Client(a)
            try:
                stranger.sock.sendto(encode_relay(relay_id, b"spam"), a)
                stranger.sock.sendto(encode_relay(relay_id, b"spam"), b)
                assert client._recv() is None and host._recv() is None
            finally:
                stranger.close()
        finally:
            host.close()
            client.close()


def test_hostile_redis_contents_do_not_stop_a_node(redis_url: str, key_file: Path) -> None:
    """Whatever Redis holds (damaged records, junk on a node's channel), the node
    goes on: a damaged record counts as absent."""
    import redis  # noqa: PLC0415

    r = redis.Redis.from_url(redis_url)
    try:
        with server_process("--redis", redis_url, "--node-id", "a", key_file=key_file
                            ) as (proc, addr):
            r.hset(b"p2p:reg:broken", mapping={b"h": b"\xff", b"p": b"-1", b"c": b"\xc1"})
            r.pexpire(b"p2p:reg:broken", 60_000)
            r.zadd(b"p2p:names", {b"broken": 0, b"\xff\xfe": 0})
            r.hset(b"p2p:reg:nottl", mapping={b"x": b"y"})  # no TTL at all
            r.hset(b"p2p:relay:" + bytes(8), mapping={b"ah": b"1.2.3.4", b"ap": b"x"})
            # A relay directory of junk: no relay node to place on, so the node relays.
            r.zadd(b"p2p:relaynodes", {b"\xff\xfe": 0, b"gone": 0, b"junk": 0.1})
            r.hset(b"p2p:relaynode:junk", mapping={b"h": b"\xff", b"p": b"70000",
                                                    b"cap": b"-1"})
            r.pexpire(b"p2p:relaynode:junk", 60_000)
            r.hset(b"p2p:relaynode:\xff\xfe", mapping={b"h": b"1.2.3.4", b"p": b"1",
                                                          b"cap": b"5"})
            for junk in (b"", b"\x93", b"\xc1\xc1", b"\x93\xc4\x01x\xa1h\x01",
                         b"\x93\xc4\x01x\xa9127.0.0.1\xcd\x04\xd2" * 3):
                r.publish(b"p2p:node:a", junk)
            client = Client(addr)
            try:
                kind, f = client.ask(HsKind.JOIN, ["broken", "bob", []])
                assert kind is HsKind.HS_ERROR  # no such game
                kind, f = client.ask(HsKind.LIST, [""], HsKind.LIST_REPLY)
                assert f[0] == []
                assert client.ask(HsKind.REGISTER, ["broken", [], False, 60.0, 0])[0] \
                    is HsKind.REGISTERED  # the damaged record is replaced
                assert client.ask(HsKind.REGISTER, ["nottl", [], False, 60.0, 0])[0] \
                    is HsKind.REGISTERED
                client.sock.sendto(encode_relay(bytes(8), b"x"), addr)
                kind, f = client.ask(HsKind.LIST, [""], HsKind.LIST_REPLY)
                assert f[0] == [["broken", False], ["nottl", False]]
                joiner = Client(addr)
                try:
                    assert joiner.ask(HsKind.JOIN, ["broken", "bob", []],
                                      HsKind.INTRODUCE)[0] is HsKind.INTRODUCE
                    kind, f = joiner.ask(HsKind.RELAY_REQUEST, ["broken", "bob"],
                                         HsKind.RELAY_READY)
                    assert kind is HsKind.RELAY_READY, (kind, f)
                finally:
                    joiner.close()
                assert set(r.zrange(b"p2p:relaynodes", 0, -1)) == set()  # swept
            finally:
                client.close()
            assert proc.poll() is None
    finally:
        r.close()


def test_a_relay_survives_the_node_that_opened_it(redis_url: str, key_file: Path) -> None:
    """Two nodes on one port; the relay's players keep talking after either node is
    killed: the survivor learns the relay from Redis and forwards."""
    port = free_port(socket.SOCK_DGRAM)
    common = ("--redis", redis_url, "--reuse-port", "--port", str(port))
    with server_process(*common, "--node-id", "a", key_file=key_file) as (proc_a, addr), \
            server_process(*common, "--node-id", "b", key_file=key_file) as (proc_b, _):
        host, client = Client(addr), Client(addr)
        try:
            assert host.ask(HsKind.REGISTER, ["arena", [], False, 60.0, 0],
                            HsKind.REGISTERED)[0] is HsKind.REGISTERED
            assert client.ask(HsKind.JOIN, ["arena", "bob", []], HsKind.INTRODUCE)[0] \
                is HsKind.INTRODUCE
            _kind, f = client.ask(HsKind.RELAY_REQUEST, ["arena", "bob"], HsKind.RELAY_READY)
            relay_id = f[0]
            while host._recv() is not None:  # the host's RELAY_READY
                pass
            host.sock.sendto(encode_relay(relay_id, b"before"), addr)
            assert client._recv() == encode_relay(relay_id, b"before")
            victim = {"a": proc_a, "b": proc_b}[_node_of(redis_url, "arena")]
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            for i in range(3):
                host.sock.sendto(encode_relay(relay_id, b"after %d" % i), addr)
                assert client._recv() == encode_relay(relay_id, b"after %d" % i)
                client.sock.sendto(encode_relay(relay_id, b"back %d" % i), addr)
                assert host._recv() == encode_relay(relay_id, b"back %d" % i)
        finally:
            host.close()
            client.close()


# --- the stores themselves, in this process, against the same redis-server -------------

def _stores(url: str, node: str, config: Any) -> Any:
    from framework.protocol.crypto import KeyPair  # noqa: PLC0415
    from server.cluster import Cluster  # noqa: PLC0415
    from server.config import ServerStats  # noqa: PLC0415

    cluster = Cluster(url, KeyPair(bytes(range(32))), node)
    return cluster, cluster.stores(config, ServerStats(), os.urandom)


def test_stores_share_names_expire_them_and_count_rates_across_nodes(redis_url: str) -> None:
    import redis  # noqa: PLC0415

    from server.config import ServerConfig  # noqa: PLC0415

    config = ServerConfig(min_reg_valid=0.2, requests_per_sec_per_ip=1.0, request_burst=10.0)
    a, sa = _stores(redis_url, "a", config)
    b, sb = _stores(redis_url, "b", config)
    r = redis.Redis.from_url(redis_url)
    try:
        key = bytes(32)
        one = sa.registry.register("short", ("10.0.0.1", 1), [], False, 0.2, key, 0.0)
        assert not isinstance(one, int) and one[1] is True
        assert sb.registry.register("short", ("10.0.0.2", 1), [], False, 60, key, 0.0) \
            is ErrorCode.NAME_TAKEN
        live = sb.registry.live("short", 0.0)
        assert live is not None and live.node == "a" and live.public == ("10.0.0.1", 1)
        assert [reg.name for reg in sb.registry.after("", 0.0)] == ["short"]
        time.sleep(0.4)  # past its validity: Redis dropped the record
        assert sb.registry.live("short", 1.0) is None
        assert list(sb.registry.after("", 1.0)) == []
        assert sb.registry.count(1.0) == 0
        sb.registry.expire(1.0)
        assert r.zcard(b"p2p:names") == 0 and r.zcard(b"p2p:regs") == 0
        # The cookies of one node pass on the other (one key, wall-clock windows).
        assert sa.cookie_secret == sb.cookie_secret and sa.cookie_clock is time.time
        # Rate (1/s, bursts of 10: windows of 10 s): each node's own bucket would let
        # a prefix through; the counts summed in Redis refuse it on both nodes.
        for attempt in range(3):  # again with another prefix if a window turned meanwhile
            prefix, window = f"192.0.2.{attempt + 1}", int(time.time() // 10)
            for i in range(6):
                assert sa.rate.take(prefix, i * 0.001)
                assert sb.rate.take(prefix, i * 0.001)
            sa.rate.take(prefix, 0.2)  # these flush the counts: 1 + 1 + 6 + 6 > 10
            sb.rate.take(prefix, 0.2)
            sa.rate.take(prefix, 0.4)
            refused = (not sa.rate.take(prefix, 0.6), not sb.rate.take(prefix, 0.6))
            if int(time.time() // 10) == window:
                break
        assert refused == (True, True)
    finally:
        a.close()
        b.close()
        r.close()


def test_nodes_hand_over_again_after_redis_restarts(key_file: Path) -> None:
    """Redis goes away and comes back (empty: no persistence) while two nodes run: the
    nodes resubscribe, games registered again are joined across nodes."""
    require_redis()
    redis_port = free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    with server_process("--redis", url, key_file=key_file) as (proc_a, a), \
            server_process("--redis", url, key_file=key_file) as (proc_b, b):
        with redis_server(redis_port):
            pass  # up, then down: each node's channel breaks
        with redis_server(redis_port):
            host, client = Client(a), Client(b)
            try:
                deadline = time.monotonic() + 40
                introduced = False
                while not introduced and time.monotonic() < deadline:
                    try:
                        host.ask(HsKind.REGISTER, ["after", [], False, 60.0, 0],
                                 HsKind.REGISTERED, tries=3)
                        client.ask(HsKind.JOIN, ["after", "bob", []], HsKind.INTRODUCE,
                                   tries=3)
                    except AssertionError:
                        continue
                    # from node a: b handed it over (had a not resubscribed, b would
                    # have sent it itself, from b)
                    while (got := _recvfrom(host)) is not None:
                        kind, _, f = host.channel.open(got[0])
                        introduced = introduced or (kind is HsKind.INTRODUCE and f[0] == "bob"
                                                    and got[1] == a)
                assert introduced
                assert proc_a.poll() is None and proc_b.poll() is None
            finally:
                host.close()
                client.close()

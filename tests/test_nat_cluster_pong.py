"""A relayed Pong match between two symmetric NATs, served by a cluster: two handshake
nodes on one address (SO_REUSEPORT) sharing one Redis, all in the "internet" namespace.
The node that the relay's server-player end talks to is killed (SIGKILL) mid-match; the
match plays on to the end through the other node, which learns the relay from Redis."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.natcluster import Match, query, start_handshake_nodes, start_redis
from tests.netbed import NetBed
from tests.test_nat_engine import bed, two_nats  # noqa: F401

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

#: Run inside the handshake server's namespace: the node each live relay's ends talk to.
RELAY_NODES = (
    "import redis, sys\n"
    "r = redis.Redis.from_url(sys.argv[1])\n"
    "for key in r.scan_iter(match=b'p2p:relay:*'):\n"
    "    ends = r.hmget(key, [b'an', b'bn'])\n"
    "    print(' '.join((e or b'?').decode() for e in ends))\n"
)


def test_a_relayed_match_survives_the_kill_of_its_relay_node(
        bed: NetBed, tmp_path: Path) -> None:  # noqa: F811 - fixture
    hs, a, b = two_nats(bed, sym_a=True, sym_b=True)
    url = start_redis(hs, "127.0.0.1", tmp_path)
    logs = tmp_path / "nodes.log"
    nodes = start_handshake_nodes(hs, url, tmp_path / "hs.key", logs.open("w"))
    match = Match.start(a, b, "clusterpong", 3, tmp_path)

    def diag() -> str:
        return match.logs() + f"nodes:\n{logs.read_text()}"

    # The players' NATs defeat punching: the match goes through a relay. Find the node
    # its server-player end talks to, let the match run a little, and kill that node.
    ends: list[str] = []
    deadline = time.monotonic() + 30
    while not ends and time.monotonic() < deadline:
        ends = [e for e in query(hs, RELAY_NODES, url) if e in nodes]
        time.sleep(0.2)
    assert ends, "no relay in Redis\n" + diag()
    time.sleep(2.0)
    assert match.running(), "the match ended early\n" + diag()
    victim = ends[0]
    nodes[victim].send_signal(signal.SIGKILL)
    nodes[victim].wait(timeout=10)

    match.finish_relayed(f"nodes:\n{logs.read_text()}")
    survivor = next(n for n in nodes if n != victim)
    assert nodes[survivor].poll() is None, diag()

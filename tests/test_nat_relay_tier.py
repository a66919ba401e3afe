"""A relayed Pong match between two symmetric NATs, on a deployment with a relay tier:
two handshake nodes on one address (SO_REUSEPORT), two relay nodes on addresses of
their own (``--relay-only``), one Redis, all on the "internet". Mid-match a handshake
node is killed, then the relay node carrying the match (SIGKILL both): the relay moves
to the other relay node within seconds, both players follow it (PATH_CHANGED, path
"relay"), and the match plays on to the end."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.natcluster import Match, query, start_handshake_nodes, start_redis
from tests.netbed import ROOT, NetBed
from tests.test_nat_engine import HS_IP, bed, report, two_nats  # noqa: F401

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

RELAY_IPS = {"r1": "203.0.113.21", "r2": "203.0.113.22"}
RELAY_PORT = 5170

#: Run in the handshake server's namespace: ``<relay node> <node of server end>`` per relay.
RELAYS = (
    "import redis, sys\n"
    "r = redis.Redis.from_url(sys.argv[1])\n"
    "for key in r.scan_iter(match=b'p2p:relay:*'):\n"
    "    rn, an = r.hmget(key, [b'rn', b'an'])\n"
    "    print((rn or b'-').decode(), (an or b'-').decode())\n"
)
DIRECTORY = (
    "import redis, sys\n"
    "r = redis.Redis.from_url(sys.argv[1])\n"
    "print(' '.join(m.decode() for m in r.zrange(b'p2p:relaynodes', 0, -1)))\n"
)


def test_a_match_on_a_relay_node_moves_when_that_node_dies(
        bed: NetBed, tmp_path: Path) -> None:  # noqa: F811 - fixture
    hs, a, b = two_nats(bed, sym_a=True, sym_b=True)
    relay_hosts = {name: bed.public_host(name, ip) for name, ip in RELAY_IPS.items()}
    url = start_redis(hs, HS_IP, tmp_path)  # on the bridge: the relay nodes reach it
    logs = tmp_path / "nodes.log"
    log = logs.open("w")
    procs = start_handshake_nodes(hs, url, tmp_path / "hs.key", log)
    for name, node in relay_hosts.items():
        procs[name] = node.python(
            ["-m", "server", "--relay-only", "--host", RELAY_IPS[name], "--port",
             str(RELAY_PORT), "--redis", url, "--node-id", name],  # no key file
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 15
    while sorted(query(hs, DIRECTORY, url)) != ["r1", "r2"]:
        assert time.monotonic() < deadline, "relay nodes not listed\n" + logs.read_text()
        time.sleep(0.1)
    match = Match.start(a, b, "tierpong", 5, tmp_path, "-v")

    def diag() -> str:
        return match.logs() + f"nodes:\n{logs.read_text()}"

    # Punching cannot work between these NATs: the match is relayed, on a relay node.
    placed: list[str] = []
    deadline = time.monotonic() + 30
    while not placed and time.monotonic() < deadline:
        placed = query(hs, RELAYS, url)
        time.sleep(0.2)
    assert len(placed) == 2 and placed[0] in RELAY_IPS, f"{placed}\n{diag()}"
    first, hs_node = placed
    time.sleep(2.0)
    assert match.running(), "the match ended early\n" + diag()

    # A handshake node goes: relayed traffic never touched it.
    procs["n1"].send_signal(signal.SIGKILL)
    procs["n1"].wait(timeout=10)
    time.sleep(2.0)
    # The relay node goes: the relay must move to the other one.
    procs[first].send_signal(signal.SIGKILL)
    procs[first].wait(timeout=10)
    killed = time.monotonic()
    now_on = first
    while now_on == first:
        assert time.monotonic() - killed < 20, "the relay did not move\n" + diag()
        relays = query(hs, RELAYS, url)
        now_on = relays[0] if relays else first
        time.sleep(0.1)
    moved_s = time.monotonic() - killed
    assert now_on in RELAY_IPS and now_on != first, diag()

    match.finish_relayed(f"nodes:\n{logs.read_text()}")
    survivor = RELAY_IPS[now_on]
    for err in (match.host_err, match.client_err):
        text = err.read_text()
        # Each player followed the relay (PATH_CHANGED) rather than timing out.
        assert re.search(rf"relay to \S+ moved to \('{re.escape(survivor)}', {RELAY_PORT}\)",
                         text), diag()
        assert "timed out" not in text.lower(), diag()
    assert procs["n2"].poll() is None and procs[now_on].poll() is None, diag()
    report("relay tier", first=first, moved_to=now_on, moved_s=round(moved_s, 1),
           handshake_node_killed="n1", server_end_node=hs_node)

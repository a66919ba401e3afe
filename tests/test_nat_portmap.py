"""Port mapping against a real miniupnpd on a symmetric NAT of the test bed.

The host sits behind MASQUERADE --random-fully with unsolicited inbound dropped: no hole
punching crosses it. With a mapping from ``PortMapper`` (one protocol per test) a host on
the internet side reaches the game socket at the mapped address, and the answer comes back
from that address; after ``close()`` the same probe gets nothing and miniupnpd holds no
forward any more.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_netns
from tests.netbed import LineReader, NetBed, Node
from tests.netbed_portmap import Miniupnpd, miniupnpd_available, start_miniupnpd

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]

AGENT = str(Path(__file__).with_name("portmap_agent.py"))
PUBLIC = "100.63.0.1"
GAME_PORT = 4000


@pytest.fixture
def portmap_bed() -> Iterator[tuple[Node, Node, Miniupnpd]]:
    """(host behind a symmetric NAT running miniupnpd, probe on the internet, daemon)."""
    require_netns()
    ok, why = miniupnpd_available()
    if not ok:
        pytest.skip(why)
    with NetBed() as bed:
        router = bed.nat_router("r", public_ip=PUBLIC, lan="10.0.0.0/24", symmetric=True)
        host = bed.host_behind(router, "a", "10.0.0.2")
        probe = bed.public_host("probe", "203.0.113.20")
        daemon = start_miniupnpd(router, min_lifetime=2)  # lets the renewal test be short
        try:
            yield host, probe, daemon
        finally:
            daemon.stop()


def probe(node: Node, target: str, tries: int = 10) -> dict[str, Any]:
    res = node.run([sys.executable, AGENT, "probe", "--target", target, "--tries", str(tries)],
                   timeout=30)
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("protocol", ["pcp", "natpmp", "upnp", "pcp,natpmp,upnp"])
def test_mapping_opens_a_symmetric_nat(
    portmap_bed: tuple[Node, Node, Miniupnpd], protocol: str
) -> None:
    """One protocol at a time, then all (the default): PCP wins, and the UPnP search
    running beside it leaves no mapping behind."""
    host, prober, daemon = portmap_bed
    target = f"{PUBLIC}:{GAME_PORT}"
    game = host.python([AGENT, "serve", "--port", str(GAME_PORT), "--protocols", protocol,
                        "--defer"], stderr=None)
    out = LineReader(game)
    assert out.wait_for(lambda r: "ready" in r, 10.0), out.text()
    # Control: without a mapping the NAT lets nothing in.
    assert probe(prober, target, tries=3)["answered"] is False
    assert game.stdin is not None
    game.stdin.write("map\n")

    mapped = out.wait_for(lambda r: "mapped" in r or "failed" in r, 20.0)
    assert mapped is not None and "mapped" in mapped, out.text()
    assert mapped["protocol"] == protocol.split(",", maxsplit=1)[0]
    ip, port = mapped["mapped"]
    assert ip == PUBLIC
    assert daemon.mappings().count(f"dport {port}") == 1

    answer = probe(prober, f"{ip}:{port}")
    assert answer["answered"], out.text()
    assert answer["from"] == [ip, port]  # the answer leaves through the mapping
    assert answer["reply"]["from"][0] == prober.ip  # and the game saw the prober itself

    game.stdin.write("close\n")
    closed = out.wait_for(lambda r: "closed" in r, 10.0)
    assert closed is not None and closed["closed"] is True, out.text()
    assert "MappingDeleted" in closed["events"]
    assert f"dport {port}" not in daemon.mappings()
    assert probe(prober, f"{ip}:{port}", tries=5)["answered"] is False
    game.stdin.write("quit\n")


@pytest.mark.parametrize("protocol", ["pcp", "natpmp", "upnp"])
def test_renewal_keeps_the_mapping_past_its_lifetime(
    portmap_bed: tuple[Node, Node, Miniupnpd], protocol: str
) -> None:
    """A 3 s mapping, ticked for 7 s: renewed at half its lifetime, it is still there (and
    miniupnpd does drop a mapping that is not renewed: checked by hand, see docs/NAT.md)."""
    host, prober, daemon = portmap_bed
    game = host.python([AGENT, "serve", "--port", str(GAME_PORT), "--protocols", protocol,
                        "--lifetime", "3"], stderr=None)
    out = LineReader(game)
    mapped = out.wait_for(lambda r: "mapped" in r or "failed" in r, 20.0)
    assert mapped is not None and "mapped" in mapped, out.text()
    ip, port = mapped["mapped"]
    time.sleep(7.0)  # more than two lifetimes; the agent keeps ticking
    assert daemon.mappings().count(f"dport {port}") == 1
    assert probe(prober, f"{ip}:{port}")["answered"]
    assert game.stdin is not None
    game.stdin.write("quit\n")

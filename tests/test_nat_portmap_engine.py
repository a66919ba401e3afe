"""The engine through a port mapping: the server player sits behind a symmetric NAT that
no punch can cross, the client behind another, and the handshake server does not relay.
Only the mapping the server player's router makes (miniupnpd: PCP first) lets them meet."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conftest import require_netns
from tests.netbed import NetBed, Node
from tests.netbed_portmap import miniupnpd_available, start_miniupnpd
from tests.test_nat_engine import (  # noqa: F401 - fixtures
    FAILURES,
    HS_IP,
    Game,
    bed,
    game_factory,
    report,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]


@pytest.fixture
def mapped_bed(bed: NetBed) -> Iterator[tuple[Node, Node, Node]]:  # noqa: F811 - fixture
    """(handshake server, host behind a symmetric NAT with miniupnpd, client behind
    another symmetric NAT)."""
    require_netns()
    ok, why = miniupnpd_available()
    if not ok:
        pytest.skip(why)
    hs = bed.public_host("hs", HS_IP)
    ra = bed.nat_router("ra", public_ip="100.63.0.1", symmetric=True)
    rb = bed.nat_router("rb", public_ip="192.0.2.1", symmetric=True)
    daemon = start_miniupnpd(ra)
    try:
        yield hs, bed.host_behind(ra, "a", "10.0.0.2"), bed.host_behind(rb, "b", "10.0.0.2")
    finally:
        daemon.stop()


def test_a_port_mapping_connects_two_symmetric_nats_without_a_relay(
        mapped_bed: tuple[Node, Node, Node],
        game_factory: Callable[[Node], Game]) -> None:  # noqa: F811 - fixture
    hs, a, b = mapped_bed
    game = game_factory(hs)
    game.start_server("--no-relay")
    host = game.agent(a, "host", "--role", "host", "--server-name", "game", "--port-mapping")
    host.wait("confirmed_as_server", 10.0)
    client = game.agent(b, "client", "--role", "client", "--server-name", "game",
                        "--name", "alice")
    client.wait(("connected", *FAILURES), 30.0)
    failed = [r for r in client.out.records() if r.get("ev") in FAILURES]
    assert not failed, f"{failed}\n{game.diag()}"
    game.exchange("m", 20, 20.0, host, client)
    got = client.settled_path()
    report("symmetric x symmetric, host mapped", path=got)
    assert got == "mapped"

"""The engine across NATs of known behaviour (tests/usernat.py), one pair per kind of
outcome: punched where the NATs allow it, relayed where they do not. The whole matrix,
with connect times, is measured by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.natmatrix import two_players
from tests.netbed import NetBed, Node
from tests.test_nat_engine import Game, bed, game_factory, report  # noqa: F401
from tests.usernat import NatBehavior

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

EIM_EIF = NatBehavior("endpoint", "endpoint")
EIM_APDF = NatBehavior("endpoint", "address-port")
ADM_ADF = NatBehavior("address", "address")
ADM_EIF = NatBehavior("address", "endpoint")
APDM_APDF = NatBehavior("address-port", "address-port")

CASES = [
    (EIM_APDF, EIM_APDF, "direct"),  # two ordinary home routers
    (EIM_EIF, APDM_APDF, "direct"),  # a symmetric NAT meets an open one: its punch gets in
    (ADM_ADF, EIM_APDF, "relay"),  # needs port prediction, which the engine does not do
    (APDM_APDF, APDM_APDF, "relay"),  # two symmetric NATs
    # The host's punch gets in (the client's NAT lets anyone in) but nothing the client
    # sends gets to the host: its HELLO on that path goes on through the relay.
    (EIM_APDF, ADM_EIF, "relay"),
]


@pytest.mark.parametrize(("x", "y", "path"), CASES,
                         ids=[f"{x.label}-{y.label}" for x, y, _ in CASES])
def test_a_pair_of_nats_connects_on_the_path_they_allow(
        bed: NetBed, game_factory: Callable[[Node], Game],  # noqa: F811 - fixtures
        x: NatBehavior, y: NatBehavior, path: str) -> None:
    players = two_players(bed, x, y)
    game = game_factory(players.hs)
    game.start_server()
    t0 = time.monotonic()
    host, client = game.connect(players.a, players.b)
    seconds = time.monotonic() - t0
    game.exchange("m", 20, 20.0, host, client)
    got = client.settled_path()
    report(f"{x.label} x {y.label}", connect=round(seconds, 2), path=got)
    assert got == path

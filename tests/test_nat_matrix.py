"""Each NAT behaviour of the matrix does what it claims (RFC 4787 terms).

Per behaviour: a router with that behaviour, two hosts behind it, and two outside hosts
(203.0.113.10 with echo servers on two ports, 203.0.113.20 with one), a STUN-like probe:

- mapping: one socket asks the three servers which address they see; endpoint-independent
  mapping gives one public port, address-dependent one per server IP, address-and-port-
  dependent one per server (ip, port);
- filtering: a fresh socket talks to one server only; then the same IP from another port
  and the other IP send to its public address: endpoint-independent filtering lets both in,
  address-dependent only the first, address-and-port-dependent neither;
- hairpinning: b sends to a's public address, then a to b's; with hairpinning (and a
  mapping that hairpins to the STUN-learned address) b gets a's datagram from a's public
  address, without it nothing arrives.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_netns
from tests.natmatrix import ALL_BEHAVIORS, HS_IP, ProbeClient, send_from, two_players
from tests.netbed import LineReader, NetBed, Node
from tests.usernat import NatBehavior

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

NETBED = str(Path(__file__).with_name("netbed.py"))
PUBLIC = "198.51.100.1"
S1, S2 = "203.0.113.10", "203.0.113.20"


def start_echo(node: Node, port: int) -> None:
    proc = node.python([NETBED, "echo", "--port", str(port), "--lifetime", "300"])
    assert LineReader(proc).wait_for(lambda r: r.get("ready"), 5.0), "echo did not start"


@pytest.fixture(params=ALL_BEHAVIORS, ids=lambda b: b.label)
def nat(request: pytest.FixtureRequest) -> Iterator[tuple[NatBehavior, NetBed]]:
    require_netns()
    behavior: NatBehavior = request.param
    with NetBed() as bed:
        s1 = bed.public_host("s1", S1)
        s2 = bed.public_host("s2", S2)
        for node, port in ((s1, 3478), (s1, 3479), (s2, 3478)):
            start_echo(node, port)
        router = bed.nat_router("r", public_ip=PUBLIC, lan="10.0.0.0/24", behavior=behavior)
        bed.host_behind(router, "a", "10.0.0.2")
        bed.host_behind(router, "b", "10.0.0.3")
        yield behavior, bed


def test_behaviour(nat: tuple[NatBehavior, NetBed]) -> None:
    behavior, bed = nat
    s1, s2 = bed.nodes["s1"], bed.nodes["s2"]
    a = ProbeClient(bed.nodes["a"], 4000)

    # ---- mapping
    m1, m2, m3 = (a.mapped(srv) for srv in ((S1, 3478), (S1, 3479), (S2, 3478)))
    assert m1 and m2 and m3
    assert {m1[0], m2[0], m3[0]} == {PUBLIC}
    ports = (m1[1], m2[1], m3[1])
    if behavior.mapping == "endpoint":
        assert len(set(ports)) == 1, ports
    elif behavior.mapping == "address":
        assert ports[0] == ports[1] != ports[2], ports
    else:
        assert len(set(ports)) == 3, ports

    # ---- filtering, on a fresh mapping that has talked to S1:3478 only
    f = ProbeClient(bed.nodes["a"], 4001)
    fm = f.mapped((S1, 3478))
    assert fm is not None
    send_from(s1, 3480, fm, "same-ip")
    send_from(s2, 3480, fm, "other-ip")
    texts = {text for _, _, text in f.received(1.0)}
    expected = {"endpoint": {"same-ip", "other-ip"}, "address": {"same-ip"},
                "address-port": set()}[behavior.filtering]
    assert texts == expected, (behavior.label, texts)

    # ---- hairpinning
    b = ProbeClient(bed.nodes["b"], 4000)
    pa, pb = m1, b.mapped((S1, 3478))
    assert pb is not None
    b.send(pa, "from-b")  # opens b's filter towards a's public address
    a.send(pb, "hairpin")
    got = [(ip, port) for ip, port, text in b.received(1.0) if text == "hairpin"]
    if behavior.hairpin and (behavior.mapping == "endpoint" or behavior.filtering == "endpoint"):
        assert got, behavior.label
        assert got[0][0] == PUBLIC  # b sees a's public address, not its private one
        if behavior.mapping == "endpoint":
            assert got[0] == pa
    else:
        assert got == [], behavior.label


PUNCH_CASES = [
    (NatBehavior("endpoint", "address-port"), NatBehavior("endpoint", "address-port"), 0, True),
    (NatBehavior("endpoint", "endpoint"), NatBehavior("endpoint", "address"), 20, True),
    (NatBehavior("address-port", "address-port"), NatBehavior("address-port", "address-port"),
     0, False),
]


@pytest.mark.parametrize(("nat_a", "nat_b", "delay_ms", "works"), PUNCH_CASES,
                         ids=lambda v: v.label if isinstance(v, NatBehavior) else str(v))
def test_two_players_punch_as_the_behaviours_predict(
    netbed: NetBed, nat_a: NatBehavior, nat_b: NatBehavior, delay_ms: int, works: bool
) -> None:
    """two_players() as the lead will use it: plain hole punching (no engine) crosses
    endpoint-independent mappings, with delay and loss too, and never two symmetric ones."""
    p = two_players(netbed, nat_a, nat_b, delay_ms=delay_ms, loss=0.05 if delay_ms else 0.0)
    start_echo(p.hs, 3478)
    argv = [NETBED, "punch", "--server", f"{HS_IP}:3478", "--bind-port", "4000",
            "--timeout", "4"]
    pa, pb = p.a.python(argv), p.b.python(argv)
    ra, rb = LineReader(pa), LineReader(pb)
    pub_a = ra.wait_for(lambda r: "public" in r, 10.0)
    pub_b = rb.wait_for(lambda r: "public" in r, 10.0)
    assert pub_a and pub_b, (ra.text(), rb.text())
    assert pa.stdin and pb.stdin
    pa.stdin.write("{} {}\n".format(*pub_b["public"]))
    pb.stdin.write("{} {}\n".format(*pub_a["public"]))
    res_a = ra.wait_for(lambda r: "ok" in r, 15.0)
    res_b = rb.wait_for(lambda r: "ok" in r, 15.0)
    assert res_a is not None and res_b is not None
    assert (res_a["ok"] and res_b["ok"]) is works, (res_a, res_b)

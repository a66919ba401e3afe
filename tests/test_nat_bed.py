"""The NAT test bed itself, proven with tiny UDP tools and no engine.

These show that the bed's NATs behave like the real ones the engine must cope with:
MASQUERADE maps endpoint-independently and filters by address and port (hole punching is
needed and works), --random-fully maps per destination (punching fails), delay and loss
can be added, and a short conntrack timeout makes a NAT forget idle flows.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_netns
from tests.netbed import (
    LOCK_DIR,
    PREFIX_ROOT,
    LineReader,
    NetBed,
    Node,
    Router,
    cleanup_stale,
    netns_list,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(60)]

NETBED = str(Path(__file__).with_name("netbed.py"))
HS_IP = "203.0.113.10"
ECHO_PORT = 3478


def start_echo(node: Node, port: int = ECHO_PORT) -> str:
    """Start the echo tool on ``node``; returns its "ip:port"."""
    proc = node.python([NETBED, "echo", "--port", str(port)])
    assert LineReader(proc).wait_for(lambda r: r.get("ready"), 5.0), "echo server did not start"
    return f"{node.ip}:{port}"


def tool(node: Node, *args: str, timeout: float = 20.0) -> dict[str, Any]:
    """Run a netbed tool to completion on ``node``; returns its last JSON line."""
    res = node.run([sys.executable, NETBED, *args], timeout=timeout)
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def two_nats(
    bed: NetBed, *, sym_a: bool, sym_b: bool, firewall: bool = True
) -> tuple[Node, Node, Node]:
    """hs on the internet; a and b, both 10.0.0.2, behind their own NAT."""
    hs = bed.public_host("hs", HS_IP)
    ra = bed.nat_router("ra", public_ip="198.51.100.1", lan="10.0.0.0/24", symmetric=sym_a,
                        firewall=firewall)
    rb = bed.nat_router("rb", public_ip="192.0.2.1", lan="10.0.0.0/24", symmetric=sym_b,
                        firewall=firewall)
    return hs, bed.host_behind(ra, "a", "10.0.0.2"), bed.host_behind(rb, "b", "10.0.0.2")


def punch(
    a: Node, b: Node, server: str, timeout: float, stagger: float = 0.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both hosts learn their public address from ``server`` and punch towards each other
    (b starts ``stagger`` seconds after a)."""
    argv = [NETBED, "punch", "--server", server, "--bind-port", "4000", "--timeout", str(timeout)]
    pa, pb = a.python(argv), b.python(argv)
    ra, rb = LineReader(pa), LineReader(pb)
    pub_a = ra.wait_for(lambda r: "public" in r, 5.0)
    pub_b = rb.wait_for(lambda r: "public" in r, 5.0)
    assert pub_a and pub_b, (ra.text(), rb.text())
    assert pa.stdin and pb.stdin
    pa.stdin.write("{} {}\n".format(*pub_b["public"]))
    pa.stdin.flush()
    time.sleep(stagger)
    pb.stdin.write("{} {}\n".format(*pub_a["public"]))
    pb.stdin.flush()
    res_a = ra.wait_for(lambda r: "ok" in r, timeout + 5.0)
    res_b = rb.wait_for(lambda r: "ok" in r, timeout + 5.0)
    assert res_a and res_b, (ra.text(), rb.text())
    return res_a, res_b


def test_mapping_endpoint_independent_vs_symmetric(netbed: NetBed) -> None:
    hs = netbed.public_host("hs", HS_IP)
    hs2 = netbed.public_host("hs2", "203.0.113.20")
    cone = netbed.nat_router("rc", public_ip="198.51.100.1", lan="10.0.0.0/24")
    sym = netbed.nat_router("rs", public_ip="192.0.2.1", lan="10.0.0.0/24", symmetric=True)
    a = netbed.host_behind(cone, "a", "10.0.0.2")
    b = netbed.host_behind(sym, "b", "10.0.0.2")
    servers = [start_echo(hs), start_echo(hs2)]
    args = [arg for s in servers for arg in ("--server", s)]

    seen_a = tool(a, "mapping", "--bind-port", "4000", *args)["seen"]
    ports_a = {tuple(v) for v in seen_a.values()}
    assert ports_a == {("198.51.100.1", 4000)}, seen_a  # same mapping for every destination

    seen_b = tool(b, "mapping", "--bind-port", "4000", *args)["seen"]
    assert {v[0] for v in seen_b.values()} == {"192.0.2.1"}
    assert len({v[1] for v in seen_b.values()}) == 2, seen_b  # a new port per destination


def test_hole_punching_through_two_masquerade_nats(netbed: NetBed) -> None:
    hs, a, b = two_nats(netbed, sym_a=False, sym_b=False)
    res_a, res_b = punch(a, b, start_echo(hs), timeout=5.0)
    assert res_a["ok"] and res_b["ok"]
    assert res_a["heard_from"] == ["192.0.2.1", 4000]
    assert res_b["heard_from"] == ["198.51.100.1", 4000]


def test_unsolicited_packets_are_filtered(netbed: NetBed) -> None:
    """Address-and-port dependent filtering: only the address we sent to gets through."""
    hs, a, _ = two_nats(netbed, sym_a=False, sym_b=False)
    other = netbed.public_host("other", "203.0.113.30")
    server = start_echo(hs)
    sink = a.python([NETBED, "punch", "--server", server, "--bind-port", "4000",
                     "--timeout", "2"])
    reader = LineReader(sink)
    assert reader.wait_for(lambda r: "public" in r, 5.0)
    # `other` sends to a's mapping (198.51.100.1:4000), which a never talked to: dropped.
    probe = other.python([NETBED, "punch", "--server", server, "--bind-port", "4000",
                          "--timeout", "1.5"])
    probe_reader = LineReader(probe)
    assert probe_reader.wait_for(lambda r: "public" in r, 5.0)
    assert probe.stdin and sink.stdin
    probe.stdin.write("198.51.100.1 4000\n")
    probe.stdin.flush()
    sink.stdin.write("192.0.2.99 9\n")  # a punches somewhere else (nobody there)
    sink.stdin.flush()
    res = reader.wait_for(lambda r: "ok" in r, 6.0)
    assert res is not None and res["heard_from"] is None, res


def test_staggered_punching_works_through_firewalled_nats(netbed: NetBed) -> None:
    """a starts 0.3 s before b: a's first packets reach b's router before b's own mapping
    exists. The firewall drops them before conntrack keeps them, so b's mapping is intact."""
    hs, a, b = two_nats(netbed, sym_a=False, sym_b=False)
    res_a, res_b = punch(a, b, start_echo(hs), timeout=5.0, stagger=0.3)
    assert res_a["ok"] and res_b["ok"]


def test_unfirewalled_linux_nat_breaks_staggered_punching(netbed: NetBed) -> None:
    """Why routers have ``firewall=True`` by default. With a bare MASQUERADE rule, a's early
    packet reaches b's router first; conntrack keeps an entry for it (delivered locally, port
    closed), and b's own first packet to a then clashes with that entry, so MASQUERADE gives
    it another port: a sees nothing from the port it expects, and b's packets to a keep
    hitting the router. Punching fails for as long as the punches go on."""
    hs, a, b = two_nats(netbed, sym_a=False, sym_b=False, firewall=False)
    res_a, res_b = punch(a, b, start_echo(hs), timeout=2.0, stagger=0.3)
    assert not res_a["ok"] and not res_b["ok"]


def test_hole_punching_fails_behind_symmetric_nat(netbed: NetBed) -> None:
    hs, a, b = two_nats(netbed, sym_a=True, sym_b=False)
    res_a, res_b = punch(a, b, start_echo(hs), timeout=2.0)
    assert not res_a["ok"] and not res_b["ok"]
    assert res_a["heard_from"] is None and res_b["heard_from"] is None


def test_lan_hosts_talk_over_private_addresses_not_hairpin(netbed: NetBed) -> None:
    hs = netbed.public_host("hs", HS_IP)
    router = netbed.nat_router("r", public_ip="198.51.100.1", lan="192.168.1.0/24")
    a = netbed.host_behind(router, "a", "192.168.1.10")
    b = netbed.host_behind(router, "b", "192.168.1.11")
    server = start_echo(hs)
    # Over the LAN addresses: works.
    b_echo = start_echo(b, 5000)
    lan = tool(a, "ping", "--server", b_echo, "--count", "5")
    assert lan["received"] == 5
    # Via the router's public address (hairpin): this NAT does not loop back.
    b_public = tool(b, "mapping", "--server", server, "--bind-port", "6000")["seen"][server]
    assert b_public == ["198.51.100.1", 6000]
    sink = b.python([NETBED, "echo", "--port", "6001"])
    assert LineReader(sink).wait_for(lambda r: r.get("ready"), 5.0)
    hairpin = tool(a, "ping", "--server", "198.51.100.1:6000", "--count", "3", "--wait", "0.5")
    assert hairpin["received"] == 0


def test_delay_is_measurable(netbed: NetBed) -> None:
    hs = netbed.public_host("hs", HS_IP)
    router = netbed.nat_router("r", public_ip="198.51.100.1")
    a = netbed.host_behind(router, "a", "10.0.0.2")
    server = start_echo(hs)
    base = tool(a, "ping", "--server", server, "--count", "10")
    a.impair("eth0", delay_ms=50)
    slow = tool(a, "ping", "--server", server, "--count", "10")
    assert base["received"] == slow["received"] == 10
    assert statistics.median(base["rtts"]) < 0.02, base
    assert min(slow["rtts"]) >= 0.049, slow
    assert statistics.median(slow["rtts"]) < 0.05 + 0.04, slow


def test_loss_is_measurable(netbed: NetBed) -> None:
    hs = netbed.public_host("hs", HS_IP)
    router = netbed.nat_router("r", public_ip="198.51.100.1")
    a = netbed.host_behind(router, "a", "10.0.0.2")
    server = start_echo(hs)
    a.impair("eth0", loss=0.2, seed=7)
    res = tool(a, "ping", "--server", server, "--count", "200", "--interval", "0.002",
               "--wait", "0.3")
    assert 200 * 0.65 <= res["received"] <= 200 * 0.92, res


def test_short_conntrack_timeout_forgets_idle_flows(netbed: NetBed) -> None:
    """With a 1 s UDP timeout the NAT drops a reply that comes 2 s late; 30 s keeps it."""
    hs = netbed.public_host("hs", HS_IP)
    forgetful = netbed.nat_router("rf", public_ip="198.51.100.1", udp_timeout=1)
    normal = netbed.nat_router("rn", public_ip="192.0.2.1")
    key = "net.netfilter.nf_conntrack_udp_timeout"
    assert forgetful.run(["sysctl", "-n", key]).stdout.strip() == "1"  # conntrack is per netns
    assert normal.run(["sysctl", "-n", key]).stdout.strip() == "30"
    a = netbed.host_behind(forgetful, "a", "10.0.0.2")
    b = netbed.host_behind(normal, "b", "10.0.0.2")
    server = start_echo(hs)
    argv = [sys.executable, NETBED, "ping", "--server", server, "--count", "1", "--later", "2.0"]
    pa, pb = a.popen(argv), b.popen(argv)
    out_a, _ = pa.communicate(timeout=15)
    out_b, _ = pb.communicate(timeout=15)
    res_a = json.loads(out_a.splitlines()[-1])
    res_b = json.loads(out_b.splitlines()[-1])
    assert res_a["received"] == 1 and res_a["late"] == [], res_a  # mapping forgotten
    assert res_b["received"] == 1 and len(res_b["late"]) == 1, res_b


def test_packet_counter_sees_traffic_to_the_server(netbed: NetBed) -> None:
    hs = netbed.public_host("hs", HS_IP)
    router = netbed.nat_router("r", public_ip="198.51.100.1")
    a = netbed.host_behind(router, "a", "10.0.0.2")
    server = start_echo(hs)
    hs.add_counter("hs_in", "-p", "udp", "--dport", str(ECHO_PORT))
    before = hs.counter("hs_in")[0]
    tool(a, "ping", "--server", server, "--count", "7")
    assert hs.counter("hs_in")[0] - before == 7
    assert hs.link_stats("wan")["rx_packets"] >= 7


def test_nothing_is_routed_out_of_the_bed(netbed: NetBed) -> None:
    """Routers and public hosts have no default route: only the bed's ranges are reachable."""
    hs = netbed.public_host("hs", HS_IP)
    router = netbed.nat_router("r", public_ip="198.51.100.1")
    a = netbed.host_behind(router, "a", "10.0.0.2")
    for node in (hs, router):
        # `ip route get` only consults the table; no packet is sent.
        assert node.run(["ip", "route", "get", "1.1.1.1"], check=False).returncode != 0
        assert "default" not in node.run(["ip", "route", "show"]).stdout
    assert f"default via {router.gateway}" in a.run(["ip", "route", "show"]).stdout
    assert isinstance(router, Router)


def test_bed_is_torn_down_and_names_are_unique() -> None:
    require_netns()
    with NetBed() as one, NetBed() as two:
        assert one.prefix != two.prefix
        one.public_host("hs", HS_IP)
        two.public_host("hs", HS_IP)  # same node name in two beds at once
        names = one.namespaces() + two.namespaces()
        listed = "\n".join(netns_list())
        assert all(n in listed for n in names)
    listed = "\n".join(netns_list())
    assert not any(n in listed for n in names)


CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.netbed import NetBed
    bed = NetBed()
    bed.open()
    try:
        bed.public_host("hs", "203.0.113.10")
        print(" ".join(bed.namespaces()), flush=True)
        time.sleep(60)
    finally:
        bed.close()
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_interrupted_run_is_cleaned_up(sig: signal.Signals) -> None:
    """SIGTERM: the owner tears down itself. SIGKILL: the next bed removes the leftovers."""
    require_netns()
    root = str(Path(__file__).resolve().parent.parent)
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=root)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        names = child.stdout.readline().split()
        assert names and all(n.startswith(PREFIX_ROOT) for n in names)
        os.kill(child.pid, sig)
        child.wait(timeout=10)
        if sig == signal.SIGKILL:
            listed = netns_list()
            assert all(n in listed for n in names)  # left behind by the dead owner
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not set(names) <= set(cleanup_stale()):
                time.sleep(0.1)
        listed = netns_list()
        assert not any(n in listed for n in names)
        prefix = names[0].split("-")[0]
        assert not (LOCK_DIR / f"{prefix}.lock").exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

"""The real engine across real NATs: one process per player, each in its own namespace.

The handshake server (``python -m server``) runs on a public host; each player is a
``tests/nat_agent.py`` process behind a NAT router of ``tests/netbed.py``. The agents print
JSON lines; these tests drive them over stdin (``send N TAG``, ``stats``, ``quit``) and read
what happened.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.netbed import ROOT, LineReader, NetBed, Node

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]

AGENT = str(Path(__file__).with_name("nat_agent.py"))
HS_IP = "203.0.113.10"
HS_PORT = 5160
HS = f"{HS_IP}:{HS_PORT}"
#: Events that end a session or a peer (agent names: the engine's event names, lower case).
FAILURES = ("session_terminated", "peer_timeout", "peer_connection_failed")


def _engine_problem() -> str | None:
    try:
        framework = importlib.import_module("framework")
    except Exception as exc:
        return f"`import framework` fails: {exc!r}"
    if not hasattr(framework, "Peer"):
        return "framework.Peer does not exist yet"
    if not (ROOT / "server" / "__main__.py").exists():
        return "server/__main__.py does not exist yet (python -m server)"
    return None


@pytest.fixture
def bed(netbed: NetBed) -> NetBed:
    """The netbed fixture, once the engine is there (skip before; with CI=true, fail)."""
    problem = _engine_problem()
    if problem:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true but the engine is missing: {problem}", pytrace=False)
        pytest.skip(problem)
    return netbed


class Agent:
    """One ``nat_agent.py --control`` process and what it printed."""

    def __init__(self, node: Node, label: str, argv: list[str], logdir: Path) -> None:
        self.label = label
        self.sent = 0
        self.stderr_path = logdir / f"{label}.stderr"
        self._stderr: IO[str] = self.stderr_path.open("w")
        self.proc = node.python([AGENT, "--control", *argv], stderr=self._stderr, cwd=ROOT)
        self.out = LineReader(self.proc)

    def cmd(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def find(self, ev: str) -> list[dict[str, Any]]:
        return [r for r in self.out.records() if r.get("ev") == ev]

    def settled_path(self, timeout: float = 8.0) -> str | None:
        """The path this player ends up on. Sessions start on whichever of the relay and
        a punched path answers first; a relayed one moves (PATH_CHANGED) when a direct
        path opens, so "relay" is final only after ``timeout`` without a move."""
        connected = self.find("connected")
        path = path_of(connected[-1]) if connected else None
        if path == "relay":
            moved = self.out.wait_for(lambda r: r.get("ev") == "path_changed", timeout)
            if moved is not None:
                path = str(moved.get("path"))
        return path

    def wait(self, ev: str | tuple[str, ...], timeout: float, **match: Any) -> dict[str, Any]:
        kinds = (ev,) if isinstance(ev, str) else ev
        rec = self.out.wait_for(
            lambda r: r.get("ev") in kinds and all(r.get(k) == v for k, v in match.items()),
            timeout,
        )
        if rec is None:
            raise AssertionError(f"{self.label}: no {ev} {match or ''} within {timeout}s\n"
                                 + self.diag())
        return rec

    def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        before = len(self.find("stats"))
        self.cmd("stats")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find("stats")
            if len(found) > before:
                return found[-1]
            time.sleep(0.02)
        raise AssertionError(f"{self.label}: no stats answer\n" + self.diag())

    def quit(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            with_stdin = self.proc.stdin is not None and not self.proc.stdin.closed
            if with_stdin:
                self.cmd("quit")
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def diag(self) -> str:
        self._stderr.flush()
        err = self.stderr_path.read_text(errors="replace").splitlines()[-40:]
        out = self.out.text().splitlines()[-60:]
        return (f"--- {self.label} stdout (last {len(out)} lines)\n" + "\n".join(out)
                + f"\n--- {self.label} stderr\n" + "\n".join(err))


class Game:
    """A handshake server and two players on a bed; collects diagnostics for failures."""

    def __init__(self, bed: NetBed, hs: Node, logdir: Path) -> None:
        self.bed = bed
        self.hs = hs
        self.logdir = logdir
        self.agents: list[Agent] = []
        self.server: subprocess.Popen[str] | None = None
        self.server_log = logdir / "handshake-server.log"

    def start_server(self, *flags: str) -> None:
        log = self.server_log.open("w")
        self.server = self.hs.python(
            ["-m", "server", "--host", "0.0.0.0", "--port", str(HS_PORT), *flags],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            listening = self.hs.run(["ss", "-Hunl", f"sport = :{HS_PORT}"], check=False).stdout
            if listening.strip():
                return
            if self.server.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("handshake server did not start\n" + self.server_text())

    def stop_server(self) -> None:
        assert self.server is not None
        self.server.terminate()
        self.server.wait(timeout=5)

    def server_text(self) -> str:
        return self.server_log.read_text(errors="replace")[-4000:]

    def agent(self, node: Node, label: str, *argv: str) -> Agent:
        agent = Agent(node, label, ["--hs", HS, "--timeout", "80", *argv], self.logdir)
        self.agents.append(agent)
        return agent

    def diag(self) -> str:
        return "\n".join(a.diag() for a in self.agents) + (
            "\n--- handshake server log\n" + self.server_text()
        )

    def connect(
        self, host_node: Node, client_node: Node, *extra: str, timeout: float = 20.0
    ) -> tuple[Agent, Agent]:
        """Start the server player, then the client; wait until both see each other."""
        host = self.agent(host_node, "host", "--role", "host", "--server-name", "game", *extra)
        host.wait("confirmed_as_server", 10.0)
        client = self.agent(client_node, "client", "--role", "client", "--server-name", "game",
                            "--name", "alice", *extra)
        client.wait(("connected", *FAILURES), timeout)
        host.wait(("connected", *FAILURES), timeout)
        failed = [r for a in (host, client) for r in a.out.records() if r.get("ev") in FAILURES]
        assert not failed, f"connection failed: {failed}\n{self.diag()}"
        return host, client

    def exchange(self, tag: str, count: int, timeout: float, *agents: Agent) -> float:
        """Every agent sends ``count`` reliable messages; wait until each got all of the
        others' and its own are acknowledged. Returns the seconds it took."""
        start = time.monotonic()
        for a in agents:
            a.cmd(f"send {count} {tag}")
            a.sent += count
        for a in agents:
            a.wait("received_all", timeout, tag=tag, n=count)
        for a in agents:
            def acked(r: dict[str, Any], total: int = a.sent) -> bool:
                return r.get("ev") == "acked" and int(r["sent"]) >= total

            if a.out.wait_for(acked, timeout):
                continue
            raise AssertionError(f"{a.label}: messages not acknowledged\n{self.diag()}")
        return time.monotonic() - start

    def close(self) -> dict[str, int]:
        codes = {a.label: a.quit() for a in self.agents}
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.server.wait(timeout=5)
        return codes


@pytest.fixture
def game_factory(bed: NetBed, tmp_path: Path) -> Iterator[Callable[[Node], Game]]:
    games: list[Game] = []

    def make(hs: Node) -> Game:
        game = Game(bed, hs, tmp_path)
        games.append(game)
        return game

    yield make
    for game in games:
        game.close()


def two_nats(
    bed: NetBed, *, sym_a: bool = False, sym_b: bool = False, udp_timeout: int | None = None
) -> tuple[Node, Node, Node]:
    """hs on the internet; players a and b, both 10.0.0.2 (as at home), behind own NATs."""
    hs = bed.public_host("hs", HS_IP)
    ra = bed.nat_router("ra", public_ip="198.51.100.1", symmetric=sym_a, udp_timeout=udp_timeout)
    rb = bed.nat_router("rb", public_ip="192.0.2.1", symmetric=sym_b, udp_timeout=udp_timeout)
    return hs, bed.host_behind(ra, "a", "10.0.0.2"), bed.host_behind(rb, "b", "10.0.0.2")


def path_of(rec: dict[str, Any]) -> str | None:
    stats = rec.get("stats") or {}
    return stats.get("path") if isinstance(stats, dict) else None


def address_of(rec: dict[str, Any]) -> tuple[str, int] | None:
    info = rec.get("info") or {}
    addr = info.get("address") if isinstance(info, dict) else None
    return (str(addr[0]), int(addr[1])) if addr else None


def report(label: str, **facts: Any) -> None:
    """Timings and facts worth seeing in `pytest -s` output."""
    print(f"[{label}] " + " ".join(f"{k}={v}" for k, v in facts.items()), file=sys.stderr)


# --------------------------------------------------------------------------- topologies


def test_direct_path_through_two_nats(bed: NetBed, game_factory: Callable[[Node], Game]) -> None:
    """Both behind their own endpoint-independent NAT: punched, direct, and once connected
    the game goes on without the handshake server."""
    hs, a, b = two_nats(bed)
    game = game_factory(hs)
    game.start_server()
    hs.add_counter("hs_udp", "-p", "udp", "--dport", str(HS_PORT))
    t0 = time.monotonic()
    host, client = game.connect(a, b)
    t_connect = time.monotonic() - t0

    assert client.settled_path() == "direct", game.diag()
    assert host.settled_path() == "direct", game.diag()
    c_stats, h_stats = client.stats(), host.stats()
    host_addr, client_addr = address_of(c_stats), address_of(h_stats)
    assert host_addr is not None and host_addr[0] == "198.51.100.1", c_stats
    assert client_addr is not None and client_addr[0] == "192.0.2.1", h_stats
    t1 = game.exchange("before", 20, 15.0, host, client)

    # The handshake server goes away; the session must not notice.
    before = hs.counter("hs_udp")[0]
    game.stop_server()
    t2 = game.exchange("after", 100, 20.0, host, client)
    to_server = hs.counter("hs_udp")[0] - before
    # 200 messages went between the players; at most a registration refresh reached hs.
    assert to_server <= 3, f"{to_server} datagrams to the handshake server\n{game.diag()}"
    for agent in (host, client):
        assert not [r for r in agent.out.records() if r.get("ev") in FAILURES], game.diag()
    assert game.close() == {"host": 0, "client": 0}
    report("direct", connect_s=round(t_connect, 2), before_s=round(t1, 2),
           after_s=round(t2, 2), datagrams_to_hs_after=to_server)


def test_lan_path_behind_one_router(bed: NetBed, game_factory: Callable[[Node], Game]) -> None:
    """Both players behind the same router (which does not hairpin): they must use the LAN."""
    hs = bed.public_host("hs", HS_IP)
    router = bed.nat_router("r", public_ip="198.51.100.1", lan="192.168.1.0/24")
    a = bed.host_behind(router, "a", "192.168.1.10")
    b = bed.host_behind(router, "b", "192.168.1.11")
    game = game_factory(hs)
    game.start_server()
    t0 = time.monotonic()
    host, client = game.connect(a, b)
    t_connect = time.monotonic() - t0
    # The session may start on the relay; it must settle on the LAN path.
    assert client.settled_path() == "lan", game.diag()
    assert host.settled_path() == "lan", game.diag()
    c_stats = client.stats()
    addr = address_of(c_stats)
    assert addr is not None, game.diag()
    assert path_of(c_stats) == "lan", f"{c_stats}\n{game.diag()}"
    t1 = game.exchange("lan", 50, 15.0, host, client)
    assert game.close() == {"host": 0, "client": 0}
    report("lan", connect_s=round(t_connect, 2), exchange_s=round(t1, 2),
           path=path_of(c_stats), peer_address=addr)


def test_delay_and_loss_on_both_sides(bed: NetBed, game_factory: Callable[[Node], Game]) -> None:
    """50 ms one-way delay and 5% loss on each player's link: connecting and reliable
    messaging still work."""
    hs, a, b = two_nats(bed)
    a.impair("eth0", delay_ms=50, loss=0.05, seed=11)
    b.impair("eth0", delay_ms=50, loss=0.05, seed=12)
    game = game_factory(hs)
    game.start_server()
    t0 = time.monotonic()
    host, client = game.connect(a, b, "--pad", "300", timeout=30.0)
    t_connect = time.monotonic() - t0
    t1 = game.exchange("lossy", 200, 30.0, host, client)  # ~60 kB each way
    c_stats = client.stats()
    assert path_of(c_stats) == "direct", game.diag()
    rtt = float((c_stats.get("stats") or {}).get("rtt") or 0.0)
    # a -> b and b -> a each cross one 50 ms link.
    assert rtt == 0.0 or 0.08 <= rtt <= 1.5, c_stats
    assert game.close() == {"host": 0, "client": 0}
    report("delay+loss", connect_s=round(t_connect, 2), exchange_s=round(t1, 2), rtt=rtt)


def test_forgetful_nat_kept_open_by_heartbeats(
    bed: NetBed, game_factory: Callable[[Node], Game]
) -> None:
    """NATs forget idle UDP flows after 2 s; heartbeats every 0.5 s keep the path open."""
    hs, a, b = two_nats(bed, udp_timeout=2)
    game = game_factory(hs)
    game.start_server()
    host, client = game.connect(a, b, "--peer-checks", "0.5")
    game.exchange("warm", 5, 10.0, host, client)
    time.sleep(1.5)  # past the round-trip probes that follow the warm-up's traffic
    # Only what goes between the players (not the registration refreshes to hs).
    a.add_counter("ka_out", "-p", "udp", "-d", "192.0.2.1", chain="OUTPUT")
    a.add_counter("ka_in", "-p", "udp", "-s", "192.0.2.1", chain="INPUT")
    time.sleep(4.0)  # no game traffic: only the engine's own heartbeats
    sent, got = a.counter("ka_out", chain="OUTPUT"), a.counter("ka_in", chain="INPUT")
    t1 = game.exchange("after-idle", 20, 15.0, host, client)
    # One check (the client's) and its answer per interval (8 of them): the server
    # player leaves the checking to the client while its checks keep coming (both
    # checking would be 32).
    datagrams = sent[0] + got[0]
    assert datagrams <= 8 * 2 + 4, f"{sent} out, {got} in: more than one check a beat"
    for agent in (host, client):
        assert not [r for r in agent.out.records() if r.get("ev") in FAILURES], game.diag()
    assert game.close() == {"host": 0, "client": 0}
    report("forgetful+heartbeats", exchange_after_idle_s=round(t1, 2),
           idle_datagrams=datagrams, idle_bytes=sent[1] + got[1])


def test_forgetful_nat_without_heartbeats_is_never_silent(
    bed: NetBed, game_factory: Callable[[Node], Game]
) -> None:
    """NATs forget idle flows after 2 s and heartbeats are rare (30 s): after 4 s idle the
    host's messages either still arrive or the loss is reported. Never silently lost."""
    hs, a, b = two_nats(bed, udp_timeout=2)
    game = game_factory(hs)
    game.start_server()
    host, client = game.connect(a, b, "--peer-checks", "30", "--reply-wait", "0.5",
                                "--attempts", "4", "--verbose")
    game.exchange("warm", 5, 10.0, host, client)
    time.sleep(4.0)  # twice the NAT timeout
    t0 = time.monotonic()
    host.cmd("send 10 late")

    def accounted() -> tuple[set[int], set[int], list[str]]:
        """Indexes of "late" delivered, indexes reported lost, and session-level failures."""
        delivered = {int(r["i"]) for r in client.find("recv") if r.get("tag") == "late"}
        lost = {
            int(r["packet_data"]["message"]["i"])
            for r in host.find("reliable_message_timeout")
            if isinstance(r.get("packet_data", {}).get("message"), dict)
            and r["packet_data"]["message"].get("tag") == "late"
        }
        ended = [f"{a.label}:{r['ev']}" for a in (host, client) for r in a.out.records()
                 if r.get("ev") in FAILURES]
        return delivered, lost, ended

    deadline = t0 + 30.0
    while time.monotonic() < deadline:
        delivered, lost, ended = accounted()
        if len(delivered | lost) == 10 or ended:
            break
        time.sleep(0.05)
    delivered, lost, ended = accounted()
    seconds = round(time.monotonic() - t0, 2)
    # Each message arrived, or the sender was told it did not, or the session visibly ended.
    assert len(delivered | lost) == 10 or ended, (
        f"silently lost: delivered={sorted(delivered)} reported={sorted(lost)}\n{game.diag()}"
    )
    game.close()
    report("forgetful, no heartbeats", seconds=seconds, delivered=len(delivered),
           reported_lost=len(lost), session_events=ended)


def test_unfirewalled_masquerade_still_connects(
    bed: NetBed, game_factory: Callable[[Node], Game]
) -> None:
    """Routers with a bare MASQUERADE rule and no input firewall: Linux conntrack keeps an
    entry for the other side's early punch packets and then remaps our own first packet
    (see test_nat_bed), so punching usually fails. The session must still come up."""
    hs = bed.public_host("hs", HS_IP)
    ra = bed.nat_router("ra", public_ip="198.51.100.1", firewall=False)
    rb = bed.nat_router("rb", public_ip="192.0.2.1", firewall=False)
    a, b = bed.host_behind(ra, "a", "10.0.0.2"), bed.host_behind(rb, "b", "10.0.0.2")
    game = game_factory(hs)
    game.start_server()
    t0 = time.monotonic()
    host, client = game.connect(a, b, timeout=40.0)
    t_connect = time.monotonic() - t0
    path = path_of(client.stats())
    assert path in ("direct", "relay"), game.diag()
    t1 = game.exchange("bare", 50, 20.0, host, client)
    assert game.close() == {"host": 0, "client": 0}
    report("bare masquerade", connect_s=round(t_connect, 2), exchange_s=round(t1, 2), path=path)


def test_symmetric_nat_falls_back_to_relay(
    bed: NetBed, game_factory: Callable[[Node], Game]
) -> None:
    """The client is behind a symmetric NAT (MASQUERADE --random-fully): punching cannot
    work, so the session must go through the handshake server's relay."""
    hs, a, b = two_nats(bed, sym_b=True)
    game = game_factory(hs)
    game.start_server()
    hs.add_counter("hs_udp", "-p", "udp", "--dport", str(HS_PORT))
    t0 = time.monotonic()
    host, client = game.connect(a, b, "--pad", "200", timeout=40.0)
    t_connect = time.monotonic() - t0
    c_stats, h_stats = client.stats(), host.stats()
    assert path_of(c_stats) == "relay", f"{c_stats}\n{game.diag()}"
    assert path_of(h_stats) == "relay", f"{h_stats}\n{game.diag()}"
    before = hs.counter("hs_udp")[0]
    t1 = game.exchange("relayed", 100, 20.0, host, client)  # ~20 kB each way
    through_hs = hs.counter("hs_udp")[0] - before
    # The messages really went through the server: 40 kB need well over 20 datagrams.
    assert through_hs >= 20, f"{through_hs} datagrams via hs\n{game.diag()}"
    assert game.close() == {"host": 0, "client": 0}
    report("symmetric->relay", connect_s=round(t_connect, 2), exchange_s=round(t1, 2),
           datagrams_via_hs=through_hs)


def test_symmetric_nat_without_relay_reports_failure(
    bed: NetBed, game_factory: Callable[[Node], Game]
) -> None:
    """With the relay switched off, a symmetric NAT makes the connection fail, visibly."""
    help_text = subprocess.run(
        [sys.executable, "-m", "server", "--help"], capture_output=True, text=True, cwd=ROOT,
        check=False, timeout=30,
    ).stdout
    if "--no-relay" not in help_text:
        pytest.skip("python -m server has no --no-relay flag yet")
    hs, a, b = two_nats(bed, sym_b=True)
    game = game_factory(hs)
    game.start_server("--no-relay")
    host = game.agent(a, "host", "--role", "host", "--server-name", "game")
    host.wait("confirmed_as_server", 10.0)
    client = game.agent(b, "client", "--role", "client", "--server-name", "game",
                        "--name", "alice")
    t0 = time.monotonic()
    rec = client.wait(("connected", *FAILURES, "error"), 40.0)
    assert rec["ev"] != "connected", f"connected through a symmetric NAT without relay?\n{rec}"
    report("symmetric, no relay", outcome=rec["ev"], seconds=round(time.monotonic() - t0, 2))

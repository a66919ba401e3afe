"""The NAT behaviour matrix, played: which path every pair of NATs reaches, and how fast.

``python -m tools.bench_nat [--write docs/BENCHMARKS.md] [--pairs N] [--quick]`` (as
root: it builds network namespaces with ``tests/netbed.py``). For every unordered pair of
the nine RFC 4787 mapping x filtering behaviours (``tests.natmatrix.behavior_pairs``), and a
few topologies beside them (two players behind one router, with and without hairpinning;
two symmetric NATs where one router maps ports with a real miniupnpd), it builds the bed
with 40 ms added on each router's way out (80 ms between the players, 40 ms to the
handshake server), runs a handshake server and a host there, and joins it again and again
from the other side (``tools/nat_connect_agent.py``), with no loss and with 10% loss
each way. The same is done with the protocol v1 engine (``tools/bench_baseline.py``) on
the same bed, so both are measured in one run.

The section it writes replaces ``## NAT matrix`` in the Markdown file.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.natmatrix import behavior_pairs, two_players
from tests.netbed import LineReader, NetBed, Node, netns_available
from tests.netbed_portmap import miniupnpd_available, start_miniupnpd
from tests.usernat import NatBehavior
from tools.bench_baseline import baseline_tree
from tools.benchdoc import write_section

ROOT = Path(__file__).resolve().parent.parent
AGENT = str(ROOT / "tools" / "nat_connect_agent.py")
HEADING = "## NAT matrix"
HS_PORT = 5160
DELAY_MS = 40.0
RTT = 2 * DELAY_MS / 1000  # between the players
LOSS = 0.10
SETTLE = 1.5  # seconds a v2 session is watched after it is confirmed, for a move


def log(msg: str) -> None:
    print(f"[bench_nat] {msg}", file=sys.stderr, flush=True)


@dataclass
class Samples:
    """The joins of one engine on one bed under one condition."""

    connect: list[float] = field(default_factory=list)
    after_intro: list[float] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # final path of each join
    moved: list[float] = field(default_factory=list)
    failed: int = 0

    @property
    def n(self) -> int:
        return len(self.connect) + self.failed


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank): with few samples, p99 is the worst one."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[rank]


@contextlib.contextmanager
def handshake_server(node: Node, root: Path, v2: bool) -> Iterator[None]:
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["-m", "server", "--host", "0.0.0.0", "--port", str(HS_PORT)]
        if v2:
            argv += ["--key-file", str(Path(tmp) / "hs.key")]
        proc = node.python(argv, cwd=root, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if node.run(["ss", "-Hunl", f"sport = :{HS_PORT}"], check=False).stdout.strip():
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"the handshake server of {root} did not start")
            yield
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


@contextlib.contextmanager
def hosting(hs: Node, a: Node, root: Path, v2: bool,
            host_args: tuple[str, ...] = ()) -> Iterator[str]:
    """A handshake server on ``hs`` and a registered host on ``a``, both of ``root``'s
    engine; yields the handshake server's address for joiners."""
    target = f"{hs.ip}:{HS_PORT}"
    with handshake_server(hs, root, v2):
        host = a.python([AGENT, "host", "--root", str(root), "--hs", target,
                         *(host_args if v2 else ())], stderr=subprocess.DEVNULL)
        try:
            if LineReader(host).wait_for(lambda r: "ready" in r or "error" in r,
                                         15.0) is None:
                raise RuntimeError("the host did not register")
            yield target
        finally:
            assert host.stdin is not None
            with contextlib.suppress(OSError):
                host.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                host.wait(5)


def play(hs: Node, a: Node, b: Node, root: Path, v2: bool, rounds: int,
         parallel: int, host_args: tuple[str, ...] = ()) -> Samples:
    """Host on ``a``, ``rounds`` x ``parallel`` joins from ``b``."""
    out = Samples()
    with hosting(hs, a, root, v2, host_args) as target:
        client = b.python([AGENT, "client", "--root", str(root), "--hs", target,
                           "--rounds", str(rounds), "--parallel", str(parallel),
                           "--settle", str(SETTLE) if v2 else "0"],
                          stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reader = LineReader(client)
        limit = rounds * (30.0 + 3.0) + 30.0
        if reader.wait_for(lambda r: "done" in r, limit) is None:
            client.kill()
    for r in reader.records():
        if "ok" not in r:
            continue
        if not r["ok"]:
            out.failed += 1
            continue
        out.connect.append(float(r["connect"]))
        out.after_intro.append(float(r["after_intro"]))
        out.paths.append(str(r["final"]))
        if r.get("moved") is not None:
            out.moved.append(float(r["moved"]))
    return out


@dataclass
class Case:
    label: str
    build: Any  # (bed, loss) -> (hs, a, b)
    host_args: tuple[str, ...] = ()


def matrix_cases(limit: int | None) -> list[Case]:
    cases: list[Case] = []
    for x, y in behavior_pairs():
        def build(bed: NetBed, loss: float, x: NatBehavior = x,
                  y: NatBehavior = y) -> tuple[Node, Node, Node]:
            p = two_players(bed, x, y, delay_ms=DELAY_MS, loss=loss, seed=7)
            return p.hs, p.a, p.b
        cases.append(Case(f"{x.label} x {y.label}", build))
    cases = cases[:limit] if limit is not None else cases
    for hairpin in (False, True):
        def same_router(bed: NetBed, loss: float,
                        hairpin: bool = hairpin) -> tuple[Node, Node, Node]:
            hs = bed.public_host("hs", "203.0.113.10")
            r = bed.nat_router("r", public_ip="198.51.100.1", lan="192.168.1.0/24",
                               behavior=NatBehavior("endpoint", "address-port",
                                                    hairpin=hairpin))
            r.impair("wan", delay_ms=DELAY_MS, loss=loss, seed=7)
            return (hs, bed.host_behind(r, "a", "192.168.1.10"),
                    bed.host_behind(r, "b", "192.168.1.11"))
        cases.append(Case(f"one router, hairpin {'on' if hairpin else 'off'}", same_router))
    ok, _ = miniupnpd_available()
    if ok:
        def mapped(bed: NetBed, loss: float) -> tuple[Node, Node, Node]:
            hs = bed.public_host("hs", "203.0.113.10")
            ra = bed.nat_router("ra", public_ip="100.63.0.1", symmetric=True)
            rb = bed.nat_router("rb", public_ip="192.0.2.1", symmetric=True)
            for i, r in enumerate((ra, rb)):
                r.impair("wan", delay_ms=DELAY_MS, loss=loss, seed=7 + i)
            start_miniupnpd(ra)
            return hs, bed.host_behind(ra, "a", "10.0.0.2"), bed.host_behind(rb, "b", "10.0.0.2")
        cases.append(Case("symmetric x symmetric, host's router maps ports (miniupnpd)",
                          mapped, ("--port-mapping",)))
    return cases


def run(cases: list[Case], engines: dict[str, Path], plain: int, lossy: int,
        parallel: int) -> dict[str, dict[str, dict[float, Samples]]]:
    """results[case][engine][loss]"""
    results: dict[str, dict[str, dict[float, Samples]]] = {}
    for i, case in enumerate(cases, 1):
        results[case.label] = {e: {} for e in engines}
        for loss, rounds in ((0.0, plain), (LOSS, lossy)):
            with NetBed() as bed:
                hs, a, b = case.build(bed, loss)
                for engine, root in engines.items():
                    # v1 has no port mapping: the mapped case only tells what v2 adds.
                    s = play(hs, a, b, root, engine == "v2", rounds, parallel,
                             case.host_args)
                    results[case.label][engine][loss] = s
                    log(f"{i}/{len(cases)} {case.label} {engine} loss {loss:.0%}: "
                        f"{len(s.connect)}/{s.n} joined, paths {sorted(set(s.paths))}, "
                        f"p50 {pct(s.connect, 0.5) if s.connect else float('nan'):.2f} s")
    return results


def path_cell(s: Samples) -> str:
    if not s.connect:
        return "**none**"
    counts = {p: s.paths.count(p) for p in sorted(set(s.paths))}
    text = ", ".join(p if c == len(s.paths) else f"{p} {c}/{len(s.paths)}"
                     for p, c in counts.items())
    return text + (f" ({s.failed} failed)" if s.failed else "")


def time_cell(s: Samples | None) -> str:
    if s is None or not s.connect:
        return "-"
    cell = f"{pct(s.connect, 0.5):.2f} / {pct(s.connect, 0.99):.2f}"
    return cell + (f" ({s.failed}/{s.n} failed)" if s.failed else "")


def rtt_cell(s: Samples | None) -> str:
    if s is None or not s.after_intro:
        return "-"
    return f"{pct(s.after_intro, 0.5) / RTT:.1f} / {pct(s.after_intro, 0.99) / RTT:.1f}"


def section(results: dict[str, dict[str, dict[float, Samples]]], engines: dict[str, Path],
            base: str, plain: int, lossy: int, seconds: float) -> str:
    lines = [HEADING, "",
             f"`python -m tools.bench_nat` (part of `make bench`), {time.strftime('%Y-%m-%d')}, "
             f"{seconds / 60:.0f} min. Each router adds {DELAY_MS:.0f} ms on its way out: "
             f"{RTT * 1000:.0f} ms round trips between the players, "
             f"{DELAY_MS:.0f} ms to the handshake server. Per pair and engine: "
             f"{plain} joins with no loss and {lossy} with {LOSS:.0%} loss on each router's "
             "way out (fresh sockets, so fresh NAT mappings, a few at a time). "
             "**Connect** is `init_client` to `CONFIRMED_AS_CLIENT`, p50 / p99 in seconds "
             "(with this few joins, p99 is the worst). **RTTs after intro** is the part "
             "after the handshake server's introduction, in player round trips. **Path** "
             f"is where the session is {SETTLE:g} s after it was confirmed (v2 sessions "
             "start on the relay when it answers first and move when a direct path opens).",
             "",
             f"v1 is commit {base} (the engine before this work), run from its own tree on "
             "the same beds in the same run; it had no key exchange (a session was on "
             "as soon as a punch got through), which is why it needs fewer round trips "
             "after the introduction where punching works, and no port mapping. "
             "Behaviours are RFC 4787's: mapping "
             "(EIM endpoint-independent, ADM address-dependent, APDM address-and-port-"
             "dependent) - filtering (EIF, ADF, APDF).", ""]
    has_v1 = "v1" in engines
    head = ["pair", "v2 path", "v2 connect", "v2 connect, 10% loss", "v2 RTTs after intro",
            "v2 RTTs after intro, 10% loss"]
    if has_v1:
        head += ["v1 path", "v1 connect", "v1 connect, 10% loss"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, by_engine in results.items():
        v2 = by_engine["v2"]
        row = [label, path_cell(v2[0.0]), time_cell(v2.get(0.0)), time_cell(v2.get(LOSS)),
               rtt_cell(v2.get(0.0)), rtt_cell(v2.get(LOSS))]
        if has_v1:
            v1 = by_engine["v1"]
            row += [path_cell(v1[0.0]), time_cell(v1.get(0.0)), time_cell(v1.get(LOSS))]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *summary(results, has_v1), ""]
    return "\n".join(lines)


def summary(results: dict[str, dict[str, dict[float, Samples]]], has_v1: bool) -> list[str]:
    out = []
    for engine in ("v2", "v1") if has_v1 else ("v2",):
        runs = [r[engine][loss] for r in results.values() for loss in r[engine]]
        joined = sum(len(s.connect) for s in runs)
        total = sum(s.n for s in runs)
        pairs_ok = sum(1 for r in results.values() if all(s.connect for s in r[engine].values()))
        direct = sum(1 for r in results.values()
                     if any(p != "relay" for p in r[engine][0.0].paths))
        plain = [t for r in results.values() for t in r[engine][0.0].connect]
        lossy = [t for r in results.values() for t in r[engine][LOSS].connect]
        intro = [t for r in results.values() for t in r[engine][0.0].after_intro]
        intro_l = [t for r in results.values() for t in r[engine][LOSS].after_intro]
        line = (f"- **{engine}**: {joined}/{total} joins connected; {pairs_ok}/{len(results)} "
                f"topologies connected every time; {direct} ended on a LAN, direct or mapped "
                "path rather than the relay. All joins: connect p50 / p99 "
                f"{pct(plain, 0.5):.2f} / {pct(plain, 0.99):.2f} s with no loss, "
                f"{pct(lossy, 0.5):.2f} / {pct(lossy, 0.99):.2f} s at 10% loss")
        if intro and intro_l:
            line += (f"; after the introduction {pct(intro, 0.5) / RTT:.1f} / "
                     f"{pct(intro, 0.99) / RTT:.1f} round trips with no loss, "
                     f"{pct(intro_l, 0.5) / RTT:.1f} / {pct(intro_l, 0.99) / RTT:.1f} "
                     "at 10% loss")
        moved = [t for r in results.values() for s in r[engine].values() for t in s.moved]
        if moved:
            line += (f". {len(moved)} sessions started on the relay and moved to a direct "
                     f"path, p50 {pct(moved, 0.5):.2f} s after being confirmed")
        out.append(line + ".")
    return out


HOLD = 120.0  # seconds of an idle session in the keepalive measurement
CONNTRACK = 30  # seconds: Linux's UDP timeout for a flow not yet answered


@dataclass
class Quiet:
    alive: bool
    bytes_per_min: float
    datagrams_per_min: float


def keepalive(engines: dict[str, Path]) -> dict[str, Quiet]:
    """An idle session for HOLD seconds between two kernel NATs whose UDP flows expire
    after CONNTRACK seconds (answered or not): does it live, and what does it cost?"""
    out: dict[str, Quiet] = {}
    for engine, root in engines.items():
        with NetBed() as bed:
            hs = bed.public_host("hs", "203.0.113.10")
            ra = bed.nat_router("ra", public_ip="198.51.100.1", udp_timeout=CONNTRACK)
            rb = bed.nat_router("rb", public_ip="192.0.2.1", udp_timeout=CONNTRACK)
            for r in (ra, rb):
                r.set_udp_timeouts(CONNTRACK, CONNTRACK)
            a, b = bed.host_behind(ra, "a", "10.0.0.2"), bed.host_behind(rb, "b", "10.0.0.2")
            # Only what goes between the players (not the registration refreshes).
            a.add_counter("peer_out", "-p", "udp", "-d", "192.0.2.1", chain="OUTPUT")
            a.add_counter("peer_in", "-p", "udp", "-s", "192.0.2.1", chain="INPUT")
            with hosting(hs, a, root, engine == "v2") as target:
                client = b.python([AGENT, "client", "--root", str(root), "--hs", target,
                                   "--settle", str(HOLD + 10)],
                                  stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                reader = LineReader(client)
                if reader.wait_for(lambda r: "connected" in r, 30.0) is None:
                    raise RuntimeError("no connection")
                time.sleep(10.0)  # past the handshake and a move off the relay
                o0, i0 = a.counter("peer_out", chain="OUTPUT"), a.counter("peer_in")
                time.sleep(HOLD)
                o1, i1 = a.counter("peer_out", chain="OUTPUT"), a.counter("peer_in")
                result = reader.wait_for(lambda r: "ok" in r, 60.0) or {}
            minutes = HOLD / 60
            out[engine] = Quiet(bool(result.get("alive")),
                                (o1[1] - o0[1] + i1[1] - i0[1]) / minutes,
                                (o1[0] - o0[0] + i1[0] - i0[0]) / minutes)
            log(f"keepalive {engine}: {out[engine]}")
    return out


def keepalive_lines(quiet: dict[str, Quiet]) -> list[str]:
    lines = ["### A quiet session through 30 s NAT timeouts", "",
             f"Two kernel NATs whose UDP flows expire after {CONNTRACK} s without traffic "
             f"(answered or not), a session left idle for {HOLD:.0f} s with the default "
             "`Config` (peer checks every 15 s). Bytes are IP datagrams between the two "
             "players, both ways, counted on the server player's machine.", "",
             "| engine | session alive after the wait | datagrams / min | bytes / min |",
             "| --- | --- | --- | --- |"]
    for engine, q in quiet.items():
        lines.append(f"| {engine} | {'yes' if q.alive else '**no**'} | "
                     f"{q.datagrams_per_min:.1f} | {q.bytes_per_min:.0f} |")
    return [*lines, ""]




def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_nat", description=__doc__)
    p.add_argument("--write", help="put the section into this Markdown file")
    p.add_argument("--pairs", type=int, default=None, help="only the first N NAT pairs")
    p.add_argument("--plain", type=int, default=4, help="joins per engine with no loss")
    p.add_argument("--lossy", type=int, default=8, help="joins per engine at 10%% loss")
    p.add_argument("--parallel", type=int, default=2,
                   help="joins at a time (a host takes 2 half-open joins per network)")
    p.add_argument("--no-baseline", action="store_true", help="skip protocol v1")
    p.add_argument("--no-keepalive", action="store_true",
                   help=f"skip the {HOLD:.0f} s idle-session measurement")
    p.add_argument("--keepalive-only", action="store_true")
    a = p.parse_args(argv)
    ok, why = netns_available()
    if not ok:
        log(f"skipped: {why}")
        return 0
    engines = {"v2": ROOT}
    base = "none"
    if not a.no_baseline:
        tree, base = baseline_tree()
        if tree is not None:
            engines["v1"] = tree
    started = time.monotonic()
    if a.keepalive_only:
        text = "\n".join(keepalive_lines(keepalive(engines)))
        print(text)
        return 0
    cases = matrix_cases(a.pairs)
    per = max(1, a.parallel)
    results = run(cases, engines, -(-a.plain // per), -(-a.lossy // per), per)
    quiet = keepalive(engines) if not a.no_keepalive else {}
    text = section(results, engines, base, -(-a.plain // per) * per,
                   -(-a.lossy // per) * per, time.monotonic() - started)
    if quiet:
        text = text.rstrip("\n") + "\n\n" + "\n".join(keepalive_lines(quiet))
    print(text)
    if a.write:
        write_section(Path(a.write), HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

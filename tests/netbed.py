"""A real-NAT test bed built from Linux network namespaces.

Topology: one namespace holds a bridge, the "internet". Public hosts and the WAN side of
NAT routers hang off it through veth pairs and carry documentation addresses
(RFC 5737: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24). Each router masquerades its LAN
(a private range) behind its public address and drops unsolicited inbound packets the way a
home router's firewall does. Hosts behind a router get a private address and a default route
to it.

Nothing leaves the namespaces: no namespace is linked to the root namespace, and no router
has a default route, so a packet to any other address is answered "network unreachable".

    with NetBed() as bed:
        hs = bed.public_host("hs", "203.0.113.10")
        r1 = bed.nat_router("r1", public_ip="198.51.100.1", lan="10.0.0.0/24")
        a = bed.host_behind(r1, "a", "10.0.0.2")
        proc = a.popen([...]); a.run([...])

Every run has its own prefix (``nbt`` + 6 random hex digits); a lock file under
``/run/netbed`` held with ``flock`` marks the prefix as alive, so a later run removes the
namespaces of runs that died without cleaning up, and never those of a live one.

Run as a script, this file also holds the small tools the bed's own tests use inside the
namespaces (``echo``, ``punch``, ``ping``) and ``nfq``, a userspace delay/loss line used when
the kernel has no ``sch_netem``: packets are held in an NFQUEUE and released after the delay.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import ipaddress
import json
import os
import random
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.usernat import NatBehavior

PREFIX_ROOT = "nbt"
LOCK_DIR = Path("/run/netbed")
_NS_RE = re.compile(rf"^({PREFIX_ROOT}[0-9a-f]{{6}})-")
#: Only these ranges may be used as "public" addresses (RFC 5737).
DOC_NETS = tuple(
    ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
#: A "public" range for routers whose WAN address must look routable: miniupnpd refuses to
#: map ports behind an address in a reserved range (RFC 5737 included). 100.63.0.0/24 is
#: ordinary unicast space just below the shared range 100.64.0.0/10; inside the bed it is
#: safe because the namespaces have no link to the host and no default route, so nothing
#: addressed to it (or sent from it) can leave the bed. Only routers use it.
MAPPING_NET = ipaddress.IPv4Network("100.63.0.0/24")
PUBLIC_NETS = (*DOC_NETS, MAPPING_NET)
#: And only these behind a router (RFC 1918).
PRIVATE_NETS = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
ROOT = Path(__file__).resolve().parent.parent
IFNAMSIZ = 15
CMD_TIMEOUT = 20.0


class NetBedError(RuntimeError):
    """A command that builds or inspects the bed failed."""


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = CMD_TIMEOUT,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        why = proc.stderr.strip() or proc.stdout.strip()
        raise NetBedError(f"{' '.join(argv)} -> exit {proc.returncode}: {why}")
    return proc


# --------------------------------------------------------------------------- run prefixes


def _claim_prefix() -> tuple[str, int]:
    """A fresh prefix no namespace uses, and the fd of its held lock (see cleanup_stale)."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    existing = set(netns_list())
    while True:
        prefix = f"{PREFIX_ROOT}{secrets.token_hex(3)}"
        if any(ns.startswith(prefix + "-") for ns in existing):
            continue
        try:
            fd = os.open(LOCK_DIR / f"{prefix}.lock", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # A concurrent cleanup_stale may have taken and removed the fresh file first.
            if os.stat(LOCK_DIR / f"{prefix}.lock").st_ino != os.fstat(fd).st_ino:
                raise FileNotFoundError
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        return prefix, fd


def _release_prefix(prefix: str, fd: int) -> None:
    (LOCK_DIR / f"{prefix}.lock").unlink(missing_ok=True)
    os.close(fd)


# --------------------------------------------------------------------------- availability

_availability: tuple[bool, str] | None = None


def netns_available() -> tuple[bool, str]:
    """(True, details) when this machine can build the bed, else (False, why not).

    Tries the real thing once per process: a throw-away namespace with a veth pair, a bridge,
    a MASQUERADE --random-fully rule and the conntrack sysctls.
    """
    global _availability
    if _availability is None:
        _availability = _probe()
    return _availability


def _probe() -> tuple[bool, str]:
    if sys.platform != "linux":
        return False, f"network namespaces need Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return False, "building network namespaces needs root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return False, f"`{tool}` is not installed (apt-get install iproute2 iptables)"
    try:
        prefix, lock = _claim_prefix()
    except OSError as exc:
        return False, f"cannot create the lock file in {LOCK_DIR}: {exc}"
    ns = f"{prefix}-probe"
    try:
        try:
            _run(["ip", "netns", "add", ns])
        except (NetBedError, OSError, subprocess.TimeoutExpired) as exc:
            return False, f"cannot create a network namespace: {exc}"
        try:
            _run(["ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"])
            _run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
            ipt = ["ip", "netns", "exec", ns, "iptables"]
            _run([*ipt, "-t", "nat", "-A", "POSTROUTING", "-o", "v0", "-j", "MASQUERADE"])
            _run([*ipt, "-t", "nat", "-A", "POSTROUTING", "-o", "v1", "-j", "MASQUERADE",
                  "--random-fully"])
            _run([*ipt, "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"])
            _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                  "net.netfilter.nf_conntrack_udp_timeout=5"])
            version = _run(["iptables", "--version"]).stdout.strip()
            has_netem = _run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo",
                              "root", "netem", "delay", "1ms"], check=False).returncode == 0
        except (NetBedError, OSError, subprocess.TimeoutExpired) as exc:
            return False, f"namespaces work but the NAT setup does not: {exc}"
        finally:
            _run(["ip", "netns", "del", ns], check=False)
    finally:
        _release_prefix(prefix, lock)
    global _netem
    _netem = has_netem and shutil.which("tc") is not None
    impair = "netem" if netem_supported() else "nfqueue (no sch_netem in this kernel)"
    return True, f"{version}; impairment via {impair}"


_netem: bool | None = None


def netem_supported() -> bool:
    """Whether ``tc qdisc ... netem`` works in this kernel (else the NFQUEUE line is used)."""
    if _netem is None:
        netns_available()
    return bool(_netem)


# --------------------------------------------------------------------------- stale cleanup


def netns_list() -> list[str]:
    """Names of all network namespaces (``ip netns list``)."""
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_ns_processes(ns: str) -> None:
    pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.kill(int(pid), signal.SIGKILL)


def _delete_ns(ns: str) -> None:
    _kill_ns_processes(ns)
    _run(["ip", "netns", "del", ns], check=False)


def cleanup_stale() -> list[str]:
    """Delete the namespaces of earlier runs whose owner is gone; returns their names."""
    removed: list[str] = []
    by_prefix: dict[str, list[str]] = {}
    for ns in netns_list():
        m = _NS_RE.match(ns)
        if m:
            by_prefix.setdefault(m.group(1), []).append(ns)
    # Lock files of runs that died before making a namespace (old enough not to be in the
    # middle of _claim_prefix).
    for lock in LOCK_DIR.glob(f"{PREFIX_ROOT}*.lock") if LOCK_DIR.is_dir() else ():
        prefix = lock.name.removesuffix(".lock")
        with contextlib.suppress(OSError):
            if prefix not in by_prefix and time.time() - lock.stat().st_mtime > 60:
                by_prefix[prefix] = []
    for prefix, names in by_prefix.items():
        lock = LOCK_DIR / f"{prefix}.lock"
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner is alive
            finally:
                os.close(fd)
        for ns in names:
            _delete_ns(ns)
            removed.append(ns)
        lock.unlink(missing_ok=True)
    return removed


# --------------------------------------------------------------------------- nodes


@dataclass
class Node:
    """One machine of the bed: a network namespace."""

    bed: NetBed
    name: str
    ns: str
    ip: str
    _queues: int = 0

    def argv(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` inside this namespace."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = CMD_TIMEOUT,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside the namespace."""
        return _run(self.argv(argv), check=check, timeout=timeout, stdin=stdin)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start a process inside the namespace; the bed ends it when it is torn down.

        Defaults: text mode, line-buffered pipes for stdin/stdout, and an environment with the
        project root on PYTHONPATH, unbuffered Python output and SDL's dummy drivers.
        """
        env = dict(os.environ if kwargs.get("env") is None else kwargs["env"])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("SDL_VIDEODRIVER", "dummy")
        env.setdefault("SDL_AUDIODRIVER", "dummy")
        env.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        kwargs["env"] = env
        kwargs.setdefault("stdin", subprocess.PIPE)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("text", True)
        kwargs.setdefault("bufsize", 1)
        proc: subprocess.Popen[str] = subprocess.Popen(self.argv(argv), **kwargs)
        self.bed._procs.append(proc)
        return proc

    def python(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``python args...`` (this interpreter) inside the namespace."""
        return self.popen([sys.executable, *args], **kwargs)

    def sysctl(self, key: str, value: str | int) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def iptables(self, *args: str) -> None:
        self.run(["iptables", "-w", *args])

    # ---- counters

    def add_counter(
        self, name: str, *match: str, chain: str = "INPUT", table: str = "filter"
    ) -> None:
        """Insert a rule that only counts packets matching ``match`` (iptables syntax).

        Example: ``hs.add_counter("hs_in", "-p", "udp", "--dport", "5160")``.
        """
        self.iptables("-t", table, "-I", chain, "1", *match, "-m", "comment", "--comment", name)

    def counter(self, name: str, *, chain: str = "INPUT", table: str = "filter") -> tuple[int, int]:
        """(packets, bytes) counted so far by the rule ``add_counter(name, ...)``."""
        out = self.run(["iptables", "-w", "-t", table, "-L", chain, "-v", "-x", "-n"]).stdout
        for line in out.splitlines():
            if f"/* {name} */" in line:
                pkts, nbytes = line.split()[:2]
                return int(pkts), int(nbytes)
        raise NetBedError(f"no counter {name!r} in {self.ns} {table}/{chain}")

    def link_stats(self, iface: str) -> dict[str, int]:
        """Packet and byte counters of an interface: rx_packets, tx_packets, rx_bytes, ..."""
        out = _run(["ip", "-n", self.ns, "-s", "-j", "link", "show", "dev", iface]).stdout
        stats = json.loads(out)[0]["stats64"]
        return {f"{d}_{k}": int(stats[d][k]) for d in ("rx", "tx") for k in ("packets", "bytes")}

    # ---- impairment

    def impair(
        self, iface: str, *, delay_ms: float = 0.0, loss: float = 0.0, jitter_ms: float = 0.0,
        seed: int = 1,
    ) -> None:
        """Delay and drop packets leaving ``iface`` (netem semantics: egress, one way).

        Uses ``tc netem`` where the kernel has it; otherwise an NFQUEUE in mangle/POSTROUTING
        served by ``netbed.py nfq`` inside this namespace (seeded loss, so reproducible).
        """
        if netem_supported():
            argv = ["tc", "qdisc", "replace", "dev", iface, "root", "netem"]
            if delay_ms or jitter_ms:
                argv += ["delay", f"{delay_ms}ms"] + ([f"{jitter_ms}ms"] if jitter_ms else [])
            if loss:
                argv += ["loss", f"{loss * 100:g}%"]
            self.run(argv)
            return
        self._queues += 1
        queue = self._queues
        proc = self.python(
            [__file__, "nfq", "--queue", str(queue), "--delay-ms", str(delay_ms),
             "--jitter-ms", str(jitter_ms), "--loss", str(loss), "--seed", str(seed)],
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        ready = _readline(proc.stdout, 5.0)
        if ready.strip() != "ready":
            proc.kill()
            raise NetBedError(f"nfq on {self.ns} did not start: {ready!r}")
        self.iptables("-t", "mangle", "-A", "POSTROUTING", "-o", iface, "-j", "NFQUEUE",
                      "--queue-num", str(queue))


@dataclass
class Router(Node):
    """A NAT router: WAN side on the internet bridge, LAN side a bridge of its own."""

    lan: ipaddress.IPv4Network = field(default_factory=lambda: ipaddress.IPv4Network("10.0.0.0/24"))
    gateway: str = "10.0.0.1"
    public_ip: str = ""
    symmetric: bool = False

    def set_udp_timeouts(self, unreplied: int, stream: int | None = None) -> None:
        """How long (s) the NAT keeps an idle UDP mapping (Linux: 30 and 120 by default)."""
        self.sysctl("net.netfilter.nf_conntrack_udp_timeout", unreplied)
        self.sysctl("net.netfilter.nf_conntrack_udp_timeout_stream",
                    unreplied if stream is None else stream)


# --------------------------------------------------------------------------- the bed

_live_beds: weakref.WeakSet[NetBed] = weakref.WeakSet()


def _close_live_beds() -> None:
    for bed in list(_live_beds):
        bed.close()


atexit.register(_close_live_beds)


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


class NetBed:
    """Builds a topology of namespaces; ``close()`` (or leaving ``with``) removes it all."""

    def __init__(self) -> None:
        self.prefix = ""  # claimed by open()
        self.nodes: dict[str, Node] = {}
        self._procs: list[subprocess.Popen[str]] = []
        self._namespaces: list[str] = []
        self._lock_fd: int | None = None
        self._inet: str | None = None
        self._closed = False

    # ---- lifecycle

    def __enter__(self) -> NetBed:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        ok, why = netns_available()
        if not ok:
            raise NetBedError(why)
        cleanup_stale()
        self.prefix, self._lock_fd = _claim_prefix()
        _live_beds.add(self)
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        ):
            # SIGTERM would skip finally blocks and atexit; turn it into SystemExit.
            signal.signal(signal.SIGTERM, _on_sigterm)
        inet = self._add_ns("inet")
        _run(["ip", "-n", inet, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", inet, "link", "set", "br0", "up"])
        self._inet = inet

    def close(self) -> None:
        """Stop every process started in the bed and delete every namespace. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + 2.0
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2.0)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for ns in reversed(self._namespaces):
            _delete_ns(ns)
        self._namespaces.clear()
        if self._lock_fd is not None:
            _release_prefix(self.prefix, self._lock_fd)
            self._lock_fd = None
        _live_beds.discard(self)

    def namespaces(self) -> list[str]:
        return list(self._namespaces)

    # ---- building blocks

    def _add_ns(self, name: str) -> str:
        if self._closed:
            raise NetBedError("this bed is closed")
        if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", name):
            raise ValueError(f"node name {name!r}: 1-10 lowercase letters/digits, letter first")
        ns = f"{self.prefix}-{name}"
        if ns in self._namespaces:
            raise ValueError(f"node {name!r} exists already")
        _run(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def _wire_to_internet(self, node_ns: str, name: str, ip: str) -> None:
        assert self._inet is not None
        addr = ipaddress.ip_address(ip)
        if not any(addr in net for net in PUBLIC_NETS):
            raise ValueError(f"public address {ip} is not in a documentation range (RFC 5737)"
                             f" or {MAPPING_NET}")
        port = f"p-{name}"[:IFNAMSIZ]
        _run(["ip", "-n", node_ns, "link", "add", "wan", "type", "veth",
              "peer", "name", port, "netns", self._inet])
        _run(["ip", "-n", self._inet, "link", "set", port, "master", "br0", "up"])
        own = next(net for net in PUBLIC_NETS if addr in net)
        _run(["ip", "-n", node_ns, "addr", "add", f"{ip}/{own.prefixlen}", "dev", "wan"])
        _run(["ip", "-n", node_ns, "link", "set", "wan", "up"])
        for net in PUBLIC_NETS:
            if net != own:  # the other documentation nets are on the same wire
                _run(["ip", "-n", node_ns, "route", "add", str(net), "dev", "wan"])

    def public_host(self, name: str, ip: str) -> Node:
        """A host with a public address on the internet bridge (the handshake server's)."""
        ns = self._add_ns(name)
        self._wire_to_internet(ns, name, ip)
        node = Node(self, name, ns, ip)
        self.nodes[name] = node
        return node

    def nat_router(
        self, name: str, *, public_ip: str, lan: str = "10.0.0.0/24", symmetric: bool = False,
        firewall: bool = True, udp_timeout: int | None = None,
        behavior: NatBehavior | None = None, seed: int = 1,
    ) -> Router:
        """A NAT router with WAN address ``public_ip`` and LAN ``lan`` (gateway: its first host).

        ``symmetric=False``: MASQUERADE, endpoint-independent mapping with address-and-port
        dependent filtering (hole punching needed and works). ``symmetric=True``: MASQUERADE
        --random-fully, a new port per destination (hole punching fails).
        ``firewall``: drop unsolicited inbound packets before conntrack keeps them, as home
        routers do. Without it an early punch packet from the other side leaves an entry
        that makes the NAT pick another port for our own first packet to that peer.
        ``behavior``: any RFC 4787 mapping x filtering x hairpinning for UDP, served by the
        userspace NAT of ``tests/usernat.py`` (``symmetric`` is then ignored; ``seed``
        picks its public ports).
        """
        net = ipaddress.IPv4Network(lan)
        if not any(net.subnet_of(p) for p in PRIVATE_NETS):
            raise ValueError(f"LAN {lan} is not a private range (RFC 1918)")
        ns = self._add_ns(name)
        self._wire_to_internet(ns, name, public_ip)
        gateway = str(next(net.hosts()))
        _run(["ip", "-n", ns, "link", "add", "lan", "type", "bridge"])
        _run(["ip", "-n", ns, "addr", "add", f"{gateway}/{net.prefixlen}", "dev", "lan"])
        _run(["ip", "-n", ns, "link", "set", "lan", "up"])
        router = Router(self, name, ns, public_ip, lan=net, gateway=gateway,
                        public_ip=public_ip, symmetric=symmetric)
        if behavior is not None:
            self._user_nat(router, behavior, seed)
            self.nodes[name] = router
            return router
        rules = [
            "*nat",
            "-A POSTROUTING -o wan -j MASQUERADE" + (" --random-fully" if symmetric else ""),
            "COMMIT",
        ]
        if firewall:
            rules += [
                "*filter",
                "-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                "-A INPUT -i wan -j DROP",
                "-A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                "-A FORWARD -i wan -j DROP",
                "COMMIT",
            ]
        router.run(["iptables-restore", "-w"], stdin="\n".join(rules) + "\n")
        router.sysctl("net.ipv4.ip_forward", 1)
        if udp_timeout is not None:
            router.set_udp_timeouts(udp_timeout)
        self.nodes[name] = router
        return router

    def _user_nat(self, router: Router, behavior: NatBehavior, seed: int) -> None:
        """UDP through tests/usernat.py on an NFQUEUE in raw/PREROUTING (conntrack off for
        UDP, so the kernel neither NATs nor filters it); other protocols masqueraded."""
        router._queues += 1
        queue = router._queues
        proc = router.python(
            [str(Path(__file__).with_name("usernat.py")), "--queue", str(queue),
             "--public", router.public_ip, "--lan", str(router.lan),
             "--mapping", behavior.mapping, "--filtering", behavior.filtering,
             "--timeout", str(behavior.timeout), "--seed", str(seed)]
            + (["--hairpin"] if behavior.hairpin else []),
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        ready = _readline(proc.stdout, 10.0)
        if ready.strip() != "ready":
            proc.kill()
            raise NetBedError(f"usernat on {router.ns} did not start: {ready!r}")
        q = f"-j NFQUEUE --queue-num {queue}"
        rules = [
            "*raw",
            "-A PREROUTING -p udp -j CT --notrack",
            f"-A PREROUTING -p udp -i wan -d {router.public_ip} {q}",
            f"-A PREROUTING -p udp -i lan {q}",
            "COMMIT",
            "*nat",
            "-A POSTROUTING -o wan ! -p udp -j MASQUERADE",
            "COMMIT",
            "*filter",
            "-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            "-A INPUT -i wan -j DROP",
            "-A FORWARD -i wan -p udp -m conntrack --ctstate UNTRACKED -j ACCEPT",
            "-A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            "-A FORWARD -i wan -j DROP",
            "COMMIT",
        ]
        router.run(["iptables-restore", "-w"], stdin="\n".join(rules) + "\n")
        # Translated packets carry the router's own public address as source, on the LAN
        # side: accept that (hairpinning and outbound alike), and send no ICMP redirects.
        for key, value in (("net.ipv4.conf.all.rp_filter", 0), ("net.ipv4.conf.lan.rp_filter", 0),
                           ("net.ipv4.conf.lan.accept_local", 1),
                           ("net.ipv4.conf.all.send_redirects", 0),
                           ("net.ipv4.conf.lan.send_redirects", 0),
                           ("net.ipv4.ip_forward", 1)):
            router.sysctl(key, value)

    def host_behind(self, router: Router, name: str, ip: str) -> Node:
        """A host on ``router``'s LAN with address ``ip`` and a default route to the router."""
        if ipaddress.ip_address(ip) not in router.lan:
            raise ValueError(f"{ip} is not in {router.name}'s LAN {router.lan}")
        ns = self._add_ns(name)
        port = f"h-{name}"[:IFNAMSIZ]
        _run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth",
              "peer", "name", port, "netns", router.ns])
        _run(["ip", "-n", router.ns, "link", "set", port, "master", "lan", "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{ip}/{router.lan.prefixlen}", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", ns, "route", "add", "default", "via", router.gateway])
        node = Node(self, name, ns, ip)
        self.nodes[name] = node
        return node


# --------------------------------------------------------------------------- process helpers


def _readline(stream: IO[str], timeout: float) -> str:
    """One line from a pipe, or '' after ``timeout`` seconds (the pipe must be line-based)."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


class LineReader:
    """Collects a process's stdout lines in a thread; waits for JSON records that match."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.lines: list[str] = []
        self._records: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        with contextlib.suppress(ValueError, OSError):
            for raw in stream:
                line = raw.rstrip("\n")
                record: Any = None
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                with self._cond:
                    self.lines.append(line)
                    if isinstance(record, dict):
                        self._records.append(record)
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def records(self) -> list[dict[str, Any]]:
        """The lines so far that are JSON objects, parsed."""
        with self._cond:
            return list(self._records)

    def wait_for(
        self, pred: Callable[[dict[str, Any]], object], timeout: float
    ) -> dict[str, Any] | None:
        """First JSON record satisfying ``pred`` (seen before or arriving within ``timeout``);
        None on timeout or when the process closed its stdout."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for rec in self._records[seen:]:
                    if pred(rec):
                        return rec
                seen = len(self._records)
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    return None
                self._cond.wait(min(left, 0.2))

    def wait_eof(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


# --------------------------------------------------------------------------- tools (script mode)


def _parse_addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def tool_echo(args: argparse.Namespace) -> int:
    """UDP server: answers each datagram with the source address it saw, as JSON.

    A request ``{"later": s}`` gets a second answer ``s`` seconds later (to test how long a
    NAT keeps the mapping open for inbound packets).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.port))
    _emit({"ready": True, "port": sock.getsockname()[1]})
    pending: list[tuple[float, bytes, tuple[str, int]]] = []
    end = time.monotonic() + args.lifetime
    while time.monotonic() < end:
        wait = min([end - time.monotonic()] + [t - time.monotonic() for t, _, _ in pending])
        ready, _, _ = select.select([sock], [], [], max(0.0, wait))
        now = time.monotonic()
        for item in [p for p in pending if p[0] <= now]:
            pending.remove(item)
            sock.sendto(item[1], item[2])
        if not ready:
            continue
        data, addr = sock.recvfrom(2048)
        try:
            req = json.loads(data)
        except ValueError:
            req = {}
        reply = json.dumps({"addr": list(addr), "seq": req.get("seq")}).encode()
        sock.sendto(reply, addr)
        if isinstance(req, dict) and req.get("later"):
            late = json.dumps({"addr": list(addr), "late": True}).encode()
            pending.append((now + float(req["later"]), late, addr))
    return 0


def tool_whoami(sock: socket.socket, server: tuple[str, int], timeout: float) -> tuple[str, int]:
    """Ask an echo server which public address it sees for ``sock``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.sendto(b'{"seq": 0}', server)
        ready, _, _ = select.select([sock], [], [], 0.3)
        if ready:
            data, addr = sock.recvfrom(2048)
            if addr == server:
                host, port = json.loads(data)["addr"]
                return str(host), int(port)
    raise TimeoutError(f"no answer from {server}")


def tool_mapping(args: argparse.Namespace) -> int:
    """From one socket, ask several echo servers for our public address; print each answer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.bind_port))
    seen = {srv: list(tool_whoami(sock, _parse_addr(srv), args.timeout)) for srv in args.server}
    _emit({"local_port": sock.getsockname()[1], "seen": seen})
    return 0


def tool_punch(args: argparse.Namespace) -> int:
    """Manual hole punching: learn our public address, read the peer's from stdin, punch.

    Prints ``{"public": [ip, port]}``, then expects one stdin line "ip port" (the peer's
    public address), sends a datagram to it every 50 ms and answers whatever comes back.
    Exit 0 (and ``{"ok": true, ...}``) once a datagram from the peer arrived and the peer
    said it heard us; exit 1 after ``--timeout`` seconds without that.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.bind_port))
    public = tool_whoami(sock, _parse_addr(args.server), 5.0)
    _emit({"public": list(public), "local_port": sock.getsockname()[1]})
    line = sys.stdin.readline().split()
    peer = (line[0], int(line[1]))
    heard: tuple[str, int] | None = None
    acked = False
    sent = 0
    deadline = time.monotonic() + args.timeout
    linger_until: float | None = None
    next_send = time.monotonic()
    while time.monotonic() < deadline:
        now = time.monotonic()
        if linger_until is not None and now >= linger_until:
            break
        if now >= next_send:
            sock.sendto(json.dumps({"punch": sent, "heard": heard is not None}).encode(), peer)
            sent += 1
            next_send = now + 0.05
        ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        while ready:
            data, addr = sock.recvfrom(2048)
            with contextlib.suppress(ValueError, AttributeError):
                msg = json.loads(data)
                if "punch" in msg:
                    heard = addr
                    acked = acked or bool(msg.get("heard"))
            ready, _, _ = select.select([sock], [], [], 0)
        if heard and acked and linger_until is None:
            linger_until = time.monotonic() + 0.3  # let the peer hear that we heard it
    ok = heard is not None and acked
    _emit({"ok": ok, "heard_from": list(heard) if heard else None, "sent": sent})
    return 0 if ok else 1


def tool_ping(args: argparse.Namespace) -> int:
    """Send ``--count`` pings to an echo server, ``--interval`` apart; print loss and RTTs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    server = _parse_addr(args.server)
    sent_at: dict[int, float] = {}
    rtts: list[float] = []
    late: list[float] = []
    start = time.monotonic()
    end_send = start + args.count * args.interval
    seq = 0
    while True:
        now = time.monotonic()
        if seq < args.count and now >= start + seq * args.interval:
            req: dict[str, Any] = {"seq": seq}
            if args.later and seq == 0:
                req["later"] = args.later
            sock.sendto(json.dumps(req).encode(), server)
            sent_at[seq] = now
            seq += 1
            continue
        if now > end_send + max(args.wait, args.later + 1.0 if args.later else 0):
            break
        if seq == args.count and not sent_at and (not args.later or late):
            break  # every answer is in
        ready, _, _ = select.select([sock], [], [], 0.01)
        if ready:
            data, _ = sock.recvfrom(2048)
            msg = json.loads(data)
            if msg.get("late"):
                late.append(time.monotonic() - start)
            elif msg.get("seq") in sent_at:
                rtts.append(time.monotonic() - sent_at.pop(msg["seq"]))
    _emit({"sent": seq, "received": len(rtts), "rtts": rtts, "late": late})
    return 0


# ---- NFQUEUE delay line (used when the kernel has no sch_netem)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NF_DROP, NF_ACCEPT = 0, 1


def _nla(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _nfq_msg(msg: int, queue: int, attrs: bytes, flags: int, seq: int) -> bytes:
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", queue) + attrs
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0)
    return header + body


def _nl_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        yield kind, data[off + 16 : off + length]
        off += (length + 3) & ~3


def _nl_attrs(data: bytes) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        attrs[kind & 0x3FFF] = data[off + 4 : off + length]
        off += (length + 3) & ~3
    return attrs


def tool_nfq(args: argparse.Namespace) -> int:
    """Hold every packet of NFQUEUE ``--queue`` for ``--delay-ms`` and drop ``--loss`` of them."""
    rng = random.Random(args.seed)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind((0, 0))
    for seq, attr in enumerate(
        (
            _nla(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET)),
            _nla(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
        ),
        start=1,
    ):
        sock.send(_nfq_msg(NFQNL_MSG_CONFIG, args.queue, attr, NLM_F_REQUEST | NLM_F_ACK, seq))
        for kind, payload in _nl_messages(sock.recv(65536)):
            if kind == NLMSG_ERROR and struct.unpack_from("=i", payload)[0] != 0:
                print(f"nfq config failed: errno {-struct.unpack_from('=i', payload)[0]}",
                      file=sys.stderr)
                return 1
    print("ready", flush=True)
    held: list[tuple[float, int]] = []  # (release time, packet id), in arrival order
    base = args.delay_ms / 1000.0
    jitter = args.jitter_ms / 1000.0

    def verdict(packet_id: int, what: int) -> None:
        attr = _nla(NFQA_VERDICT_HDR, struct.pack("!II", what, packet_id))
        sock.send(_nfq_msg(NFQNL_MSG_VERDICT, args.queue, attr, NLM_F_REQUEST, 0))

    while True:
        now = time.monotonic()
        while held and held[0][0] <= now:
            verdict(held.pop(0)[1], NF_ACCEPT)
        timeout = max(0.0, held[0][0] - now) if held else 1.0
        ready, _, _ = select.select([sock], [], [], timeout)
        if not ready:
            continue
        data = sock.recv(1 << 20)
        for kind, payload in _nl_messages(data):
            if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                continue
            attrs = _nl_attrs(payload[4:])
            if NFQA_PACKET_HDR not in attrs:
                continue
            (packet_id,) = struct.unpack_from("!I", attrs[NFQA_PACKET_HDR])
            if args.loss and rng.random() < args.loss:
                verdict(packet_id, NF_DROP)
                continue
            delay = base + (rng.uniform(-jitter, jitter) if jitter else 0.0)
            release = time.monotonic() + max(0.0, delay)
            # Keep FIFO order like netem without reordering: never release before the last.
            if held and release < held[-1][0]:
                release = held[-1][0]
            held.append((release, packet_id))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="tool", required=True)
    p = sub.add_parser("echo")
    p.add_argument("--port", type=int, default=3478)
    p.add_argument("--lifetime", type=float, default=120.0)
    p = sub.add_parser("mapping")
    p.add_argument("--server", action="append", required=True)
    p.add_argument("--bind-port", type=int, default=0)
    p.add_argument("--timeout", type=float, default=5.0)
    p = sub.add_parser("punch")
    p.add_argument("--server", required=True)
    p.add_argument("--bind-port", type=int, default=0)
    p.add_argument("--timeout", type=float, default=5.0)
    p = sub.add_parser("ping")
    p.add_argument("--server", required=True)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--wait", type=float, default=1.0)
    p.add_argument("--later", type=float, default=0.0)
    p = sub.add_parser("nfq")
    p.add_argument("--queue", type=int, required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    tools = {"echo": tool_echo, "mapping": tool_mapping, "punch": tool_punch,
             "ping": tool_ping, "nfq": tool_nfq}
    try:
        return tools[args.tool](args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

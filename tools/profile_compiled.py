"""Where a reliable message's time goes, in the form that runs (pure or compiled).

    python -m tools.profile_compiled [--messages N] [--perf]

The pure core on a fake network (no sockets), like ``tools.bench``'s ``bench_profile``:
one sender, one receiver, 64-byte reliable-ordered messages, 250 a millisecond. Prints
the cost of one message (both ends together) with the garbage collector as it is, with
``gc.freeze()`` after the setup, and with the collector off; with ``--perf`` (Linux
``perf`` needed) it samples the loop and sums the samples by kind: the compiled code
itself, the garbage collector, allocation, dict and attribute lookups, msgpack, the AEAD.
Run it in the compiled tree (``make fast`` first) to see what mypyc cannot remove.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

#: perf's symbols (and their libraries) by kind, first match wins.
KINDS: tuple[tuple[str, str], ...] = (
    ("compiled code (mypyc)", r"^CPy(Def|Py|L)_|p2p_compiled"),
    ("garbage collector", r"gc_collect|visit_|_traverse|GC_UnTrack|GC_Del|PyObject_IS_GC"),
    ("allocation and deallocation", r"alloc|Malloc|Free|malloc|free|dealloc|NewReference"),
    ("dict and attribute lookups", r"dict|Dict|unicodekeys|Type_Lookup|GetAttr|SetAttr|"
                                   r"GetMethod"),
    ("msgpack", r"msgpack|unpack_execute"),
    ("AEAD (cryptography, OpenSSL)", r"ChaCha|chacha|poly1305|_rust|libcrypto"),
    ("Python code left (the interpreter)", r"EvalFrame"),
    ("the kernel", r"\[k\]"),
)


def message_loop(n: int) -> float:
    """Seconds per message, sender and receiver together, best of 3 runs of ``n``."""
    from framework.protocol.delivery import Delivery  # noqa: PLC0415
    from tests.fakenet import FakeNet  # noqa: PLC0415

    net = FakeNet()
    host, alice = net.quiet_pair()
    a_addr, h_addr = net.addr(alice), net.addr(host)
    payload = b"x" * 64
    now = net.now

    def run(count: int) -> float:
        nonlocal now
        sent = got = 0
        started = time.perf_counter()
        while got < count:
            now += 0.001
            if sent < count:
                for _ in range(250):
                    alice.send("host", payload, Delivery.RELIABLE_ORDERED, 0)
                sent += 250
            alice.handle_timer(now)
            for d, _ in alice.take_datagrams():
                host.receive_datagram(d, a_addr, now)
            host.handle_timer(now)
            got += len(host.events())
            for d, _ in host.take_datagrams():
                alice.receive_datagram(d, h_addr, now)
        return (time.perf_counter() - started) / count

    run(min(n, 20_000))  # warm up
    mode = os.environ.get("P2P_PROFILE_GC", "")
    if mode == "freeze":
        gc.freeze()
    elif mode == "off":
        gc.disable()
    return min(run(n) for _ in range(3))


def perf_breakdown(n: int) -> dict[str, float]:
    """Shares of perf's samples by kind, for a run of the loop in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        subprocess.run(["perf", "record", "-q", "-o", data, sys.executable, "-m",
                        "tools.profile_compiled", "--child", str(n)], check=True,
                       capture_output=True)
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort",
                                 "dso,symbol", "-g", "none", "--stdio"], check=True,
                                capture_output=True, text=True).stdout
    shares: dict[str, float] = defaultdict(float)
    for line in report.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+(\[.\])\s+(\S+)", line)
        if not m:
            continue
        share, dso, where, symbol = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        text = f"{dso} {where} {symbol}"
        kind = next((k for k, pattern in KINDS if re.search(pattern, text)), None)
        shares[kind or f"other ({dso})"] += share
    return dict(shares)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=60_000)
    p.add_argument("--perf", action="store_true", help="also sample with Linux perf")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        message_loop(a.child)
        return 0
    import framework  # noqa: PLC0415

    print(f"form: {'compiled (mypyc)' if framework.COMPILED else 'pure Python'}")
    for mode, label in (("", "garbage collector as it is"),
                        ("freeze", "gc.freeze() after the setup"),
                        ("off", "garbage collector off")):
        out = subprocess.run([sys.executable, "-c",
                              "from tools.profile_compiled import message_loop; import sys; "
                              f"print(message_loop({a.messages}))"],
                             env=os.environ | {"P2P_PROFILE_GC": mode}, check=True,
                             capture_output=True, text=True).stdout
        print(f"{float(out.split()[-1]) * 1e6:6.2f} µs a message, {label}")
    if a.perf:
        if shutil.which("perf") is None:
            print("perf is not installed: no breakdown")
            return 0
        print(f"perf samples of {a.messages * 5:,} messages (setup included), by kind:")
        for kind, share in sorted(perf_breakdown(a.messages * 5).items(),
                                  key=lambda kv: -kv[1]):
            if share >= 0.5:
                print(f"{share:6.1f}%  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

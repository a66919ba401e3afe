"""The protocol v1 baseline for ``make bench``, and the cost of packet protection.

The last commit before protocol v2 (``BASELINE_COMMIT``) is unpacked with ``git archive``
into ``.bench/baseline`` (git-ignored by its own ``.bench/.gitignore``; recreated when
missing or from another commit). Its own workers, handshake server, load generator and
benchmark functions run from that tree (cwd and PYTHONPATH pointing at it), so v1 is
measured by v1's code in the same run as v2, alternating with it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "466cdda"
BENCH_DIR = ROOT / ".bench"
BASELINE = BENCH_DIR / "baseline"
_STAMP = ".baseline-commit"

#: Runs one benchmark function of ``tools.bench`` of the tree it is started in.
RUN_FUNCTION = (
    "import json, sys\n"
    "from tools import bench\n"
    "print(json.dumps(getattr(bench, sys.argv[1])()))\n"
)


def env_for(root: Path) -> dict[str, str]:
    """The environment of a process that must import ``root``'s packages first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    env.setdefault("SDL_VIDEODRIVER", "dummy")
    env.setdefault("SDL_AUDIODRIVER", "dummy")
    env.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    return env


def baseline_tree() -> tuple[Path | None, str]:
    """The v1 tree, made if needed, and its description; or None and why not."""
    try:
        full = subprocess.run(["git", "rev-parse", "--verify", f"{BASELINE_COMMIT}^{{commit}}"],
                              cwd=ROOT, capture_output=True, text=True, check=True
                              ).stdout.strip()
        title = subprocess.run(["git", "log", "-1", "--format=%h %cs", full], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None, f"commit {BASELINE_COMMIT} is not in this clone (a shallow one?)"
    stamp = BASELINE / _STAMP
    if stamp.exists() and stamp.read_text().strip() == full:
        return BASELINE, title
    BENCH_DIR.mkdir(exist_ok=True)
    (BENCH_DIR / ".gitignore").write_text("# made by tools/bench_baseline.py\n*\n")
    shutil.rmtree(BASELINE, ignore_errors=True)
    part = BENCH_DIR / "baseline.part"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", full], cwd=ROOT,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(part, filter="data")
    (part / _STAMP).write_text(full + "\n")
    part.rename(BASELINE)
    return BASELINE, title


def run_function(root: Path, name: str, timeout: float = 600) -> dict[str, Any]:
    """``tools.bench.<name>()`` of the tree at ``root``, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", RUN_FUNCTION, name], cwd=root,
                          env=env_for(root), capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{name} of {root} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- where a message's time goes, in either tree ---------------------------------------

#: The message loop of ``bench_profile`` with its send side split in three: the game's
#: ``send()`` calls, the timer that packs and seals datagrams, and taking the acks. Written
#: against what v1 and v2 share (tests.fakenet, Session), so each tree runs it as is.
SPLIT_SCRIPT = r"""
import inspect, json, sys, time
from framework.protocol.config import Config
from framework.protocol.delivery import Delivery
from tests.fakenet import HS, FakeNet

def run():
    net = FakeNet()
    quiet = Config(secs_between_peer_checks=1e6)
    host = net.add(quiet)
    net.call(host, "init_server", HS, net.addr(host), "host", None)
    net.run(2, host.is_connected)
    alice = net.add(quiet)
    net.call(alice, "init_client", HS, net.addr(alice), "alice", "host", None)
    net.run(5, alice.is_connected)
    net.run(1)
    alice.events()
    host.events()
    a_addr, h_addr = net.addr(alice), net.addr(host)
    v1 = "now" in inspect.signature(alice.send).parameters  # v1's send() took the time
    # v2 renamed datagrams_to_send() to take_datagrams()
    a_take = getattr(alice, "take_datagrams", None) or alice.datagrams_to_send
    h_take = getattr(host, "take_datagrams", None) or host.datagrams_to_send
    mode = Delivery.RELIABLE_ORDERED
    n, sent, got, now = 60_000, 0, 0, net.now
    payload = b"x" * 64
    t = dict(send_call=0.0, timer=0.0, receive=0.0, events=0.0, acks=0.0)
    pc = time.perf_counter
    while got < n:
        now += 0.001
        t0 = pc()
        if sent < n:
            if v1:
                for _ in range(250):
                    alice.send("host", payload, mode, 0, now)
            else:
                for _ in range(250):
                    alice.send("host", payload, mode, 0)
            sent += 250
        t1 = pc()
        alice.handle_timer(now)
        out = [d for d, _ in a_take()]
        t2 = pc()
        for d in out:
            host.receive_datagram(d, a_addr, now)
        host.handle_timer(now)
        t3 = pc()
        evs = host.events()
        back = [d for d, _ in h_take()]
        t4 = pc()
        got += len(evs)
        for d in back:
            alice.receive_datagram(d, h_addr, now)
        t5 = pc()
        for k, a, b in (("send_call", t0, t1), ("timer", t1, t2), ("receive", t2, t3),
                        ("events", t3, t4), ("acks", t4, t5)):
            t[k] += b - a
    return {k: v / n * 1e6 for k, v in t.items()}

runs = [run() for _ in range(int(sys.argv[1]))]
print(json.dumps({k: min(r[k] for r in runs) for k in runs[0]}))
"""


def bench_split(trees: dict[str, Path], rounds: int = 3) -> dict[str, dict[str, float]]:
    """µs per message in each part of the message loop, per tree (best of 3 runs a
    round; median of the rounds, alternating the trees)."""
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    for r in range(rounds):
        for name in (list(trees) if r % 2 == 0 else list(reversed(trees))):
            root = trees[name]
            done = subprocess.run([sys.executable, "-c", SPLIT_SCRIPT, "3"], cwd=root,
                                  env=env_for(root), capture_output=True, text=True,
                                  timeout=600, check=False)
            if done.returncode:
                raise RuntimeError(f"the split profile of {root} failed:\n"
                                   f"{done.stderr[-2000:]}")
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {k: median_dicts(v) for k, v in runs.items()}


# --- the cost of packet protection ------------------------------------------------------


def bench_aead(repeats: int = 5, count: int = 20_000) -> dict[str, dict[str, float]]:
    """µs per datagram to seal and to open (with the replay window), for a small and a
    full DATA datagram; and the bare ChaCha20-Poly1305 calls, for what the wrapper adds."""
    from cryptography.hazmat.primitives.ciphers.aead import (  # noqa: PLC0415
        ChaCha20Poly1305,
    )

    from framework.protocol.constants import MAX_DATAGRAM  # noqa: PLC0415
    from framework.protocol.crypto import AEAD_TAG_SIZE  # noqa: PLC0415
    from framework.protocol.protection import PacketProtection  # noqa: PLC0415
    from framework.protocol.wire import DATA_PREFIX_SIZE  # noqa: PLC0415

    overhead = DATA_PREFIX_SIZE + AEAD_TAG_SIZE
    sizes = {"small": 60, "full": MAX_DATAGRAM - overhead}  # plaintext bytes
    out: dict[str, dict[str, float]] = {}
    for label, size in sizes.items():
        plain = os.urandom(size)
        seal_t: list[float] = []
        open_t: list[float] = []
        bare_t: list[float] = []
        for _ in range(repeats):
            sender, receiver = PacketProtection.pair(os.urandom)
            t = time.perf_counter()
            sealed = [sender.seal(plain) for _ in range(count)]
            seal_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            for d in sealed:
                number, _ = receiver.open(d)
                receiver.accept(number)
            open_t.append(time.perf_counter() - t)
            aead = ChaCha20Poly1305(os.urandom(32))
            nonce, aad = bytes(12), bytes(DATA_PREFIX_SIZE)
            t = time.perf_counter()
            for _ in range(count):
                aead.decrypt(nonce, aead.encrypt(nonce, plain, aad), aad)
            bare_t.append(time.perf_counter() - t)
        seal_us = min(seal_t) / count * 1e6
        open_us = min(open_t) / count * 1e6
        out[label] = {"plaintext": size, "datagram": size + overhead, "seal_us": seal_us,
                      "open_us": open_us, "both_us": seal_us + open_us,
                      "bare_us": min(bare_t) / count * 1e6}
    return out


def aead_per_message(aead: dict[str, dict[str, float]], prof: dict[str, float]
                     ) -> float | None:
    """The AEAD's µs per message in the profile run: seal + open of every datagram the
    run sent both ways, priced by a line through the small and full measurements."""
    if "datagrams" not in prof or not prof.get("messages"):
        return None
    s, f = aead["small"], aead["full"]
    per_byte = (f["both_us"] - s["both_us"]) / (f["datagram"] - s["datagram"])
    fixed = s["both_us"] - per_byte * s["datagram"]
    return (fixed * prof["datagrams"] + per_byte * prof["bytes"]) / prof["messages"]


def median_dicts(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}

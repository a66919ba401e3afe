"""Drive one real engine ``Peer`` inside a test-bed namespace and report in JSON lines.

    ip netns exec NS python tests/nat_agent.py --role host --hs 203.0.113.10:5160 \\
        --server-name game [--messages 20] [--control]

The agent ticks the peer at about 100 Hz. Every line it prints on stdout is one JSON object
with an ``ev`` key: the engine's events (``client_confirmed``, ``peer_timeout``, ...), plus

- ``started`` (the socket is bound), ``connected`` (a peer is usable: the client was confirmed
  by the server player, or the server player confirmed a client; with ``peer``, ``address``
  and ``stats``),
- ``recv`` for each reliable message (``from``, ``tag``, ``i``), ``received_all`` once all
  ``n`` messages of a tag arrived, ``sent`` after a batch was queued, ``acked`` once nothing
  sent is in flight any more,
- ``stats`` (answer to the ``stats`` command), ``exit`` (last line, with ``code``).

Auto mode (``--messages N``): once connected, send N reliable messages to the peer; done when
the peer's N arrived and ours were acknowledged; linger so the peer gets our acks, exit 0.

Control mode (``--control``): stdin lines are commands, as the test needs them:
``send N TAG`` (N reliable messages), ``unreliable N TAG``, ``stream SECONDS INTERVAL TAG``
(one reliable message every INTERVAL), ``stats``, ``quit``.

Exit codes: 0 done, 1 failure (deadline passed, session lost in auto mode, engine error),
2 the engine could not be imported or started.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

TICK = 0.01
#: Events after which, in auto mode, the agent gives up.
FATAL = {"session_terminated", "peer_connection_failed", "peer_timeout"}


def emit(ev: str, **fields: Any) -> None:
    """Print one JSON record on stdout."""
    sys.stdout.write(json.dumps({"ev": ev, "t": round(time.monotonic(), 3), **fields},
                                default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)


def parse_addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def stats_of(peer: Any, name: str) -> dict[str, Any] | None:
    """The engine's stats for ``name`` as a dict, or None when it has none."""
    try:
        stats = peer.get_stats(name)
    except Exception as exc:
        return {"error": repr(exc)}
    if stats is None:
        return None
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    return {k: v for k, v in vars(stats).items() if not k.startswith("_")}


@dataclasses.dataclass
class Stream:
    """A ``stream`` command in progress."""

    end: float
    every: float
    next_at: float
    tag: str
    i: int = 0


class StdinCommands:
    """Whole lines from stdin, without ever blocking the tick loop."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.closed = False

    def wait(self, timeout: float) -> list[str]:
        """Sleep up to ``timeout``, waking early when a command arrives; returns new lines."""
        if self.closed:
            time.sleep(max(0.0, timeout))
            return []
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        if not chunk:
            self.closed = True
            return []
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [line.decode().strip() for line in lines if line.strip()]


class Agent:
    """One player: a ``Peer`` plus the bookkeeping of what was sent and received."""

    def __init__(self, args: argparse.Namespace) -> None:
        # Imported here, not at the top, so that a missing engine is reported (exit 2).
        framework = importlib.import_module("framework")
        Config, Peer, events = framework.Config, framework.Peer, framework.events
        self.args = args
        self.events = events
        self.names = {
            getattr(events, n): n.lower()
            for n in dir(events)
            if n.isupper() and isinstance(getattr(events, n), int)
        }
        overrides = {
            "secs_between_peer_checks": args.peer_checks,
            "secs_to_await_reply": args.reply_wait,
            "attempts_before_expiration": args.attempts,
            "secs_between_reg_refresh": args.reg_refresh,
            "secs_reg_valid": args.reg_valid,
            "port_mapping": True if args.port_mapping else None,
        }
        known = {f.name for f in dataclasses.fields(Config)}
        cfg = {k: v for k, v in overrides.items() if v is not None and k in known}
        missing = [k for k, v in overrides.items() if v is not None and k not in known]
        if missing:
            emit("warning", message=f"Config has no field(s) {missing}; ignored")
        self.peer = Peer(Config(**cfg))
        self.connected: str | None = None  # the peer we exchange messages with
        self.received: dict[str, set[int]] = {}
        self.expected: dict[str, int] = {}
        self.complete: set[str] = set()
        self.sent_total = 0
        self.awaiting_ack = False
        self.ended: str | None = None
        self.streams: list[Stream] = []

    # ---- setup

    def start(self) -> None:
        a = self.args
        local = parse_addr(a.bind)
        hs = parse_addr(a.hs)
        if a.role == "host":
            self.peer.init_server(hs, local, a.server_name, a.password)
        else:
            self.peer.init_client(hs, local, a.name, a.server_name, a.password)
        emit("started", role=a.role, name=a.server_name if a.role == "host" else a.name)

    # ---- events

    def handle(self, event: Any) -> None:
        kind = self.names.get(event.type, str(event.type))
        attrs = dict(getattr(event, "dict", {}) or {})
        if kind == "received_reliable_message_from_peer":
            self.on_message(attrs.get("packet_data", {}), reliable=True)
            return
        if kind == "received_unreliable_message_from_peer":
            self.on_message(attrs.get("packet_data", {}), reliable=False)
            return
        emit(kind, **attrs)
        if kind == "client_confirmed" and self.connected is None:
            self.on_connected(str(attrs["new_peer"]))
        elif kind == "confirmed_as_client" and self.connected is None:
            name = self.peer.get_server_name()
            self.on_connected(str(name))
        elif kind in FATAL:
            self.ended = kind

    def on_connected(self, name: str) -> None:
        self.connected = name
        emit("connected", peer=name, info=self.peer.get_peer(name), stats=stats_of(self.peer, name))
        if self.args.messages:
            self.send(self.args.messages, "auto")

    def on_message(self, data: dict[str, Any], *, reliable: bool) -> None:
        msg = data.get("message")
        if not isinstance(msg, dict) or "tag" not in msg:
            emit("recv_other", reliable=reliable, data=data)
            return
        tag, i, n = str(msg["tag"]), int(msg["i"]), int(msg["n"])
        got = self.received.setdefault(tag, set())
        duplicate = i in got
        got.add(i)
        n = self.expected[tag] = min(self.expected.get(tag, n), n)
        if self.args.verbose or duplicate:
            emit("recv", reliable=reliable, **{"from": data.get("from")}, tag=tag, i=i,
                 duplicate=duplicate)
        if len(got) >= n and tag not in self.complete:
            self.complete.add(tag)
            emit("received_all", **{"from": data.get("from")}, tag=tag, n=n)

    # ---- sending

    def send(self, count: int, tag: str, *, reliable: bool = True) -> None:
        if self.connected is None:
            emit("error_local", message=f"send {tag}: no peer yet")
            return
        for i in range(count):
            body = {"tag": tag, "i": i, "n": count, "pad": "x" * self.args.pad}
            if reliable:
                self.peer.send_reliable_message_to_peer(self.connected, body)
            else:
                self.peer.send_unreliable_message_to_peer(self.connected, body)
        self.sent_total += count
        self.awaiting_ack = self.awaiting_ack or reliable
        emit("sent", tag=tag, n=count, reliable=reliable)

    def command(self, line: str) -> bool:
        """Run one control command; False when the agent should quit."""
        words = line.split()
        try:
            if words[0] == "send":
                self.send(int(words[1]), words[2] if len(words) > 2 else "cmd")
            elif words[0] == "unreliable":
                self.send(int(words[1]), words[2] if len(words) > 2 else "u", reliable=False)
            elif words[0] == "stream":
                now = time.monotonic()
                self.streams.append(Stream(now + float(words[1]), float(words[2]), now, words[3]))
            elif words[0] == "stats":
                self.report_stats()
            elif words[0] == "quit":
                return False
            else:
                emit("error_local", message=f"unknown command {line!r}")
        except (IndexError, ValueError) as exc:
            emit("error_local", message=f"bad command {line!r}: {exc}")
        return True

    def run_streams(self, now: float) -> None:
        """One message per interval. A stream's length is known only at its end, so each
        message says n = 2**30 and the last one carries the real count."""
        if self.connected is None:
            return
        for st in list(self.streams):
            last = now >= st.end
            if now >= st.next_at or last:
                n = st.i + 1 if last else 1 << 30
                body = {"tag": st.tag, "i": st.i, "n": n, "pad": ""}
                self.peer.send_reliable_message_to_peer(self.connected, body)
                self.sent_total += 1
                st.i += 1
                st.next_at = now + st.every
            if last:
                self.streams.remove(st)
                self.awaiting_ack = True
                emit("sent", tag=st.tag, n=st.i, reliable=True)

    def in_flight(self) -> int | None:
        if self.connected is None:
            return None
        stats = stats_of(self.peer, self.connected)
        if not stats or "messages_in_flight" not in stats:
            return None
        return int(stats["messages_in_flight"])

    def report_stats(self) -> None:
        name = self.connected
        emit("stats", peer=name, connected=self.peer.is_connected(),
             peers=self.peer.get_peers(), info=self.peer.get_peer(name) if name else None,
             stats=stats_of(self.peer, name) if name else None,
             received={t: len(s) for t, s in self.received.items()}, sent=self.sent_total)

    # ---- main loop

    def loop(self) -> int:
        a = self.args
        deadline = time.monotonic() + a.timeout
        commands = StdinCommands() if a.control else None
        done_at: float | None = None
        next_stats = time.monotonic() + a.stats_every if a.stats_every else None
        while True:
            frame = time.monotonic()
            if frame >= deadline:
                emit("deadline", seconds=a.timeout)
                self.report_stats()
                return 0 if a.control and a.deadline_ok else 1
            for event in self.peer.tick():
                self.handle(event)
            self.run_streams(time.monotonic())
            if self.awaiting_ack and self.in_flight() == 0:
                self.awaiting_ack = False
                emit("acked", sent=self.sent_total)
            if next_stats is not None and frame >= next_stats:
                self.report_stats()
                next_stats = frame + a.stats_every
            if not a.control:
                if self.ended and not a.tolerate_end:
                    self.report_stats()
                    return 1
                if (
                    done_at is None
                    and a.messages
                    and "auto" in self.complete
                    and not self.awaiting_ack
                    and self.sent_total
                ):
                    done_at = time.monotonic()
                    self.report_stats()
                if done_at is not None and time.monotonic() - done_at >= a.linger:
                    return 0
            left = TICK - (time.monotonic() - frame)
            if commands is not None:
                for line in commands.wait(left):
                    if not self.command(line):
                        self.report_stats()
                        return 0
            elif left > 0:
                time.sleep(left)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.peer.is_connected():
                self.peer.quit_connection()
                end = time.monotonic() + 0.2
                while time.monotonic() < end:  # let the goodbye datagrams leave
                    self.peer.tick()
                    time.sleep(TICK)
        with contextlib.suppress(Exception):
            self.peer.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Drive one engine Peer and report in JSON lines.")
    p.add_argument("--role", choices=["host", "client"], required=True)
    p.add_argument("--hs", required=True, help="handshake server IP:PORT")
    p.add_argument("--server-name", default="game")
    p.add_argument("--name", default="player", help="client's user name")
    p.add_argument("--password", default=None)
    p.add_argument("--bind", default="0.0.0.0:0", help="local address IP:PORT")
    p.add_argument("--messages", type=int, default=0, help="auto mode: reliable messages to send")
    p.add_argument("--pad", type=int, default=0, help="extra bytes per message")
    p.add_argument("--control", action="store_true", help="read commands from stdin")
    p.add_argument("--timeout", type=float, default=30.0, help="hard deadline, seconds")
    p.add_argument("--deadline-ok", action="store_true",
                   help="control mode: reaching the deadline is not a failure")
    p.add_argument("--linger", type=float, default=1.0, help="auto mode: ticks after done")
    p.add_argument("--tolerate-end", action="store_true",
                   help="auto mode: keep going after a session end / timeout event")
    p.add_argument("--stats-every", type=float, default=0.0)
    p.add_argument("--verbose", action="store_true", help="print every received message")
    p.add_argument("--peer-checks", type=float, default=None)
    p.add_argument("--reply-wait", type=float, default=None)
    p.add_argument("--attempts", type=int, default=None)
    p.add_argument("--reg-refresh", type=float, default=None)
    p.add_argument("--reg-valid", type=float, default=None)
    p.add_argument("--port-mapping", action="store_true",
                   help="Config(port_mapping=True): ask the router for a mapping")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The engine's own log (INFO: phases, paths, port mappings) goes to stderr, which the
    # tests show when something fails.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(relativeCreated)8.0f %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        agent = Agent(args)
        agent.start()
    except Exception as exc:
        traceback.print_exc()
        emit("exit", code=2, error=repr(exc))
        return 2
    code = 1
    try:
        code = agent.loop()
    except Exception as exc:
        emit("crash", error=repr(exc))
        raise
    finally:
        agent.close()
        emit("exit", code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())

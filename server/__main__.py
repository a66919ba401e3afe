"""``python -m server [--host 0.0.0.0] [--port 5160] [--key-file PATH]``: run the
handshake server. ``--print-fingerprint`` prints the key's fingerprint and exits.

``--redis URL`` makes this process one node of several sharing their state in Redis
(``server.cluster``); ``--reuse-port`` lets nodes on one machine bind the same port;
``--metrics HOST:PORT`` serves the counters in Prometheus text format.

``--relay-only --redis URL --public HOST:PORT`` runs a relay node instead: the
deployment's handshake nodes place relays on the least loaded relay node
(``server.relaytier``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

from framework.protocol import crypto
from framework.protocol.addresses import Address
from framework.protocol.constants import DEFAULT_HANDSHAKE_PORT
from framework.protocol.crypto import KeyPair

from . import keys
from .core import ServerConfig
from .server import HandshakeServer
from .shell import UdpServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server",
                                     description="Handshake server for pygame-p2p games.")
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=DEFAULT_HANDSHAKE_PORT,
                        help=f"UDP port (default {DEFAULT_HANDSHAKE_PORT})")
    parser.add_argument("--max-registrations", type=int, default=ServerConfig.max_registrations,
                        help="registrations held at once (default %(default)s)")
    parser.add_argument("--no-relay", action="store_true",
                        help="never relay traffic for players whose hole punching failed")
    parser.add_argument("--relay-rate", type=int, default=ServerConfig.relay_bytes_per_sec,
                        help="bytes per second one relay may forward (default %(default)s)")
    parser.add_argument("--relay-duration", type=float,
                        default=ServerConfig.relay_max_duration,
                        help="seconds a relay may live (default %(default)s)")
    parser.add_argument("--requests-per-ip", type=float,
                        default=ServerConfig.requests_per_sec_per_ip,
                        help="requests per second one IP address may make (default "
                             "%(default)s; raise it for load tests)")
    parser.add_argument("--key-file", default=None,
                        help="the handshake server's long-term key, created on first start "
                             f"(default {keys.default_path()})")
    parser.add_argument("--print-fingerprint", action="store_true",
                        help="print the key's fingerprint (for players to pin) and exit")
    parser.add_argument("--redis", default=None, metavar="URL",
                        help="keep registrations, introductions, rate limits and relays in "
                             "this Redis (redis://host:port/db), shared with the other nodes "
                             "of the deployment; they must share --key-file too")
    parser.add_argument("--node-id", default=None,
                        help="this node's name in the cluster (default: random)")
    parser.add_argument("--reuse-port", action="store_true",
                        help="bind with SO_REUSEPORT, so several processes share the port")
    parser.add_argument("--metrics", default=None, metavar="HOST:PORT",
                        help="serve the counters over HTTP in Prometheus text format")
    parser.add_argument("--relay-only", action="store_true",
                        help="be a relay node of a --redis deployment: no requests, only "
                             "the relays the handshake nodes place here")
    parser.add_argument("--public", default=None, metavar="HOST:PORT",
                        help="with --relay-only: the address players reach this node at "
                             "(default: --host and --port, when --host is not a wildcard)")
    parser.add_argument("--relay-capacity", type=int, default=ServerConfig.max_relays,
                        help="with --relay-only: relays this node carries at most "
                             "(default %(default)s)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServerConfig(max_registrations=args.max_registrations, relay=not args.no_relay,
                          requests_per_sec_per_ip=args.requests_per_ip,
                          request_burst=max(2 * args.requests_per_ip, 1.0),
                          relay_bytes_per_sec=args.relay_rate,
                          relay_max_duration=args.relay_duration)
    log = logging.getLogger("server")
    metrics = None
    if args.metrics is not None:
        metrics = _address_arg(args.metrics)
        if metrics is None:
            log.error("--metrics wants HOST:PORT, e.g. 127.0.0.1:9160")
            return 1
    if args.relay_only:
        return _relay_node(args, config, metrics, log)
    try:
        key = keys.load_or_create(args.key_file)
    except OSError as exc:
        if args.key_file is not None:
            log.error("cannot use the key file: %s", exc)
            return 1
        # No place to keep the default key (a read-only home, a sandbox): serve with a
        # key of this run only. Players who pinned the old one refuse it, which is safe.
        log.warning("cannot keep a key in %s (%s): using a new key for this run only",
                    keys.default_path(), exc.strerror)
        key = KeyPair.generate(os.urandom)
    except keys.KeyFileError as exc:  # never replace a key file we cannot read
        log.error("cannot use the key file: %s", exc)
        return 1
    if args.print_fingerprint:
        sys.stdout.write(crypto.fingerprint(key.public) + "\n")  # the output, not a log line
        return 0
    cluster = None
    if args.redis is not None:
        try:
            from .cluster import Cluster  # noqa: PLC0415 (redis is needed only here)
        except ImportError:
            log.error("--redis needs the redis package: pip install 'pygame-p2p[cluster]'")
            return 1
        try:
            cluster = Cluster(args.redis, key, args.node_id)
        except ValueError as exc:
            log.error("bad --redis URL: %s", exc)
            return 1
    try:
        server = HandshakeServer(args.host, args.port, config, key, cluster=cluster,
                                 reuse_port=args.reuse_port, metrics=metrics)
    except OSError as exc:
        log.error("cannot bind %s:%d: %s", args.host, args.port, exc)
        return 1
    return _serve(server)


def _serve(server: UdpServer) -> int:
    """Serve until SIGTERM or SIGINT."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.serve_forever()
    return 0


def _address_arg(text: str) -> Address | None:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return (host.strip("[]"), int(port))


def _relay_node(args: argparse.Namespace, config: ServerConfig, metrics: Address | None,
                log: logging.Logger) -> int:
    """``--relay-only``: a relay node of the deployment in ``--redis``."""
    if args.redis is None:
        log.error("--relay-only needs --redis (the deployment's Redis)")
        return 1
    if args.public is not None:
        public = _address_arg(args.public)
        if public is None:
            log.error("--public wants HOST:PORT, e.g. 203.0.113.7:5170")
            return 1
    elif args.host in ("0.0.0.0", "::", ""):
        log.error("--relay-only needs --public HOST:PORT (the address players reach) when "
                  "--host is a wildcard")
        return 1
    else:
        public = (args.host, args.port)
    if args.relay_capacity <= 0:
        log.error("--relay-capacity must be positive")
        return 1
    try:
        from .cluster import Link  # noqa: PLC0415 (redis is needed only here)
        from .relayserver import RelayNodeServer  # noqa: PLC0415
        from .relaytier import RelayNodeCore  # noqa: PLC0415
    except ImportError:
        log.error("--redis needs the redis package: pip install 'pygame-p2p[cluster]'")
        return 1
    try:
        link = Link(args.redis)
    except ValueError as exc:
        log.error("bad --redis URL: %s", exc)
        return 1
    core = RelayNodeCore(link, args.node_id or os.urandom(6).hex(), public, config,
                         args.relay_capacity)
    try:
        server = RelayNodeServer(core, args.host, args.port, metrics=metrics)
    except OSError as exc:
        log.error("cannot bind %s:%d: %s", args.host, args.port, exc)
        return 1
    return _serve(server)


if __name__ == "__main__":
    sys.exit(main())

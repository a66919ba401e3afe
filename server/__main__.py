"""``python -m server [--host 0.0.0.0] [--port 5160] [--key-file PATH]``: run the
handshake server. ``--print-fingerprint`` prints the key's fingerprint and exits.

``--redis URL`` makes this process one node of several sharing their state in Redis
(``server.cluster``); ``--reuse-port`` lets nodes on one machine bind the same port;
``--metrics HOST:PORT`` serves the counters in Prometheus text format."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

from framework.protocol import crypto
from framework.protocol.constants import DEFAULT_HANDSHAKE_PORT
from framework.protocol.crypto import KeyPair

from . import keys
from .core import ServerConfig
from .server import HandshakeServer


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
    metrics = None
    if args.metrics is not None:
        mhost, _, mport = args.metrics.rpartition(":")
        if not mhost or not mport.isdigit():
            log.error("--metrics wants HOST:PORT, e.g. 127.0.0.1:9160")
            return 1
        metrics = (mhost.strip("[]"), int(mport))
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

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m games.pong`: see `--help`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from games.pong import app, headless
from games.pong.cli import parse_args


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(opts.verbose, 2)]
    logging.basicConfig(level=level, stream=sys.stderr, format="%(name)s: %(message)s")
    if opts.headless:
        return headless.run(opts)
    return app.run(opts)


if __name__ == "__main__":
    sys.exit(main())

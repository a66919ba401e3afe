"""Networked Pong, the sample game of pygame-p2p. Run it with `python -m games.pong`."""

import os

# pygame prints a banner to stdout on import; a headless run's stdout is its JSON result.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

"""Sections of ``docs/BENCHMARKS.md`` that benchmarks write on their own."""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, heading: str, text: str) -> None:
    """Put ``text`` (which starts with ``heading``, a ``## `` line) into the Markdown file
    at ``path`` in place of the old section of that heading, or at its end."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(heading) + r"\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _: text.rstrip("\n") + "\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)

"""Player and game names: one normal form, no invisible characters, no look-alikes.

A name is compared and shown in Unicode NFKC form (so a full-width "arena" *is*
the plain one). Control, format, private-use, unassigned and default-ignorable characters
(zero-width joiners, the Hangul filler U+3164, variation selectors ...) are refused, as
are names that mix Latin, Greek and Cyrillic letters. Two names are look-alikes when their
*skeletons* are equal: case-folded, with every character replaced by one representative
of its class in Unicode's confusables table (UTS #39), which the ``confusable_homoglyphs``
package carries. The handshake server refuses a name whose skeleton belongs to another
registered name.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from importlib import resources
from typing import Final

from .constants import HS_SERVER_NAME, MAX_NAME_LENGTH

#: Default_Ignorable_Code_Point ranges of Unicode 15 (DerivedCoreProperties.txt), which
#: render as nothing: a name with one looks like the same name without it.
_IGNORABLE: Final = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_CONFUSABLE_SCRIPTS: Final = ("LATIN", "GREEK", "CYRILLIC")


class BadName(ValueError):
    """A name that cannot be used; the message says why, for a person to read."""


def _ignorable(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _IGNORABLE)


def _script(ch: str) -> str | None:
    name = unicodedata.name(ch, "")
    for script in _CONFUSABLE_SCRIPTS:
        if name.startswith(script):
            return script
    return None


def _plain_ascii(name: str) -> bool:
    """The common case, checked fast: printable ASCII (its own NFKC form, one script,
    nothing invisible), single spaces inside only."""
    return (name.isascii() and name.isprintable() and 0 < len(name) <= MAX_NAME_LENGTH
            and name[0] != " " and name[-1] != " " and "  " not in name
            and name != HS_SERVER_NAME)


def normalize_name(name: object) -> str:
    """The name's normal form; BadName says what is wrong with it."""
    if type(name) is not str:
        raise BadName("a name must be a string")
    if _plain_ascii(name):
        return name
    if len(name) > 4 * MAX_NAME_LENGTH:  # before NFKC, which may grow it (bounded work)
        raise BadName(f"a name has at most {MAX_NAME_LENGTH} characters")
    norm = unicodedata.normalize("NFKC", name)
    if not 0 < len(norm) <= MAX_NAME_LENGTH:
        raise BadName(f"a name has 1 to {MAX_NAME_LENGTH} characters")
    if norm != norm.strip() or "  " in norm:
        raise BadName("a name may not start or end with spaces, or have two in a row")
    scripts: set[str] = set()
    for ch in norm:
        cp = ord(ch)
        if _ignorable(cp) or unicodedata.category(ch) in _REFUSED_CATEGORIES:
            raise BadName(f"a name may not contain the invisible or control character "
                          f"U+{cp:04X}")
        if ch.isspace() and ch != " ":
            raise BadName(f"a name may not contain the space character U+{cp:04X}")
        script = _script(ch) if ch.isalpha() else None
        if script is not None:
            scripts.add(script)
    if len(scripts) > 1:
        raise BadName("a name may not mix Latin, Greek and Cyrillic letters")
    if norm == HS_SERVER_NAME:
        raise BadName(f"{HS_SERVER_NAME!r} is reserved for the handshake server")
    return norm


def is_valid_name(name: object) -> bool:
    """True for a name already in normal form and allowed (the wire's check)."""
    if type(name) is not str:
        return False
    return _plain_ascii(name) or _valid_unicode(name)


@functools.lru_cache(maxsize=4096)
def _valid_unicode(name: str) -> bool:
    try:
        return normalize_name(name) == name
    except BadName:
        return False


@functools.cache
def _representatives() -> dict[str, str]:
    """Each confusable character -> one representative of its class (union-find)."""
    data = json.loads(resources.files("confusable_homoglyphs")
                      .joinpath("confusables.json").read_text(encoding="utf-8"))
    parent: dict[str, str] = {}

    def find(c: str) -> str:
        root = c
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(c, c) != root:
            parent[c], c = root, parent[c]
        return root

    def union(x: str, y: str) -> None:
        a, b = find(x), find(y)
        if a != b:
            # The smaller code point represents the class: ASCII wins where present.
            lo, hi = (a, b) if a < b else (b, a)
            parent[hi] = lo

    for ch, entries in data.items():
        for entry in entries:
            union(ch, entry["c"])
    # "O" looks like "0" while "o" does not: join each ASCII letter with its other case,
    # so that "HELLO" meets "hello". (Joining every letter of the table with its other
    # case chains unrelated letters together: "cat" would meet "car".)
    for ch in map(chr, range(0x41, 0x5B)):
        union(ch, ch.lower())
    return {c: find(c) for c in list(parent)}


def skeleton(name: str) -> str:
    """A key equal for names that look alike ("arena", "ARENA", and "arena" with a
    Cyrillic a or in full-width letters)."""
    reps = _representatives()

    def mapped(text: str) -> str:
        return "".join(reps.get(ch, ch) for ch in text)

    # Map, fold case, map again: "I" and "l" look alike before folding, "a" and "A" after.
    return mapped(mapped(unicodedata.normalize("NFKC", name)).casefold())

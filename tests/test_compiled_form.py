"""The compiled form's bookkeeping: which modules it covers, and the flag that tells."""

from __future__ import annotations

import importlib.machinery
import tomllib

import framework
import server
from framework.protocol import connection
from server import core
from tools import build_compiled, check_package


def test_the_flags_say_which_form_runs() -> None:
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    assert (connection.__file__ or "").endswith(suffixes) == framework.COMPILED
    assert (core.__file__ or "").endswith(suffixes) == server.COMPILED


def test_the_compiled_modules_are_the_pure_cores_and_exist() -> None:
    sources = build_compiled.sources()
    for path in sources:
        assert (build_compiled.ROOT / path).is_file(), path
    # The I/O shells and pygame's side stay Python.
    for shell in ("framework/peer.py", "framework/portmap.py", "framework/events.py",
                  "framework/__init__.py", "server/server.py", "server/__main__.py",
                  "server/__init__.py", "server/keys.py"):
        assert shell not in sources, shell
    for excluded in build_compiled.EXCLUDED:
        assert (build_compiled.ROOT / excluded).is_file(), excluded
        assert excluded not in sources
    assert "framework/protocol/connection.py" in sources
    assert "server/core.py" in sources


def test_the_package_check_expects_the_layouts_packages() -> None:
    with open(build_compiled.ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)
    assert set(project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]) == \
        check_package.TOP_LEVEL
    assert set(check_package.scripts()) == {"p2p-handshake-server", "pong"}

"""The optional compiled form: the pure cores built with mypyc, from the same source.

    python -m tools.build_compiled            # build into build/mypyc, copy beside the sources
    python -m tools.build_compiled --build    # build into build/mypyc only
    python -m tools.build_compiled --clean    # remove the copies beside the sources
    python -m tools.build_compiled --list     # the modules compiled, and those left out (why)

Pure Python stays the reference: without the extension modules beside the sources
everything imports the ``.py`` files, and with them Python prefers the extension modules
(``framework.COMPILED`` tells which form runs). The build itself goes to ``build/mypyc``
(C files, objects, the extension modules, reused by the next build when nothing changed);
only the finished ``.so`` files are copied into the tree, so removing them (``--clean``)
brings the pure form back at once, and building again after that is a copy.

What is compiled: the protocol core (``framework/protocol``, ``framework/rollback``) and
the handshake server's sans-I/O core (``server/core.py`` and the modules behind it). Not
compiled: the I/O shells (``framework/peer.py``, ``framework/portmap.py``,
``server/server.py``), pygame's side,
the packages' ``__init__`` modules that load those shells, and the modules in ``EXCLUDED``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import sysconfig
import time
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

log = logging.getLogger("build_compiled")

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "mypyc"
#: The name of the one shared library holding every compiled module (mypyc's "group");
#: each module also gets a small shim extension beside its source that loads it.
GROUP = "p2p_compiled"

#: Whole trees compiled, every module in them but those in EXCLUDED.
TREES = ("framework/protocol", "framework/rollback")
#: The handshake server's pure core: every module of server/ but the socket shell.
SERVER_MODULES = (
    "server/core.py", "server/handlers.py", "server/registry.py", "server/relays.py",
    "server/introductions.py", "server/candidates.py", "server/channels.py",
    "server/cookies.py",
)
#: Left pure, and why (server/config.py too, above: ``ServerConfig``'s defaults are read
#: on the class, ``ServerConfig.max_registrations``, by the command line and tests, and a
#: compiled dataclass keeps no class attributes for its fields).
EXCLUDED = {
    # Its exceptions subclass ValueError and RuntimeError: a native class cannot inherit
    # from most built-in types, and they cost nothing on a hot path.
    "framework/protocol/errors.py":
        "exception classes subclass ValueError/RuntimeError (not a native class)",
    # ``Transport`` is a typing.Protocol whose methods have ``...`` defaults: compiled,
    # the module fails at import (an Ellipsis is not a Delivery). Only types live here.
    "framework/rollback/types.py":
        "a typing.Protocol with '...' defaults fails at import when compiled",
}


def sources() -> list[str]:
    """The modules to compile, as paths relative to the repository's root."""
    found: list[str] = []
    for tree in TREES:
        found += sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / tree).rglob("*.py"))
    found += SERVER_MODULES
    return [path for path in found if path not in EXCLUDED]


def ext_suffix() -> str:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    assert isinstance(suffix, str)
    return suffix


def built_files() -> list[Path]:
    """The extension modules a build makes, relative to its output directory."""
    suffix = ext_suffix()
    files = [Path(path).with_suffix(suffix) for path in sources()]
    return [Path(f"{GROUP}__mypyc{suffix}"), *files]


def can_build() -> str | None:
    """None when this machine can build the compiled form, else what it lacks."""
    for module in ("mypyc", "setuptools"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[dev]')"
    include = sysconfig.get_paths().get("include", "")
    if not (Path(include) / "Python.h").exists():
        return f"no Python headers ({include}/Python.h)"
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    return None


def _compile_in_parallel(jobs: int) -> None:
    """Let setuptools compile one extension's C files on ``jobs`` threads (mypyc puts
    every module in one shared library, and setuptools compiles its files one by one)."""
    from distutils import ccompiler  # noqa: PLC0415 - setuptools' copy, after setuptools

    def compile_(self: Any, sources: list[str], output_dir: str | None = None,
                 macros: Any = None, include_dirs: Any = None, debug: bool = False,
                 extra_preargs: Any = None, extra_postargs: Any = None,
                 depends: Any = None) -> list[str]:
        macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj: str) -> None:
            src, ext = build[obj]
            self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        with ThreadPool(jobs) as pool:
            pool.map(one, objects)
        return list(objects)

    ccompiler.CCompiler.compile = compile_  # type: ignore[method-assign, assignment]


def build(jobs: int) -> None:
    """Compile into ``build/mypyc`` (incremental: unchanged extensions are kept)."""
    # Imported here: only a build needs mypyc and setuptools (dev extras).
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import Distribution  # type: ignore[import-untyped]  # noqa: PLC0415

    _compile_in_parallel(jobs)
    started = time.monotonic()
    here = Path.cwd()
    os.chdir(ROOT)  # mypyc names modules by their paths relative to the working directory
    try:
        extensions = mypycify(
            sources(),
            opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3"),
            multi_file=True,  # one C file per module: gcc runs them in parallel
            group_name=GROUP,
            target_dir=str(BUILD / "c"),
        )
        # A bare Distribution: pyproject.toml is hatchling's, not setuptools'.
        dist = Distribution({"name": "pygame-p2p-compiled", "ext_modules": extensions})
        dist.script_name = "build_compiled"
        dist.script_args = ["-q", "build_ext", "--build-lib", str(BUILD / "lib"),
                            "--build-temp", str(BUILD / "temp")]
        dist.parse_command_line()
        dist.run_commands()
    finally:
        os.chdir(here)
    log.info("compiled %d modules in %.0f s", len(sources()), time.monotonic() - started)


def install() -> None:
    """Copy the built extension modules beside the sources."""
    for rel in built_files():
        src = BUILD / "lib" / rel
        if not src.exists():
            raise SystemExit(f"{src} is missing: build first")
        shutil.copy2(src, ROOT / rel)
    log.info("compiled form in place (%d extension modules)", len(built_files()))


def clean() -> int:
    """Remove the extension modules beside the sources; returns how many there were."""
    removed = 0
    for rel in built_files():
        path = ROOT / rel
        if path.exists():
            path.unlink()
            removed += 1
    # Leftovers of an older module list, or of another Python version.
    for tree in ("framework", "server"):
        for path in (ROOT / tree).rglob("*.so"):
            path.unlink()
            removed += 1
    for path in ROOT.glob(f"{GROUP}__mypyc*.so"):
        path.unlink()
        removed += 1
    return removed


#: What a copy of the tree needs to run the engine, the servers, the games and the tools.
TREE_PARTS = ("framework", "server", "games", "tools", "tests")


def compiled_tree(dest: Path) -> Path:
    """A copy of this tree's code at ``dest`` with the compiled form beside its sources
    (built first, incrementally): to run both forms side by side (``make bench``)."""
    build(os.cpu_count() or 1)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    for part in TREE_PARTS:
        shutil.copytree(ROOT / part, dest / part, ignore=skip)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    for rel in built_files():
        shutil.copy2(BUILD / "lib" / rel, dest / rel)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--build", action="store_true", help="build into build/mypyc only")
    group.add_argument("--clean", action="store_true",
                       help="remove the extension modules beside the sources")
    group.add_argument("--list", action="store_true", help="what is compiled, what is not")
    group.add_argument("--can-build", action="store_true",
                       help="exit 0 if this machine can build the compiled form, else say why")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.list:
        for path in sources():
            print(path)
        for path, why in EXCLUDED.items():
            print(f"{path}: left pure: {why}")
        return 0
    if args.can_build:
        missing = can_build()
        if missing is not None:
            log.info("cannot build the compiled form: %s", missing)
        return 0 if missing is None else 1
    if args.clean:
        removed = clean()
        if removed:
            log.info("removed %d compiled modules: the pure form runs", removed)
        return 0
    build(args.jobs)
    if not args.build:
        install()
    return 0


if __name__ == "__main__":
    sys.exit(main())

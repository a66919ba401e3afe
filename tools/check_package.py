"""Build the packages and try the wheel the way a user gets it (``make test`` runs this).

    python -m tools.check_package [--keep]

1. ``python -m build``: an sdist, and a wheel built from that sdist (so the sdist is
   complete), into ``build/dist``.
2. The wheel's contents: its top-level names are exactly the three packages the layout
   needs (``framework``, ``server``, ``games``), nothing else (no ``tests``, no
   ``tools``, no compiled module of a local ``make fast``); Pong's files are in it.
3. A fresh venv (``build/package-venv``) with the wheel installed from the registry's
   dependencies; from a directory outside the source tree: the console scripts start
   (``--help``; the handshake server serves on a loopback port and stops on SIGTERM),
   Pong's assets load (its synthesised sounds and pygame's default font, headless), and
   the installed code is the pure form.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

log = logging.getLogger("check_package")

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "build" / "dist"
VENV = ROOT / "build" / "package-venv"
#: The layout's packages: the only top-level names the wheel may install.
TOP_LEVEL = {"framework", "server", "games"}
#: Files that must ship besides the modules.
MUST_SHIP = ("games/pong/README.md", "games/pong/__main__.py", "server/__main__.py")

ASSETS_CHECK = """
import os
os.environ["SDL_VIDEODRIVER"] = os.environ["SDL_AUDIODRIVER"] = "dummy"
import pygame
import framework, server
from games.pong import sound, theme
pygame.font.init()
assert theme.font(theme.SMALL_SIZE).size("Pong")[0] > 0
for name in ("wall", "paddle", "score", "win", "lose"):
    assert len(sound.synthesize(name)) > 0, name
assert not framework.COMPILED and not server.COMPILED
print(framework.__file__)
"""


class PackageError(Exception):
    pass


def run(cmd: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if proc.returncode != 0:
        raise PackageError(f"{' '.join(cmd)} exited {proc.returncode}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def build() -> tuple[Path, Path]:
    shutil.rmtree(DIST, ignore_errors=True)
    run([sys.executable, "-m", "build", "--outdir", str(DIST), str(ROOT)])
    wheels = sorted(DIST.glob("*.whl"))
    sdists = sorted(DIST.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise PackageError(f"expected one wheel and one sdist in {DIST}: {os.listdir(DIST)}")
    log.info("built %s and %s", sdists[0].name, wheels[0].name)
    return sdists[0], wheels[0]


def check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    if top != TOP_LEVEL:
        raise PackageError(f"the wheel's top-level names are {sorted(top)}, "
                           f"not {sorted(TOP_LEVEL)}")
    compiled = [name for name in names if name.endswith((".so", ".pyd", ".c"))]
    if compiled:
        raise PackageError(f"the wheel is meant to be pure Python, but holds {compiled[:3]}")
    missing = [path for path in MUST_SHIP if path not in names]
    if missing:
        raise PackageError(f"missing from the wheel: {missing}")
    log.info("the wheel installs %s only (%d files)", ", ".join(sorted(top)), len(names))


def scripts() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        declared: dict[str, str] = tomllib.load(f)["project"]["scripts"]
    return declared


def install(wheel: Path) -> Path:
    shutil.rmtree(VENV, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(VENV)])
    python = VENV / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", str(wheel)])
    log.info("installed the wheel in a fresh venv, %s", VENV.relative_to(ROOT))
    return python


def check_installed(python: Path, elsewhere: Path) -> None:
    bin_dir = python.parent
    for name in scripts():
        out = run([str(bin_dir / name), "--help"], cwd=elsewhere, timeout=60)
        if "usage" not in out.lower():
            raise PackageError(f"{name} --help printed no usage:\n{out}")
    log.info("console scripts start: %s", ", ".join(scripts()))
    out = run([str(python), "-c", ASSETS_CHECK], cwd=elsewhere, timeout=120)
    if str(VENV) not in out:
        raise PackageError(f"the check imported the source tree, not the wheel: {out}")
    log.info("Pong's assets load from the installed package (sounds, font); pure form")
    serve(bin_dir / "p2p-handshake-server", elsewhere)


def serve(script: Path, elsewhere: Path) -> None:
    """The installed handshake server binds a loopback port, logs it, stops on SIGTERM."""
    key = elsewhere / "server.key"
    proc = subprocess.Popen([str(script), "--host", "127.0.0.1", "--port", "0",
                             "--key-file", str(key)], cwd=elsewhere,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            if re.search(r"listening on 127\.0\.0\.1:\d+", line):
                break
        else:
            line = ""
        if "listening on" not in line:
            raise PackageError("the installed handshake server did not start")
        proc.send_signal(signal.SIGTERM)
        if proc.wait(timeout=30) != 0:
            raise PackageError(f"the handshake server exited {proc.returncode} on SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.info("the installed handshake server served on loopback and stopped on SIGTERM")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the venv afterwards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="package: %(message)s", stream=sys.stdout)
    started = time.monotonic()
    try:
        _, wheel = build()
        check_wheel(wheel)
        python = install(wheel)
        with tempfile.TemporaryDirectory() as elsewhere:
            check_installed(python, Path(elsewhere))
    except PackageError as exc:
        log.error("%s", exc)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(VENV, ignore_errors=True)
    log.info("packages checked in %.0f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared pytest fixtures."""

from __future__ import annotations

# ---------------------------------------------------------------- netbed (real-NAT test bed)
# Fixtures for tests marked `netns`: they build network namespaces (tests/netbed.py).
import os
from collections.abc import Iterator

import pytest

import framework
import server
from tests.netbed import NetBed, netns_available


def require_netns() -> None:
    """Skip (or, with CI=true, fail) when this machine cannot build network namespaces."""
    ok, why = netns_available()
    if ok:
        return
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true but the NAT test bed cannot run here: {why}", pytrace=False)
    pytest.skip(f"NAT test bed unavailable: {why}")


@pytest.fixture
def netbed() -> Iterator[NetBed]:
    """A fresh, empty NetBed, torn down after the test whatever happens."""
    require_netns()
    bed = NetBed()
    try:
        bed.open()
        yield bed
    finally:
        bed.close()


# ---------------------------------------------------------------- which form runs
# `make test` runs the suite on the pure form and again on the compiled one (mypyc); it
# says which it expects in P2P_EXPECT_FORM, and a pass that would test the other form
# (extension modules left beside the sources, or a build that did not take) stops at once.
def pytest_report_header(config: pytest.Config) -> str:
    form = "compiled (mypyc)" if framework.COMPILED else "pure Python"
    return f"protocol core: {form}; handshake server core: " + (
        "compiled (mypyc)" if server.COMPILED else "pure Python")


def pytest_sessionstart(session: pytest.Session) -> None:
    expected = os.environ.get("P2P_EXPECT_FORM", "")
    if not expected:
        return
    if expected not in ("pure", "compiled"):
        raise pytest.UsageError(f"P2P_EXPECT_FORM={expected!r}: 'pure' or 'compiled'")
    want = expected == "compiled"
    if (want, want) != (framework.COMPILED, server.COMPILED):
        raise pytest.UsageError(
            f"this pass should test the {expected} form, but framework.COMPILED is "
            f"{framework.COMPILED} and server.COMPILED is {server.COMPILED} "
            "(python -m tools.build_compiled --clean removes the compiled modules)")

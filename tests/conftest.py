"""Shared pytest fixtures."""

from __future__ import annotations

# ---------------------------------------------------------------- netbed (real-NAT test bed)
# Fixtures for tests marked `netns`: they build network namespaces (tests/netbed.py).
import os
from collections.abc import Iterator

import pytest

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

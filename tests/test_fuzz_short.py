"""The short fuzz campaign of `make test` (the long one is `make fuzz`)."""

from __future__ import annotations

from tools.fuzz import build_target, run_mutate


def test_fifty_thousand_mutated_datagrams_crash_nothing() -> None:
    target = build_target(seed=3)
    assert len(target.corpus) > 50
    run_mutate(target, 50_000, seed=3, report=lambda s: None)
    assert target.inputs == 50_000
    assert target.alive()
    assert target.host.blocked_count > 40_000
    assert len(target.hs.registrations) <= target.hs.config.max_registrations_per_ip

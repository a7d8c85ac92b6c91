"""The failure counter the SpacesyncSlotsFailingToSync alert takes increase() of exists at 0 for every problem:
a child created at its first failure would show as 1 in its first scrape, an increase Prometheus cannot see."""

from __future__ import annotations

from prometheus_client import REGISTRY

from spacesync.common.exchange import ConnectionProblem
from spacesync.exchange_writer import metrics


def test_every_problem_counts_failures_from_zero() -> None:
    assert metrics.FAILED is not None
    for problem in ConnectionProblem:
        value = REGISTRY.get_sample_value("spacesync_writer_failures_total", {"problem": problem.value})
        assert value is not None, problem

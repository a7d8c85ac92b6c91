"""Everything one simulator instance holds in memory, and its metrics (a registry per instance)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter

from spacesync.exchange_simulator.auth import Authenticator
from spacesync.exchange_simulator.calendar import Calendars
from spacesync.exchange_simulator.faults import ConcurrencyGate, Faults
from spacesync.exchange_simulator.notifications import Subscriptions
from spacesync.exchange_simulator.seed import Seed


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = PromCounter(
            "ews_simulator_requests_total", "EWS requests by operation and outcome (NoError, an error code, "
            "a fault code, http_401, http_503, http_500, dropped)", ["operation", "outcome"], registry=self.registry)
        self.latency = Histogram(
            "ews_simulator_request_seconds", "Time to answer an EWS request, by operation", ["operation"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry)
        self.faults = PromCounter(
            "ews_simulator_faults_injected_total", "Injected faults by kind", ["kind"], registry=self.registry)


@dataclass
class SimulatorState:
    seed: Seed
    calendars: Calendars
    authenticator: Authenticator
    subscriptions: Subscriptions
    faults: Faults = field(default_factory=Faults)
    gate: ConcurrencyGate = field(default_factory=ConcurrencyGate)
    metrics: Metrics = field(default_factory=Metrics)
    # Per-operation counts the admin API shows (operation -> count), beside the Prometheus series.
    operation_counts: Counter[str] = field(default_factory=Counter)
    # Called with (operation, envelope bytes) for every EWS answer: tests validate them against the schema.
    response_observers: list[Callable[[str, bytes], None]] = field(default_factory=list)

    @classmethod
    def from_seed(cls, seed: Seed) -> SimulatorState:
        calendars = Calendars()
        for mailbox in seed.mailboxes:
            calendars.add_mailbox(mailbox.smtp)
        subscriptions = Subscriptions()
        calendars.listeners.append(subscriptions.publish)
        return cls(seed, calendars, Authenticator(seed.accounts), subscriptions)

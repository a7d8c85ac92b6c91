"""The exchange-writer's own Prometheus metrics (EWS requests and latency come from the gateway)."""

from prometheus_client import Counter, Gauge, Histogram

from spacesync.common.exchange import ConnectionProblem

SYNC_LAG = Histogram(
    "spacesync_writer_sync_lag_seconds", "From the booking change (event time) to its appointment written",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900))
SLOTS = Gauge("spacesync_writer_slots", "Slots the writer has a record of, by sync state", ["state"])
STEPS = Counter("spacesync_writer_steps_total", "Exchange steps per slot by kind and outcome", ["step", "outcome"])
RETRIES = Counter("spacesync_writer_retries_total", "Slot passes that will be retried, by problem", ["problem"])
FAILED = Counter("spacesync_writer_failures_total", "Slots that failed for good (until settings change)",
                 ["problem"])
# From 0: a child born at its first increment shows as 1 in its first scrape, an increase() cannot see (alerts).
for _problem in ConnectionProblem:
    FAILED.labels(_problem.value)
PUBLISHED = Counter("spacesync_writer_outcomes_total", "exchange.sync events written to the outbox", ["type"])
DUE = Gauge("spacesync_writer_bookings_due", "Bookings waiting for a pass (new changes or retries)")

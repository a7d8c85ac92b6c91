"""The availability-service's own Prometheus metrics (DLQ and FastStream consumer metrics come from libs/common)."""

from prometheus_client import Counter, Gauge, Histogram

FOLDED = Counter("spacesync_availability_events_folded_total", "Valid events folded, by ce_type", ["type"])
STALE = Counter("spacesync_availability_events_stale_total",
                "Folded events that changed nothing: duplicates, older versions or sequences", ["topic"])
EVENT_AGE = Histogram(
    "spacesync_availability_event_age_seconds",
    "From the event's ce_time to its fold (up to 64 evenly spread events of each batch)", ["topic"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))
CONSUMER_LAG = Gauge("spacesync_availability_consumer_lag",
                     "Records on the topic not yet committed by the consumer group (end offset - committed)",
                     ["topic"])

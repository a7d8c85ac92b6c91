"""The exchange-poller's own Prometheus metrics (EWS requests and latency come from the gateway)."""

from prometheus_client import Counter, Gauge, Histogram

ROOMS = Gauge("spacesync_poller_rooms", "Rooms watched, by read mode and notification mode",
              ["read_mode", "notification_mode"])
RECONCILIATION = Histogram(
    "spacesync_poller_reconciliation_seconds", "Duration of a full reconciliation (every room read once)",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800))
READ_ERRORS = Counter("spacesync_poller_read_errors_total", "Room reads that failed, by problem", ["problem"])
READS = Counter("spacesync_poller_reads_total", "Room reads, by read mode and trigger", ["read_mode", "trigger"])
PICTURE_AGE = Gauge("spacesync_poller_picture_age_seconds",
                    "Seconds since the room's busy picture was last read from Exchange successfully (never read: "
                    "since it is watched)", ["space_id"])
PUBLISHED = Counter("spacesync_poller_pictures_published_total", "freebusy.changed events written to the outbox",
                    ["kind"])
ACTIVE = Gauge("spacesync_poller_active", "1 while this instance is the active poller (holds the lock, consumes "
               "catalog.events, reads Exchange); 0 on a standby")

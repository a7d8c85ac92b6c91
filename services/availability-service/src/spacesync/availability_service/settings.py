"""availability-service configuration (environment variables, prefix SPACESYNC_)."""

from pydantic import Field, SecretStr

from spacesync.common.settings import EventServiceSettings


class AvailabilitySettings(EventServiceSettings):
    http_port: int = 8084
    schema_name: str = "availability"
    event_source: str = "/spacesync/availability-service"  # it publishes nothing; EventServiceSettings asks
    consumer_group: str = "availability-service"
    admin_token: SecretStr
    max_days: int = Field(default=31, ge=1, le=366, description="Longest date range one request may ask for")
    fold_batch_records: int = Field(default=5000, ge=1, description="Most records folded in one transaction")
    fold_connections: int = Field(
        default=1, ge=1, le=16,
        description="Transactions a batch of bookings is folded in at once (for a Postgres with cores to spare; "
                    "no measurable gain on the 2-core machine, where the service's own CPU is the limit)")
    fold_consumers: int = Field(
        default=2, ge=1, le=16,
        description="Kafka consumers of booking.events in each process (one group): one parses its batch while "
                    "another's is in Postgres")
    lag_interval_seconds: float = Field(default=10.0, gt=0, description="Consumer lag is measured this often")

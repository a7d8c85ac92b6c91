"""booking-service configuration (environment variables, prefix SPACESYNC_)."""

from pydantic import Field, SecretStr

from spacesync.common.exchange import GatewaySettings
from spacesync.common.secrets import SecretKeys
from spacesync.common.settings import EventServiceSettings


class BookingServiceSettings(EventServiceSettings):
    http_port: int = 8081
    schema_name: str = "booking"
    event_source: str = "/spacesync/booking-service"
    consumer_group: str = "booking-service"
    admin_token: SecretStr
    secret_keys: SecretKeys  # the Exchange passwords in Postgres and in events
    exchange: GatewaySettings = Field(default_factory=GatewaySettings)  # SPACESYNC_EXCHANGE_*

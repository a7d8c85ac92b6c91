"""booking-service configuration (environment variables, prefix SPACESYNC_)."""

from pydantic import Field, SecretStr, field_validator

from spacesync.common.exchange import GatewaySettings
from spacesync.common.secrets import SecretBox
from spacesync.common.settings import ServiceSettings


class BookingServiceSettings(ServiceSettings):
    http_port: int = 8081
    schema_name: str = "booking"
    admin_token: SecretStr
    # Fernet keys (comma-separated, the first encrypts) for the Exchange passwords in Postgres and in events.
    secret_keys: SecretStr
    exchange: GatewaySettings = Field(default_factory=GatewaySettings)  # SPACESYNC_EXCHANGE_*
    event_source: str = "/spacesync/booking-service"
    consumer_group: str = "booking-service"
    create_topics: bool = True
    outbox_batch_size: int = 500
    outbox_poll_interval_seconds: float = 1.0

    @field_validator("secret_keys")
    @classmethod
    def _usable_keys(cls, keys: SecretStr) -> SecretStr:
        SecretBox(keys)  # SecretError (a ValueError) says what is wrong, never the key
        return keys

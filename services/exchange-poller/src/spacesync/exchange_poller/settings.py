"""exchange-poller configuration (environment variables, prefix SPACESYNC_)."""

from pydantic import Field

from spacesync.common.exchange import GatewaySettings
from spacesync.common.exchange.notifications import WatchSettings
from spacesync.common.secrets import SecretKeys
from spacesync.common.settings import EventServiceSettings


class PollerSettings(EventServiceSettings):
    http_port: int = 8083
    schema_name: str = "poller"
    event_source: str = "/spacesync/exchange-poller"
    consumer_group: str = "exchange-poller"
    secret_keys: SecretKeys  # they open the Exchange passwords
    horizon_days: int = Field(default=120, ge=1, le=730,
                              description="The busy picture covers yesterday to this many days ahead")
    reconcile_interval_seconds: float = Field(
        default=300.0, gt=0, description="Every room is read this often, notifications or not (the safety net)")
    poll_interval_seconds: float = Field(
        default=60.0, gt=0, description="Rooms without notifications (refused to delegate access, failing, or "
                                        "notifications off) are read this often")
    concurrency: int = Field(default=16, ge=1, description="Room reads in flight (all servers)")
    debounce_seconds: float = Field(default=0.5, ge=0, description="Changes of a room within this time: one read")
    standby_retry_seconds: float = Field(
        default=2.0, gt=0, description="A standby instance tries for the active instance's lock this often")
    notifications: bool = Field(default=True, description="Subscribe to calendar notifications (streaming or pull)")
    exchange: GatewaySettings = Field(default_factory=GatewaySettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)  # SPACESYNC_EXCHANGE_WATCH_*

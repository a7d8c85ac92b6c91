"""exchange-writer configuration (environment variables, prefix SPACESYNC_)."""

import socket
from typing import Literal

from pydantic import Field

from spacesync.common.exchange import GatewaySettings
from spacesync.common.secrets import SecretKeys
from spacesync.common.settings import EventServiceSettings


class WriterSettings(EventServiceSettings):
    http_port: int = 8082
    schema_name: str = "writer"
    event_source: str = "/spacesync/exchange-writer"
    consumer_group: str = "exchange-writer"
    secret_keys: SecretKeys  # they open the Exchange passwords
    concurrency: int = Field(default=32, ge=1, description="Bookings written in parallel (all servers)")
    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="Stable across restarts of one replica (the pod name): a restarted writer takes back its own "
                    "leases at once instead of waiting for them to expire")
    lease_seconds: float = Field(default=120.0, gt=0, description="A pass not finished by then is taken over")
    pairing_grace_seconds: float = Field(
        default=5.0, ge=0, description="Bookings changed this long before a pairing are pushed without the import")
    lookup_before_create: Literal["always", "unrecorded"] = Field(
        default="always",
        description="always: look for an appointment stamped with the slot before every CreateItem (safe after a "
                    "restore or a replay into a new database); unrecorded: only where this database cannot rule one "
                    "out (a create that was interrupted, an import, a previous pairing) - one Exchange call "
                    "instead of two per new booking, for a writer database that is never restored or rebuilt")
    poll_interval_seconds: float = Field(default=0.5, gt=0, description="Looks for due retries this often")
    exchange: GatewaySettings = Field(default_factory=GatewaySettings)

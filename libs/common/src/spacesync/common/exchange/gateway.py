"""ExchangeGateway: async facade over exchangelib (which is synchronous). INTERFACE - being implemented."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from spacesync.common.exchange.model import (
    Appointment,
    CalendarEntry,
    ConnectionReport,
    ExchangeServer,
    ItemRef,
)


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACESYNC_EXCHANGE_", extra="ignore")

    verify_tls: bool = True
    ca_bundle: str | None = Field(default=None, description="PEM file of CAs to trust instead of the system's")
    max_connections: int = Field(default=4, ge=1, description="HTTP sessions (parallel calls) per server")
    worker_threads: int = Field(default=32, ge=1, description="Threads running exchangelib calls, all servers")
    timeout_seconds: float = Field(default=30.0, gt=0, description="Per HTTP request")
    test_timeout_seconds: float = Field(default=4.0, gt=0, description="Connection test and 'Save & Test'")


class ExchangeGateway:
    def __init__(self, settings: GatewaySettings | None = None) -> None:
        self.settings = settings or GatewaySettings()

    async def test_connection(self, server: ExchangeServer) -> ConnectionReport:
        raise NotImplementedError

    async def check_resource(self, server: ExchangeServer, mailbox: str) -> None:
        raise NotImplementedError

    async def find_stamped(self, server: ExchangeServer, mailbox: str, slot_id: str) -> list[ItemRef]:
        raise NotImplementedError

    async def create(self, server: ExchangeServer, mailbox: str, appointment: Appointment) -> ItemRef:
        raise NotImplementedError

    async def update(self, server: ExchangeServer, mailbox: str, ref: ItemRef, appointment: Appointment) -> ItemRef:
        raise NotImplementedError

    async def delete(self, server: ExchangeServer, mailbox: str, ref: ItemRef) -> None:
        raise NotImplementedError

    async def view(self, server: ExchangeServer, mailbox: str, start: datetime, end: datetime) -> list[CalendarEntry]:
        raise NotImplementedError

    def forget(self, server: ExchangeServer) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

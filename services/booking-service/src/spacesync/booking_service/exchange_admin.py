"""A location's Outlook/Exchange connection: save (tested first when the connection changes), show, disconnect.

Exchange calls run before and outside the database transaction: a slow or failing server never holds a lock.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from prometheus_client import Counter

from spacesync.booking_service import exchange_store as store
from spacesync.booking_service.api.models import Confirmation, ExchangeConnected, ExchangeSettingsIn
from spacesync.booking_service.catalog_store import exchange_connection, fetch_one, settings_view
from spacesync.booking_service.exchange_errors import CheckFailed, Conflict, InvalidSettings, NotFound
from spacesync.booking_service.exchange_settings import InsecureBasic, PasswordRequired, merge_settings
from spacesync.common.db import Database
from spacesync.common.events.catalog import ExchangeConnection
from spacesync.common.exchange import ConnectionReport, ExchangeError, ExchangeGateway, ExchangeServer
from spacesync.common.secrets import SecretBox, SecretError

log = logging.getLogger(__name__)
CHECKS = Counter("spacesync_exchange_admin_checks_total",
                 "Location connection tests and space 'Save & Test' checks by outcome", ["check", "outcome"])


def utc_now() -> datetime:
    return datetime.now(UTC)


class ExchangeAdmin:
    """What the Outlook/Exchange admin use cases share: the database, the gateway, the key box, the clock."""

    def __init__(self, db: Database, gateway: ExchangeGateway, secrets: SecretBox,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self._db = db
        self._gateway = gateway
        self._secrets = secrets
        self._clock = clock


class ExchangeConnections(ExchangeAdmin):

    async def save(self, location_id: UUID, request: ExchangeSettingsIn) -> ExchangeConnected:
        async with self._db.acquire() as conn:
            row = await fetch_one(conn, "locations", location_id)
        if row is None:
            raise NotFound(f"No location {location_id}.")
        current = exchange_connection(row)
        token = self._secrets.encrypt(request.password.get_secret_value()) if request.password else None
        try:
            merged = merge_settings(current, request.model_dump(exclude={"password"}), token, self._clock())
        except PasswordRequired:
            raise InvalidSettings("body.password", "is required to connect (no password is stored yet)") from None
        except InsecureBasic as insecure:
            raise InvalidSettings("body.auth_type", str(insecure)) from None
        settings = merged.settings
        if not merged.changed:
            return ExchangeConnected(message="Nothing changed.", settings=settings_view(location_id, settings))
        message = "Saved. The connection settings did not change, so they were not tested again."
        if merged.needs_test:
            message = (await self._test(location_id, settings)).message
            settings = settings.model_copy(update={"verified_at": self._clock()})
        async with self._db.acquire() as conn, conn.transaction():
            if await store.save_connection(conn, location_id, settings) is None:
                raise NotFound(f"No location {location_id}.")
        if current is not None:
            self._forget(current, settings)
        log.info("exchange settings saved", extra={"location_id": str(location_id), "username": settings.username,
                                                   "server": settings.server, "tested": merged.needs_test})
        return ExchangeConnected(message=message, settings=settings_view(location_id, settings))

    async def show(self, location_id: UUID) -> ExchangeConnection:
        async with self._db.acquire() as conn:
            row = await fetch_one(conn, "locations", location_id)
        if row is None:
            raise NotFound(f"No location {location_id}.")
        settings = exchange_connection(row)
        if settings is None:
            raise NotFound(f"Location {row['name']!r} is not connected to Outlook/Exchange.")
        return settings

    async def disconnect(self, location_id: UUID) -> Confirmation:
        async with self._db.acquire() as conn, conn.transaction():
            row = await store.lock_location(conn, location_id, exclusive=True)
            if row is None:
                raise NotFound(f"No location {location_id}.")
            current = exchange_connection(row)
            if current is None:
                raise NotFound(f"Location {row['name']!r} is not connected to Outlook/Exchange.")
            paired = await store.paired_space_names(conn, location_id)
            if paired:
                raise Conflict("spaces-paired", f"Spaces of {row['name']!r} are still paired with Exchange "
                                                f"resources ({', '.join(paired)}): disconnect them first.")
            await store.save_connection(conn, location_id, None)
        self._forget(current, None)
        log.info("exchange settings removed", extra={"location_id": str(location_id)})
        return Confirmation(message=f"{row['name']} is no longer connected to {current.server}.")

    async def _test(self, location_id: UUID, settings: ExchangeConnection) -> ConnectionReport:
        try:
            server = ExchangeServer.from_connection(settings, self._secrets)
        except SecretError:
            raise InvalidSettings("body.password", "the stored password cannot be decrypted with the configured "
                                                   "keys (SPACESYNC_SECRET_KEYS changed?): enter it again") from None
        try:
            report = await self._gateway.test_connection(server)
        except ExchangeError as error:
            CHECKS.labels("connection", error.problem.value).inc()
            log.info("exchange connection test failed", extra={
                "location_id": str(location_id), "server": server.host, "username": server.username,
                "problem": error.problem.value})
            raise CheckFailed("connection", error) from None
        CHECKS.labels("connection", "ok").inc()
        return report

    def _forget(self, old: ExchangeConnection, new: ExchangeConnection | None) -> None:
        """Drops the gateway's cached sessions for credentials no longer used."""
        if new is not None and new.same_connection(old):
            return
        # SecretError: made with a key no longer configured, so nothing can have been cached with it.
        with contextlib.suppress(SecretError):
            self._gateway.forget(ExchangeServer.from_connection(old, self._secrets))

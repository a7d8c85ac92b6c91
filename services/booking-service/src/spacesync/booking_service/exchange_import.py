"""'Run the Import' of a paired space: compare its future bookings with the resource calendar and, unless a dry run,
ask the exchange-writer (space.import_requested) to create what is missing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from spacesync.booking_service import exchange_store as store
from spacesync.booking_service.api.models import ImportAnswer, ImportCollision
from spacesync.booking_service.exchange_admin import ExchangeAdmin, utc_now
from spacesync.booking_service.exchange_errors import Conflict, ExchangeUnavailable
from spacesync.booking_service.exchange_pairing import connected_space, server_for
from spacesync.booking_service.import_plan import ImportPlan, plan_import
from spacesync.common.db import Database
from spacesync.common.events.catalog import ImportRequest
from spacesync.common.exchange import CalendarEntry, ExchangeError, ExchangeGateway
from spacesync.common.secrets import SecretBox

log = logging.getLogger(__name__)


class ExchangeImport(ExchangeAdmin):
    def __init__(self, db: Database, gateway: ExchangeGateway, secrets: SecretBox, *, source: str,
                 clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(db, gateway, secrets, clock)
        self._source = source  # booking-service's ce_source: part of its appointments' stamps

    async def run(self, space_id: UUID, *, dry_run: bool) -> ImportAnswer:
        space, location, connection = await connected_space(self._db, space_id)
        resource: str | None = space["exchange_resource"]
        if resource is None:
            raise Conflict("space-not-paired", f"Pair {space['name']!r} with an Exchange resource first "
                                               "(Save & Test), then run the import.")
        now = self._clock()
        async with self._db.acquire() as conn:
            slots = await store.future_slots(conn, space_id, now)
        calendar: list[CalendarEntry] = []
        if slots:  # the window that covers them: at most the booking horizon, within Exchange's 2-year view limit
            try:
                calendar = await self._gateway.view(server_for(location, connection, self._secrets), resource,
                                                    min(s.start for s in slots), max(s.end for s in slots))
            except ExchangeError as error:
                raise ExchangeUnavailable(error) from None
        plan = plan_import(slots, calendar, self._source)
        request_id = None if dry_run else await self._request(space_id, location["id"], resource, now)
        return _answer(space_id, resource, request_id, len(slots), plan)

    async def _request(self, space_id: UUID, location_id: UUID, resource: str, now: datetime) -> UUID:
        request_id = uuid.uuid4()
        async with self._db.acquire() as conn, conn.transaction():
            current = await conn.fetchval("SELECT exchange_resource FROM spaces WHERE id = $1 FOR SHARE", space_id)
            if current != resource:
                raise Conflict("pairing-changed", "The space's pairing changed meanwhile; run the import again.")
            await store.request_import(conn, ImportRequest(
                space_id=str(space_id), location_id=str(location_id), request_id=str(request_id),
                exchange_resource=resource, requested_at=now))
        log.info("import requested", extra={"space_id": str(space_id), "request_id": str(request_id)})
        return request_id


def _answer(space_id: UUID, resource: str, request_id: UUID | None, future: int, plan: ImportPlan) -> ImportAnswer:
    collisions = [ImportCollision(
        slot_id=c.slot.slot_id, booking_id=c.slot.booking_id, slot_start=c.slot.start, slot_end=c.slot.end,
        subject=c.appointment.subject, organizer=c.appointment.organizer, start=c.appointment.start,
        end=c.appointment.end, busy_status=c.appointment.busy_status) for c in plan.collisions]
    counts = (f"{plan.would_create} booking time(s) to create in {resource}, {plan.already_there} already there, "
              f"{len(collisions)} collision(s) with meetings booked in Outlook.")
    message = (f"Dry run: {counts}" if request_id is None else
               f"Import requested: {counts} The exchange-writer is creating them.")
    return ImportAnswer(space_id=space_id, resource=resource, dry_run=request_id is None, request_id=request_id,
                        future_slots=future, would_create=plan.would_create, already_there=plan.already_there,
                        collisions=collisions, message=message)

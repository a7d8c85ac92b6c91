"""Public API for patrons, panels and other services: spaces and bookings."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Response, status
from prometheus_client import Counter

from spacesync.booking_service import catalog_store
from spacesync.booking_service.api.models import BookingCreate, BookingPatch, BookingView, PublicSpace
from spacesync.booking_service.bookings import (
    BookingClosed,
    BookingError,
    BookingNotFound,
    BookingService,
    BusyInOutlook,
    InvalidBooking,
    SlotConflict,
    VersionMismatch,
)
from spacesync.common.db import Database
from spacesync.common.http import FieldError, Problem
from spacesync.common.http.problems import PROBLEM_RESPONSES

BOOKINGS = Counter("spacesync_bookings_total", "Booking requests by operation and outcome",
                   ["operation", "outcome"])
IfMatch = Annotated[str | None, Header(description='Optional: the ETag of the version you changed, e.g. "3"')]


def public_router(db: Database, bookings: BookingService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["public"], responses=PROBLEM_RESPONSES)

    @router.get("/spaces", response_model=list[PublicSpace], summary="Bookable spaces")
    async def list_spaces(location_id: UUID | None = None) -> list[PublicSpace]:
        async with db.acquire() as conn:
            rows = await catalog_store.public_spaces(conn, location_id)
        return [PublicSpace.model_validate(dict(row)) for row in rows]

    @router.post("/bookings", status_code=status.HTTP_201_CREATED, response_model=BookingView,
                 summary="Book one or more date/time slots")
    async def create_booking(body: BookingCreate, response: Response) -> BookingView:
        view = await _answer(response, "create", bookings.create(body))
        response.headers["Location"] = f"/v1/bookings/{view.id}"
        return view

    @router.get("/bookings/{booking_id}", response_model=BookingView,
                summary="Booking details, with each slot's Outlook/Exchange Sync ID")
    async def get_booking(booking_id: UUID, response: Response) -> BookingView:
        return await _answer(response, None, bookings.get(booking_id))

    @router.patch("/bookings/{booking_id}", response_model=BookingView,
                  summary="Change patron details, nickname, or the slots (move, add, remove)")
    async def change_booking(booking_id: UUID, body: BookingPatch, response: Response,
                             if_match: IfMatch = None) -> BookingView:
        return await _answer(response, "update", bookings.change(booking_id, body, _version(if_match)))

    @router.post("/bookings/{booking_id}/cancel", response_model=BookingView,
                 summary="Cancel the whole booking")
    async def cancel_booking(booking_id: UUID, response: Response, if_match: IfMatch = None) -> BookingView:
        return await _answer(response, "cancel", bookings.cancel(booking_id, _version(if_match)))

    @router.post("/bookings/{booking_id}/slots/{slot_id}/cancel", response_model=BookingView,
                 summary="Cancel one date/time of a booking")
    async def cancel_slot(booking_id: UUID, slot_id: UUID, response: Response,
                          if_match: IfMatch = None) -> BookingView:
        return await _answer(response, "cancel", bookings.cancel(booking_id, _version(if_match), slot_id))

    return router


async def _answer(response: Response, operation: str | None, outcome: Awaitable[BookingView]) -> BookingView:
    """The booking (with its version as ETag), or the outcome as problem+json; counted per operation."""
    try:
        view = await outcome
    except BookingError as error:
        label, problem = _problem(error)
        if operation:
            BOOKINGS.labels(operation, label).inc()
        raise problem from None
    if operation:
        BOOKINGS.labels(operation, "ok").inc()
    response.headers["ETag"] = f'"{view.version}"'
    return view


def _version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise Problem(400, "Bad Request", f"If-Match must be an ETag such as \"3\", not {if_match!r}")
    return int(value)


def _problem(error: BookingError) -> tuple[str, Problem]:
    """A booking outcome as (metric label, problem+json)."""
    match error:
        case BookingNotFound():
            return "not_found", Problem(404, "Not Found", "No such booking (or slot).")
        case InvalidBooking(violations=violations):
            return "invalid", Problem(422, "Invalid booking", str(error), type="/problems/invalid-booking",
                                      errors=[FieldError(field=f"body.{v.field}", reason=v.reason)
                                              for v in violations])
        case SlotConflict(conflicts=conflicts):
            times = [f"{c.space_name} {c.start:%Y-%m-%dT%H:%MZ}-{c.end:%H:%MZ}" for c in conflicts]
            # Empty when the other booking was cancelled between our failed commit and the look-up.
            detail = ("Already booked: " + ", ".join(times)) if times else (
                "The requested time was booked by someone else meanwhile; try again.")
            return "conflict", Problem(409, "Slot already booked", detail, type="/problems/slot-conflict",
                                       conflicts=[{"space_id": str(c.space_id), "start": c.start.isoformat(),
                                                   "end": c.end.isoformat()} for c in conflicts])
        case BusyInOutlook(busy=busy):
            # Times and the room only: the organizer of an Outlook meeting is nothing for a public answer.
            reasons = [(f"body.slots.{b.slot}", f"{b.space_name} is BUSY in Outlook from {b.start:%Y-%m-%dT%H:%MZ} "
                                                f"to {b.end:%Y-%m-%dT%H:%MZ}") for b in busy]
            return "busy_in_outlook", Problem(
                409, "BUSY in Outlook", "; ".join(reason for _, reason in reasons), type="/problems/busy-in-outlook",
                errors=[FieldError(field=field, reason=reason) for field, reason in reasons],
                busy=[{"slot": b.slot, "space_id": str(b.space_id), "start": b.start.isoformat(),
                       "end": b.end.isoformat()} for b in busy])
        case BookingClosed(reason=reason):
            return "closed", Problem(409, "Booking closed", reason, type="/problems/booking-closed")
        case VersionMismatch(current=current):
            return "version_mismatch", Problem(
                412, "Precondition Failed", f"The booking changed meanwhile; it is now at version {current}.",
                headers={"ETag": f'"{current}"'})
    raise AssertionError(f"unmapped booking error {error!r}")

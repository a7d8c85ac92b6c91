"""Admin API for Outlook/Exchange: a location's connection, a space's pairing and 'Run the Import' (bearer token)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response, status

from spacesync.booking_service.api.models import (
    Confirmation,
    ExchangeConnected,
    ExchangeSettingsIn,
    ExchangeSettingsView,
    ImportAnswer,
    Paired,
    PairingIn,
    PairingView,
)
from spacesync.booking_service.catalog_store import settings_view
from spacesync.booking_service.exchange_admin import ExchangeConnections
from spacesync.booking_service.exchange_errors import (
    CheckFailed,
    Conflict,
    ExchangeAdminError,
    ExchangeUnavailable,
    InvalidSettings,
    NotFound,
)
from spacesync.booking_service.exchange_import import ExchangeImport
from spacesync.booking_service.exchange_pairing import ExchangePairing
from spacesync.common.http import FieldError, Problem
from spacesync.common.http.problems import PROBLEM_RESPONSES

T = TypeVar("T")
DryRun = Annotated[bool, Query(description="true (default): only compare; false: also ask the exchange-writer "
                                           "to import")]


def exchange_router(connections: ExchangeConnections, pairing: ExchangePairing, importer: ExchangeImport,
                    require_admin: Any) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["admin: Outlook/Exchange"], dependencies=[Depends(require_admin)],
                       responses={**PROBLEM_RESPONSES, 502: {**PROBLEM_RESPONSES[409], "description": "Exchange "
                                                               "could not answer"}})

    @router.put("/locations/{location_id}/exchange", response_model=ExchangeConnected,
                summary="Save Outlook/Exchange settings (the connection is tested first when it changes)")
    async def save_settings(location_id: UUID, body: ExchangeSettingsIn) -> ExchangeConnected:
        return await _answer(connections.save(location_id, body))

    @router.get("/locations/{location_id}/exchange", response_model=ExchangeSettingsView,
                summary="Outlook/Exchange settings (never the password)")
    async def get_settings(location_id: UUID) -> ExchangeSettingsView:
        return settings_view(location_id, await _answer(connections.show(location_id)))

    @router.delete("/locations/{location_id}/exchange", response_model=Confirmation,
                   summary="Disconnect the location from Outlook/Exchange (its spaces must be disconnected first)")
    async def disconnect(location_id: UUID) -> Confirmation:
        return await _answer(connections.disconnect(location_id))

    @router.put("/spaces/{space_id}/exchange", response_model=Paired,
                summary="Save & Test: pair the space with an Exchange resource mailbox")
    async def pair(space_id: UUID, body: PairingIn) -> Paired:
        return await _answer(pairing.pair(space_id, body.resource))

    @router.get("/spaces/{space_id}/exchange", response_model=PairingView,
                summary="The space's pairing and how its future bookings are synced")
    async def get_pairing(space_id: UUID) -> PairingView:
        return await _answer(pairing.state(space_id))

    @router.delete("/spaces/{space_id}/exchange", response_model=Paired,
                   summary="Disconnect the space from its resource (its appointments are removed from Exchange)")
    async def unpair(space_id: UUID) -> Paired:
        return await _answer(pairing.unpair(space_id))

    @router.post("/spaces/{space_id}/exchange/import", response_model=ImportAnswer,
                 responses={202: {"model": ImportAnswer, "description": "Import requested (dry_run=false)"}},
                 summary="Run the Import: compare the space's future bookings with its resource calendar")
    async def run_import(space_id: UUID, response: Response, dry_run: DryRun = True) -> ImportAnswer:
        answer = await _answer(importer.run(space_id, dry_run=dry_run))
        if not dry_run:
            response.status_code = status.HTTP_202_ACCEPTED
        return answer

    return router


async def _answer(outcome: Awaitable[T]) -> T:
    try:
        return await outcome
    except ExchangeAdminError as error:
        raise _problem(error) from None


def _problem(error: ExchangeAdminError) -> Problem:
    match error:
        case NotFound():
            return Problem(404, "Not Found", error.detail)
        case Conflict(kind=kind):
            return Problem(409, "Conflict", error.detail, type=f"/problems/{kind}")
        case InvalidSettings(field=field, reason=reason):
            return Problem(422, "Invalid request", error.detail, type="/problems/invalid-request",
                           errors=[FieldError(field=field, reason=reason)])
        case CheckFailed(check=check, error=failure):
            title = "Connection test failed" if check == "connection" else "Save & Test failed"
            return Problem(422, title, failure.message, type=f"/problems/exchange-{check}",
                           problem=failure.problem.value)
        case ExchangeUnavailable(error=failure):
            return Problem(502, "Exchange unavailable", failure.message, type="/problems/exchange-unavailable",
                           problem=failure.problem.value)
    raise AssertionError(f"unmapped Exchange admin error {error!r}")

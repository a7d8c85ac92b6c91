"""Errors as RFC 9457 problem+json: what went wrong, and for invalid input, which field and why."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    field: str
    reason: str


class ProblemBody(BaseModel):
    """The problem+json document (RFC 9457) with an `errors` extension for invalid fields."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class Problem(Exception):
    """Raise from a route to answer with a problem+json body."""

    def __init__(self, status: int, title: str, detail: str | None = None, *,
                 type: str = "about:blank", errors: Sequence[FieldError] | None = None,
                 headers: dict[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail or title)
        self.body = ProblemBody(type=type, title=title, status=status, detail=detail,
                                errors=list(errors) if errors else None)
        self.headers = headers
        self.extensions = extensions

    def response(self, request: Request) -> JSONResponse:
        content = self.body.model_copy(update={"instance": request.url.path}).model_dump(exclude_none=True)
        content.update(self.extensions)
        return JSONResponse(content, status_code=self.body.status, media_type=PROBLEM_JSON,
                            headers=self.headers)


def field_errors(errors: Sequence[Any]) -> list[FieldError]:
    """pydantic/FastAPI error dicts to field + reason, e.g. `body.slots.0.start: Input should be ...`."""
    out = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ())) or "body"
        out.append(FieldError(field=where, reason=str(error.get("msg", "invalid"))))
    return out


async def _validation_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = "; ".join(f"{e.get('msg')} ({e.get('ctx', {}).get('error', '')})" for e in errors
                           if e.get("type") == "json_invalid")
        return Problem(400, "Malformed JSON", f"The request body is not valid JSON: {detail}",
                       type="/problems/malformed-json").response(request)
    fields = field_errors(errors)
    detail = "; ".join(f"{f.field}: {f.reason}" for f in fields)
    return Problem(422, "Invalid request", detail, type="/problems/invalid-request",
                   errors=fields).response(request)


async def _http_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return Problem(exc.status_code, _reason(exc.status_code), str(exc.detail),
                   headers=dict(exc.headers or {})).response(request)


async def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return exc.response(request)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path}, exc_info=exc)
    return Problem(500, "Internal Server Error", "The request could not be completed; it was logged.",
                   ).response(request)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(Exception, _unexpected)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemBody, "content": {PROBLEM_JSON: {}}, "description": description}
    for status, description in (
        (400, "Malformed request"), (401, "Missing or wrong token"), (404, "Not found"),
        (409, "Conflict"), (412, "Version mismatch"), (422, "Invalid input"),
    )
}

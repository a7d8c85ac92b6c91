"""The JSON admin API under /admin: look into the calendars, act as Outlook, count requests, inject faults.

Tests, benchmarks and the demo drive the simulator through it. Every error is RFC 9457 problem+json
(`type`, `title`, `status`, `detail`, `instance`, and for invalid input `errors: [{field, reason}]`, fields named
`body.<path>`, `query.<name>` or `path.<name>`); a refused request changes nothing. Request bodies must be
`application/json` (a browser cannot send that cross-origin without a preflight this API never answers). With an
admin token configured every /admin request needs `Authorization: Bearer <token>`.

Endpoints (ids and SMTP addresses in paths are percent-encoded: item ids are base64 and may contain `/`):

    GET    /admin/mailboxes                                   the seed's mailboxes with their item counts
    GET    /admin/mailboxes/{smtp}                            one mailbox
    GET    /admin/mailboxes/{smtp}/items?start=&end=          items (and, with a window, the occurrences in it)
    GET    /admin/mailboxes/{smtp}/items/{item_id}            one item
    POST   /admin/mailboxes/{smtp}/meetings                   Outlook books a meeting -> 201 + the item
    PATCH  /admin/mailboxes/{smtp}/meetings/{item_id}         Outlook moves / edits it (If-Match: change key)
    DELETE /admin/mailboxes/{smtp}/meetings/{item_id}         Outlook cancels it -> 204
    GET    /admin/requests                                    EWS requests per operation and outcome
    POST   /admin/requests/reset                              counters back to zero -> 204
    GET    /admin/faults                                      active faults
    POST   /admin/faults                                      add one (FaultSpec) -> 201 + the fault with its id
    GET    /admin/faults/{id}                                 one fault (hits, remaining)
    DELETE /admin/faults/{id}                                 remove one -> 204
    DELETE /admin/faults                                      remove all -> 204
    GET    /admin/accounts                                    the seed's accounts (no passwords), limits, in flight
    GET    /admin/accounts/{username}/concurrency             an account's concurrency limit
    PUT    /admin/accounts/{username}/concurrency             {"limit": n | null} overrides the seed (null: none)
    DELETE /admin/accounts/{username}/concurrency             back to the seed's max_concurrency -> 204
    POST   /admin/reset                                       empty calendars, no faults, no overrides, counters 0
    POST   /admin/state/save                                  {"path"?: "..."} calendars to a JSON file
    POST   /admin/state/load                                  {"path"?: "..."} calendars from a JSON file
"""

from __future__ import annotations

import hmac
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from spacesync.exchange_simulator import outlook
from spacesync.exchange_simulator.calendar import ItemNotFound, StaleChangeKey
from spacesync.exchange_simulator.faults import PARAMETER_OF, Fault, FaultScope, FaultSpec
from spacesync.exchange_simulator.persistence import (
    ItemView,
    StateFileError,
    is_state_file,
    iso,
    load_state,
    occurrence_json,
    save_state,
)
from spacesync.exchange_simulator.seed import AccountSeed, MailboxSeed
from spacesync.exchange_simulator.state import SimulatorState

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PREFIX = "/admin"
MAX_VIEW = timedelta(days=731)  # Exchange refuses calendar views longer than two years

Model = TypeVar("Model", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    """Raise from a handler to answer with problem+json."""

    def __init__(self, status: int, title: str, detail: str, *, kind: str = "about:blank",
                 errors: Sequence[tuple[str, str]] = (), headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.kind = status, title, detail, kind
        self.errors = list(errors)
        self.headers = dict(headers or {})

    def response(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"type": self.kind, "title": self.title, "status": self.status,
                                "detail": self.detail, "instance": request.path}
        if self.errors:
            body["errors"] = [{"field": name, "reason": reason} for name, reason in self.errors]
        return web.json_response(body, status=self.status, content_type=PROBLEM_JSON, headers=self.headers)


def invalid(errors: Sequence[tuple[str, str]]) -> Problem:
    return Problem(422, "Invalid request", "; ".join(f"{name}: {reason}" for name, reason in errors),
                   kind="/problems/invalid-request", errors=errors)


def not_found(what: str) -> Problem:
    return Problem(404, "Not Found", what, kind="/problems/not-found")


def _field_errors(error: ValidationError, where: str) -> list[tuple[str, str]]:
    found = []
    for entry in error.errors():
        path = ".".join(str(part) for part in (where, *entry["loc"]))
        reason = str(entry["msg"]).removeprefix("Value error, ")
        found.append((path, reason))
    return found


async def _body(request: web.Request, model: type[Model], *, optional: bool = False) -> Model:
    """The request body as `model`: 415 unless JSON, 400 when malformed, 422 naming each bad field."""
    raw = await request.read()
    if optional and not raw.strip():
        return model()
    if request.content_type != "application/json":
        raise Problem(415, "Unsupported Media Type", f"the body must be application/json, not "
                      f"{request.content_type or 'missing'}", kind="/problems/unsupported-media-type")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise Problem(400, "Malformed JSON", f"the request body is not valid JSON: {error}",
                      kind="/problems/malformed-json") from None
    if not isinstance(data, dict):
        raise invalid([("body", f"must be a JSON object, not {type(data).__name__}")])
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise invalid(_field_errors(error, "body")) from None


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


# -- inputs that are not the Outlook meetings ------------------------------------------------------------------


class Window(BaseModel):
    """A calendar-view window from the query string: both or neither, aware ISO times."""

    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime
    end: AwareDatetime

    @field_validator("start", "end")
    @classmethod
    def _range(cls, value: datetime) -> datetime:
        if not outlook.EARLIEST <= value < outlook.LATEST:
            raise ValueError(f"is out of range ({outlook.EARLIEST.year} to {outlook.LATEST.year - 1})")
        return value

    @field_validator("end")
    @classmethod
    def _after(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if isinstance(start, datetime):
            if value <= start:
                raise ValueError(f"must be after start ({start.isoformat()})")
            if value - start > MAX_VIEW:
                raise ValueError(f"the window may span at most {MAX_VIEW.days} days")
        return value


class ConcurrencyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int | None = Field(ge=1, le=10_000)  # required, may be null: no limit


class StateFileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(default=None, min_length=1, max_length=4096)

    @field_validator("path")
    @classmethod
    def _json_file(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith(".json"):
            raise ValueError("a state file's name ends in .json")
        return value


# -- views --------------------------------------------------------------------------------------------------------


def fault_json(fault: Fault) -> dict[str, Any]:
    """A fault: its spec (with only its kind's parameter), id, hits so far and requests remaining (null: until
    removed)."""
    spec = fault.spec
    view: dict[str, Any] = {
        "id": fault.id, "kind": spec.kind.value, "scope": spec.scope.value, "target": spec.target,
        "operations": sorted(spec.operations) if spec.operations is not None else None, "count": spec.count,
    }
    view.update({name: getattr(spec, name) for name, kind in PARAMETER_OF.items() if kind == spec.kind})
    view.update({"remaining": fault.remaining, "hits": fault.hits, "created": iso(fault.created)})
    return view


class AdminApi:
    """The handlers; each reads or changes the state on the simulator's event loop (no locks needed)."""

    def __init__(self, state: SimulatorState, state_file: Path | None = None) -> None:
        self.state = state
        self.state_file = state_file

    # -- lookups ----------------------------------------------------------------------------------------------

    def _mailbox(self, request: web.Request) -> MailboxSeed:
        smtp = request.match_info["smtp"]
        found = outlook.mailbox(self.state.seed, smtp)
        if found is None:
            raise not_found(f"no mailbox {smtp} in the seed")
        return found

    def _account(self, request: web.Request) -> AccountSeed:
        username = request.match_info["username"]
        found = self.state.authenticator.account(username)
        if found is None:
            raise not_found(f"no account {username} in the seed")
        return found

    def _fault(self, request: web.Request) -> Fault:
        text = request.match_info["fault_id"]
        fault = self.state.faults.get(int(text)) if text.isdigit() else None
        if fault is None:
            raise not_found(f"no active fault {text} (it may have used up its count)")
        return fault

    def _mailbox_json(self, mailbox: MailboxSeed) -> dict[str, Any]:
        return {"smtp": mailbox.smtp, "name": mailbox.name, "kind": mailbox.kind,
                "items": len(self.state.calendars.mailboxes.get(mailbox.smtp, {}))}

    def _concurrency_json(self, account: AccountSeed) -> dict[str, Any]:
        gate = self.state.gate
        return {"account": account.username, "limit": gate.limit_for(account.key, account.max_concurrency),
                "seed_limit": account.max_concurrency, "overridden": account.key in gate.limits,
                "in_flight": gate.current(account.key)}

    # -- mailboxes and items ------------------------------------------------------------------------------------

    async def mailboxes(self, _: web.Request) -> web.Response:
        """GET /admin/mailboxes -> {"mailboxes": [{"smtp", "name", "kind", "items"}]} in seed order."""
        return _json({"mailboxes": [self._mailbox_json(m) for m in self.state.seed.mailboxes]})

    async def mailbox(self, request: web.Request) -> web.Response:
        """GET /admin/mailboxes/{smtp} -> {"smtp", "name", "kind", "items"}; 404 for a mailbox not in the seed."""
        return _json(self._mailbox_json(self._mailbox(request)))

    async def items(self, request: web.Request) -> web.Response:
        """GET /admin/mailboxes/{smtp}/items[?start=&end=]

        Without a window: {"mailbox", "items": [every item, by start]}. With `start` and `end` (aware ISO times,
        end after start, at most two years; `+` in an offset may be sent as %2B or left as a space):
        {"mailbox", "window": {"start", "end"}, "items": [the items with an occurrence in the window],
        "occurrences": [{"id", "item_id", "type" Single|Occurrence, "index", "start", "end", "subject",
        "free_busy", "origin"}]}: what a calendar view for that window shows, series expanded.
        Each item has every field: id, change_key, origin (ews|outlook), times in UTC, organizer, free_busy,
        extended_properties [{"set", "name", "type", "value"}], recurrence, ...
        """
        mailbox = self._mailbox(request)
        query = {name: value.replace(" ", "+") for name, value in request.query.items()}
        if not query:
            items = self.state.calendars.items(mailbox.smtp)
            return _json({"mailbox": mailbox.smtp, "items": [ItemView.of(item).as_json() for item in items]})
        missing = [(f"query.{name}", "give both start and end, or neither") for name in ("start", "end")
                   if name not in query]
        if missing:
            raise invalid(missing)
        try:
            window = Window.model_validate(query)
        except ValidationError as error:
            raise invalid(_field_errors(error, "query")) from None
        occurrences = self.state.calendars.view(mailbox.smtp, window.start, window.end)
        masters = {o.item.id: o.item for o in occurrences}
        return _json({
            "mailbox": mailbox.smtp, "window": {"start": iso(window.start), "end": iso(window.end)},
            "items": [ItemView.of(item).as_json() for item in sorted(masters.values(), key=lambda i: (i.start, i.id))],
            "occurrences": [occurrence_json(o) for o in occurrences],
        })

    async def item(self, request: web.Request) -> web.Response:
        """GET /admin/mailboxes/{smtp}/items/{item_id} -> the item (for an occurrence id: its series)."""
        mailbox = self._mailbox(request)
        item_id = request.match_info["item_id"]
        try:
            item = outlook.find(self.state.calendars, mailbox.smtp, item_id)
        except ItemNotFound:
            raise not_found(f"no item {item_id} in {mailbox.smtp}") from None
        return _json(ItemView.of(item).as_json())

    # -- Outlook's side -----------------------------------------------------------------------------------------

    async def book(self, request: web.Request) -> web.Response:
        """POST /admin/mailboxes/{smtp}/meetings: a meeting booked in Outlook (origin "outlook").

        Body: {"organizer": {"name", "smtp"}, "subject", "start", "end" (aware ISO times, end after start),
        "free_busy": Busy|OOF|WorkingElsewhere|Tentative|Free (default Busy), "location" (default: the mailbox's
        name), "body", "recurrence": {"pattern": daily|weekly, "interval", "weekdays": ["monday", ...],
        "count" | "until" (a date), "time_zone" (IANA, default UTC)}}.
        A weekly series starts on one of its weekdays; a meeting is shorter than the gap between occurrences.
        -> 201, Location: the item's URL, body: the item. Raises CreatedEvent notifications like an EWS write.
        """
        mailbox = self._mailbox(request)
        meeting = await _body(request, outlook.MeetingIn)
        try:
            item = outlook.create_meeting(self.state.calendars, mailbox, meeting)
        except outlook.Invalid as error:
            raise invalid([(f"body.{name}", reason) for name, reason in error.problems]) from None
        location = f"{PREFIX}/mailboxes/{quote(mailbox.smtp)}/items/{quote(item.id, safe='')}"
        return _json(ItemView.of(item).as_json(), status=201, headers={"Location": location})

    async def move(self, request: web.Request) -> web.Response:
        """PATCH /admin/mailboxes/{smtp}/meetings/{item_id}: Outlook moves or edits a meeting (any origin).

        Body: any of "start", "end", "free_busy", "subject", "location", "body", "recurrence" (null: no longer a
        series). Only "start": the meeting keeps its length; only "end": it changes length. Optional header
        `If-Match: <change key>`: 412 when the item changed since. -> 200 + the item (a new change key).
        """
        mailbox = self._mailbox(request)
        item_id = request.match_info["item_id"]
        change = await _body(request, outlook.MeetingChange)
        change_key = request.headers.get("If-Match", "").strip().strip('"') or None
        try:
            item = outlook.change_meeting(self.state.calendars, mailbox.smtp, item_id, change, change_key)
        except ItemNotFound:
            raise not_found(f"no item {item_id} in {mailbox.smtp}") from None
        except outlook.Invalid as error:
            raise invalid([(_where(name), reason) for name, reason in error.problems]) from None
        except StaleChangeKey:
            raise Problem(412, "Precondition Failed", f"item {item_id} has changed: its change key is no longer "
                          f"{change_key}", kind="/problems/stale-change-key") from None
        return _json(ItemView.of(item).as_json())

    async def cancel(self, request: web.Request) -> web.Response:
        """DELETE /admin/mailboxes/{smtp}/meetings/{item_id}: Outlook deletes the meeting (a whole series) -> 204."""
        mailbox = self._mailbox(request)
        item_id = request.match_info["item_id"]
        try:
            outlook.cancel_meeting(self.state.calendars, mailbox.smtp, item_id)
        except ItemNotFound:
            raise not_found(f"no item {item_id} in {mailbox.smtp}") from None
        except outlook.Invalid as error:
            raise invalid([(_where(name), reason) for name, reason in error.problems]) from None
        return web.Response(status=204)

    # -- request counters ---------------------------------------------------------------------------------------

    async def requests(self, _: web.Request) -> web.Response:
        """GET /admin/requests -> {"total", "operations": {name: {"count", "outcomes": {outcome: n}}}}.

        `count`: requests for the operation (every POST to the endpoint, 401 legs included); `outcomes`: how they
        were answered: NoError, an EWS error code, ErrorServerBusy, http_401, http_503, http_500, drop, down.
        Connections closed by a `down` fault are counted under the operation "unknown" (never read).
        """
        outcomes: dict[str, Counter[str]] = {}
        for metric in self.state.metrics.requests.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.value:
                    labels = sample.labels
                    outcomes.setdefault(labels["operation"], Counter())[labels["outcome"]] += int(sample.value)
        counts = self.state.operation_counts
        operations: dict[str, dict[str, Any]] = {}
        total = 0
        for name in sorted(set(counts) | set(outcomes)):
            answered = outcomes.get(name, Counter())
            count = counts.get(name, 0) or sum(answered.values())
            total += count
            operations[name] = {"count": count, "outcomes": dict(sorted(answered.items()))}
        return _json({"total": total, "operations": operations})

    async def reset_requests(self, _: web.Request) -> web.Response:
        """POST /admin/requests/reset -> 204: counters (and the Prometheus request series) start from zero."""
        self._reset_counters()
        return web.Response(status=204)

    def _reset_counters(self) -> None:
        self.state.operation_counts.clear()
        metrics = self.state.metrics
        metrics.requests.clear()
        metrics.latency.clear()
        metrics.faults.clear()

    # -- faults ---------------------------------------------------------------------------------------------------

    async def faults(self, _: web.Request) -> web.Response:
        """GET /admin/faults -> {"down": bool, "faults": [fault]} (a fault: its spec, id, remaining, hits)."""
        active = self.state.faults.active.values()
        return _json({"down": self.state.faults.is_down(), "faults": [fault_json(f) for f in active]})

    async def add_fault(self, request: web.Request) -> web.Response:
        """POST /admin/faults: {"kind": server_busy|http_503|http_500|latency|drop|down,
        "scope": mailbox|account|none (default none), "target": the mailbox's SMTP or the account's user name,
        "operations": ["UpdateItem", ...] (default all), "count": n (default: until removed),
        "back_off_ms" (server_busy), "retry_after_s" (http_503), "latency_ms" (latency)} -> 201 + the fault.

        A request meets its latency faults, then at most one failing fault (oldest first); `count` counts the
        requests a fault hit. `down` closes every EWS connection until it is removed (no scope, no count).
        """
        spec = await _body(request, FaultSpec)
        if spec.scope == FaultScope.MAILBOX and outlook.mailbox(self.state.seed, spec.target or "") is None:
            raise invalid([("body.target", f"no mailbox {spec.target} in the seed")])
        if spec.scope == FaultScope.ACCOUNT and self.state.authenticator.account(spec.target or "") is None:
            raise invalid([("body.target", f"no account {spec.target} in the seed")])
        fault = self.state.faults.add(spec)
        log.info("fault %d added: %s", fault.id, spec.model_dump(exclude_defaults=True))
        return _json(fault_json(fault), status=201, headers={"Location": f"{PREFIX}/faults/{fault.id}"})

    async def fault(self, request: web.Request) -> web.Response:
        """GET /admin/faults/{id} -> the fault; 404 when unknown or used up."""
        return _json(fault_json(self._fault(request)))

    async def remove_fault(self, request: web.Request) -> web.Response:
        """DELETE /admin/faults/{id} -> 204; 404 when unknown or used up."""
        self.state.faults.remove(self._fault(request).id)
        return web.Response(status=204)

    async def clear_faults(self, _: web.Request) -> web.Response:
        """DELETE /admin/faults -> 204: no faults (the server is up again)."""
        self.state.faults.clear()
        return web.Response(status=204)

    # -- accounts and their concurrency limit -----------------------------------------------------------------------

    async def accounts(self, _: web.Request) -> web.Response:
        """GET /admin/accounts -> {"accounts": [{"username", "smtp", "default_access", "rights", "concurrency"}]}."""
        return _json({"accounts": [
            {"username": a.username, "smtp": a.smtp, "default_access": a.default_access.value,
             "rights": {smtp: access.value for smtp, access in a.rights.items()},
             "concurrency": self._concurrency_json(a)}
            for a in self.state.seed.accounts
        ]})

    async def concurrency(self, request: web.Request) -> web.Response:
        """GET /admin/accounts/{username}/concurrency -> {"account", "limit", "seed_limit", "overridden",
        "in_flight"} (`limit`: what applies now; null: unlimited)."""
        return _json(self._concurrency_json(self._account(request)))

    async def set_concurrency(self, request: web.Request) -> web.Response:
        """PUT /admin/accounts/{username}/concurrency {"limit": n | null} -> 200 + the limit.

        Overrides the seed's max_concurrency (EWSMaxConcurrency): requests past `limit` in flight for the account
        get ErrorServerBusy; null: no limit at all. DELETE restores the seed's value.
        """
        account = self._account(request)
        wanted = await _body(request, ConcurrencyIn)
        self.state.gate.set_limit(account.key, wanted.limit)
        return _json(self._concurrency_json(account))

    async def reset_concurrency(self, request: web.Request) -> web.Response:
        """DELETE /admin/accounts/{username}/concurrency -> 204: the seed's max_concurrency applies again."""
        self.state.gate.clear_limit(self._account(request).key)
        return web.Response(status=204)

    # -- the whole state ---------------------------------------------------------------------------------------

    async def reset(self, _: web.Request) -> web.Response:
        """POST /admin/reset -> 204: empty calendars (silently: no notifications), no faults, no concurrency
        overrides, counters at zero. Subscriptions and authenticated connections stay, as after a restore."""
        for items in self.state.calendars.mailboxes.values():
            items.clear()
        self.state.faults.clear()
        self.state.gate.limits.clear()
        self._reset_counters()
        return web.Response(status=204)

    def _state_path(self, wanted: StateFileIn) -> Path:
        if wanted.path is not None:
            return Path(wanted.path).expanduser()
        if self.state_file is None:
            raise invalid([("body.path", "no state file is configured (SPACESYNC_SIMULATOR_STATE_FILE): give a path")])
        return self.state_file

    async def save(self, request: web.Request) -> web.Response:
        """POST /admin/state/save {"path"?} -> {"path", "items"}: every calendar as JSON, written atomically.

        Without a path: the configured state file. Only a new file or an earlier state file is overwritten (409
        for any other existing file).
        """
        path = self._state_path(await _body(request, StateFileIn, optional=True))
        if path.exists() and not is_state_file(path):
            raise Problem(409, "Conflict", f"{path} exists and is not a simulator state file: not overwritten",
                          kind="/problems/not-a-state-file")
        try:
            written = save_state(self.state, path)
        except StateFileError as error:
            raise Problem(409, "Conflict", str(error), kind="/problems/state-file") from None
        return _json({"path": str(path), "items": written})

    async def load(self, request: web.Request) -> web.Response:
        """POST /admin/state/load {"path"?} -> {"path", "items"}: calendars replaced by the file's (silently).

        404 when the file does not exist; 422 when it is not a valid state file (nothing changes).
        """
        path = self._state_path(await _body(request, StateFileIn, optional=True))
        try:
            loaded = load_state(self.state, path)
        except StateFileError as error:
            raise Problem(422, "Invalid state file", str(error), kind="/problems/state-file") from None
        if loaded is None:
            raise not_found(f"no state file {path}")
        return _json({"path": str(path), "items": loaded})


def _where(name: str) -> str:
    return f"path.{name}" if name == "item_id" else f"body.{name}"


def _guard(token: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware for /admin paths: the bearer token, and every error (404, 405 included) as problem+json."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
            return await handler(request)
        try:
            if token and not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
                raise Problem(401, "Unauthorized", "this admin API needs Authorization: Bearer <admin token>",
                              kind="/problems/unauthorized", headers={"WWW-Authenticate": 'Bearer realm="admin"'})
            return await handler(request)
        except Problem as problem:
            return problem.response(request)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else {}
            detail = {404: f"no admin endpoint {request.path}",
                      405: f"{request.method} is not allowed here (allowed: {error.headers.get('Allow', '')})",
                      }.get(error.status, error.text or error.reason)
            return Problem(error.status, HTTPStatus(error.status).phrase, detail or error.reason,
                           headers=headers).response(request)

    return admin_guard


def add_routes(app: web.Application, state: SimulatorState, token: str, *, state_file: Path | None = None) -> None:
    """Adds the /admin routes and their middleware (before the app starts). `state_file`: where
    POST /admin/state/save and /load go without a path (SimulatorSettings.state_file)."""
    api = AdminApi(state, state_file)
    app.middlewares.append(_guard(token))
    mailbox = PREFIX + "/mailboxes/{smtp}"
    item = "{item_id}"
    routes = [
        web.get(PREFIX + "/mailboxes", api.mailboxes),
        web.get(mailbox, api.mailbox),
        web.get(mailbox + "/items", api.items),
        web.get(f"{mailbox}/items/{item}", api.item),
        web.post(mailbox + "/meetings", api.book),
        web.patch(f"{mailbox}/meetings/{item}", api.move),
        web.delete(f"{mailbox}/meetings/{item}", api.cancel),
        web.get(PREFIX + "/requests", api.requests),
        web.post(PREFIX + "/requests/reset", api.reset_requests),
        web.get(PREFIX + "/faults", api.faults),
        web.post(PREFIX + "/faults", api.add_fault),
        web.delete(PREFIX + "/faults", api.clear_faults),
        web.get(PREFIX + "/faults/{fault_id}", api.fault),
        web.delete(PREFIX + "/faults/{fault_id}", api.remove_fault),
        web.get(PREFIX + "/accounts", api.accounts),
        web.get(PREFIX + "/accounts/{username}/concurrency", api.concurrency),
        web.put(PREFIX + "/accounts/{username}/concurrency", api.set_concurrency),
        web.delete(PREFIX + "/accounts/{username}/concurrency", api.reset_concurrency),
        web.post(PREFIX + "/reset", api.reset),
        web.post(PREFIX + "/state/save", api.save),
        web.post(PREFIX + "/state/load", api.load),
    ]
    app.router.add_routes(routes)

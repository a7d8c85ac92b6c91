"""POST /EWS/Exchange.asmx: faults, authentication, dispatch on the first child of s:Body, the answer."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from lxml import etree

from spacesync.exchange_simulator.auth import Challenge
from spacesync.exchange_simulator.ews import availability, folders, items, subscriptions
from spacesync.exchange_simulator.ews.context import Handler, RequestContext, Streamed, read_header
from spacesync.exchange_simulator.ews.soap import (
    SOAP,
    Element,
    SoapFault,
    envelope,
    fault,
    fault_envelope,
    serialize,
)
from spacesync.exchange_simulator.faults import FaultKind, FaultSpec, request_mailboxes
from spacesync.exchange_simulator.seed import AccountSeed
from spacesync.exchange_simulator.state import SimulatorState

log = logging.getLogger(__name__)

XML = "text/xml; charset=utf-8"


HANDLERS: dict[str, Handler] = {
    **folders.HANDLERS,
    **items.HANDLERS,
    **availability.HANDLERS,
    **subscriptions.HANDLERS,
}

# The parser never resolves entities or reaches the network: requests are untrusted input.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True)


def _operation_of(body: bytes) -> tuple[Element | None, Element | None, str]:
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        return None, None, "invalid"
    header = root.find(f"{{{SOAP}}}Header")
    soap_body = root.find(f"{{{SOAP}}}Body")
    request = soap_body[0] if soap_body is not None and len(soap_body) else None
    name = etree.QName(request).localname if request is not None else "invalid"
    return header, request, name


class EwsEndpoint:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        state = self.state
        if state.faults.is_down():
            return self._drop(request, "unknown", "down")
        body = await request.read()
        header, element, operation = _operation_of(body)
        state.operation_counts[operation] += 1
        outcome = "NoError"
        try:
            verdict = state.authenticator.authenticate(request.transport, request.headers.get("Authorization"))
            if isinstance(verdict, Challenge):
                outcome = "http_401"
                log.info("401 for %s: %s", operation, verdict.reason)
                challenge = web.Response(status=401, text="401 - Unauthorized: Access is denied",
                                         content_type="text/html")
                for offer in verdict.offers:
                    challenge.headers.add("WWW-Authenticate", offer)
                return challenge
            # In flight from here: a request waiting out injected latency holds a slot of the account's limit.
            if not state.gate.enter(verdict.key, verdict.max_concurrency):
                outcome = "ErrorServerBusy"
                return self._fault(fault("ErrorServerBusy", BackOffMilliseconds="1000"), operation)
            try:
                mailboxes = request_mailboxes(request.headers.get("X-AnchorMailbox"), header, element)
                for spec in state.faults.take(verdict.key, mailboxes, operation):
                    state.metrics.faults.labels(spec.kind.value).inc()
                    injected = await self._inject(request, spec)
                    if injected is not None:
                        outcome = {FaultKind.SERVER_BUSY: "ErrorServerBusy"}.get(spec.kind, spec.kind.value)
                        return injected
                answer, outcome = self._dispatch(verdict, header, element, operation)
            finally:
                # A waiting stream does not hold the account's slot (it would starve every other request).
                state.gate.leave(verdict.key)
            if isinstance(answer, Streamed):
                return await self._stream(request, answer)
            return answer
        finally:
            state.metrics.requests.labels(operation, outcome).inc()
            state.metrics.latency.labels(operation).observe(time.perf_counter() - started)

    def _dispatch(self, account: AccountSeed, header: Element | None, element: Element | None,
                  operation: str) -> tuple[web.Response | Streamed, str]:
        try:
            if element is None:
                raise fault("ErrorSchemaValidation", "The request is not a SOAP envelope with a body element.")
            handler = HANDLERS.get(operation)
            if handler is None:
                # Not ErrorInvalidRequest: exchangelib would retry every older API version.
                raise fault("ErrorSchemaValidation", f"The simulator does not implement the operation {operation}.")
            impersonating, time_zone = read_header(self.state.seed, account, header)
            context = RequestContext(self.state, account, operation, impersonating, time_zone)
            result = handler(context, element)
        except SoapFault as failure:
            return self._fault(failure, operation), failure.code
        except Exception:
            # A bug here must still look like Exchange (a fault, keep-alive), not like a dropped connection.
            log.exception("internal error in %s", operation)
            internal = fault("ErrorInternalServerError", "An internal server error occurred. The operation failed.")
            return self._fault(internal, operation), internal.code
        if isinstance(result, Streamed):
            return result, "NoError"
        return self._xml(operation, envelope(self.state.seed.server_version, result)), _first_code(result)

    def _xml(self, operation: str, root: Element, status: int = 200) -> web.Response:
        payload = self._observed(operation, root)
        return web.Response(status=status, body=payload, content_type="text/xml", charset="utf-8")

    def _observed(self, operation: str, root: Element) -> bytes:
        payload = serialize(root)
        for observe in self.state.response_observers:
            observe(operation, payload)
        return payload

    def _fault(self, failure: SoapFault, operation: str = "") -> web.Response:
        return self._xml(operation, fault_envelope(self.state.seed.server_version, failure), status=500)

    async def _stream(self, request: web.Request, result: Streamed) -> web.StreamResponse:
        answer = web.StreamResponse(status=200, headers={"Content-Type": XML})
        answer.enable_chunked_encoding()
        await answer.prepare(request)
        try:
            async for body in result.bodies:
                await answer.write(self._observed("GetStreamingEvents",
                                                  envelope(self.state.seed.server_version, body)))
            await answer.write_eof()
        except ConnectionResetError:  # the client hung up (e.g. it had the notifications it wanted)
            log.info("streaming client disconnected")
        return answer

    async def _inject(self, request: web.Request, spec: FaultSpec) -> web.StreamResponse | None:
        if spec.kind == FaultKind.LATENCY:
            await asyncio.sleep(spec.latency_ms / 1000)
            return None
        if spec.kind == FaultKind.SERVER_BUSY:
            return self._fault(fault("ErrorServerBusy", BackOffMilliseconds=str(spec.back_off_ms)))
        if spec.kind == FaultKind.HTTP_503:
            return web.Response(status=503, text="Service Unavailable", content_type="text/html",
                                headers={"Retry-After": str(spec.retry_after_s)})
        if spec.kind == FaultKind.HTTP_500:
            return web.Response(status=500, text="<html><body>Internal Server Error</body></html>",
                                content_type="text/html")
        return self._drop(request, "", "dropped")

    def _drop(self, request: web.Request, operation: str, outcome: str) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        if operation:
            self.state.metrics.requests.labels(operation, outcome).inc()
        # aiohttp needs a response object; the client never sees it (the connection is gone).
        return web.Response(status=503)


def _first_code(body: Element) -> str:
    code = body.find(".//{*}ResponseCode")
    return code.text or "NoError" if code is not None else "NoError"

"""exchangelib plumbing: the gateway's Protocol class (TLS trust, HTTP timeout), its fail-fast retry policy.

exchangelib keeps its HTTP settings on the Protocol class (`HTTP_ADAPTER_CLS`, `TIMEOUT`) and caches Protocol
instances process-wide per (endpoint, credentials). The gateway makes one Protocol subclass per gateway (its TLS trust
and timeout), puts its instances into exchangelib's cache itself (so `Account(config=...)` finds them) and takes them
out again on `forget()`. Nothing process-wide is changed: `BaseProtocol.HTTP_ADAPTER_CLS` keeps its default.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import requests
from exchangelib import BASIC, NTLM, Configuration, Credentials, FailFast
from exchangelib.errors import (
    ErrorServerBusy,
    MalformedResponseError,
    SessionPoolMinSizeReached,
    UnauthorizedError,
)
from exchangelib.protocol import CachingProtocol, Protocol
from exchangelib.util import is_xml
from exchangelib.version import Version
from requests.adapters import HTTPAdapter

from spacesync.common.events.catalog import ExchangeAuth
from spacesync.common.exchange.model import ExchangeServer

_local = threading.local()

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})


class RedactAuthorization(logging.Filter):
    """exchangelib logs every request's headers at DEBUG, the Authorization header too (Basic is the password in
    base64): blank it before the record is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        headers = args.get("request_headers") if isinstance(args, Mapping) else None
        secret = isinstance(headers, Mapping) and any(str(name).lower() in _SECRET_HEADERS for name in headers)
        if isinstance(args, Mapping) and isinstance(headers, Mapping) and secret:
            redacted = {name: "[redacted]" if str(name).lower() in _SECRET_HEADERS else value
                        for name, value in headers.items()}
            record.args = {**args, "request_headers": redacted}
        return True


def redact_exchangelib_logs() -> None:
    """Installs RedactAuthorization on exchangelib's request logger (once per process)."""
    logger = logging.getLogger("exchangelib.util")
    if not any(isinstance(existing, RedactAuthorization) for existing in logger.filters):
        logger.addFilter(RedactAuthorization())


@contextmanager
def http_timeout(seconds: float) -> Iterator[None]:
    """Within the block, in this thread, each HTTP request of a gateway protocol waits at most `seconds`
    (connect, and each read): bounds the worker thread of a call the caller stops waiting for."""
    previous = getattr(_local, "timeout", None)
    _local.timeout = max(0.05, seconds)
    try:
        yield
    finally:
        _local.timeout = previous


class HttpFailure(MalformedResponseError):  # type: ignore[misc]  # exchangelib is untyped
    """An HTTP answer that is not EWS SOAP (404, an HTML error page, a proxy's 502, ...), with its status."""

    def __init__(self, status: int, content_type: str, excerpt: str) -> None:
        super().__init__(f"HTTP {status} ({content_type or 'no content type'}): {excerpt}")
        self.status = status
        self.content_type = content_type
        self.excerpt = excerpt


class Unauthorized(UnauthorizedError):  # type: ignore[misc]
    """HTTP 401 after the authentication handshake, with the schemes the server offers (WWW-Authenticate)."""

    def __init__(self, message: str, offers: str, locked_out: bool = False) -> None:
        super().__init__(message)
        self.offers = offers
        self.locked_out = locked_out


def _excerpt(response: requests.Response, limit: int = 200) -> str:
    text = response.text if response.content else ""
    return " ".join(text.split())[:limit]


class GatewayRetryPolicy(FailFast):  # type: ignore[misc]
    """Never sleeps, never retries (a wrong password must not lock the account; the gateway does the back-off).

    Reads a few answers more precisely than exchangelib's FailFast: a 401 before anything else (FailFast reads a
    non-200 with `Connection: close` as throttling first), a 503 as ErrorServerBusy with the Retry-After it carries
    (FailFast drops it), and any other non-SOAP answer as HttpFailure with its status code."""

    def raise_response_errors(self, response: requests.Response) -> None:
        status = response.status_code
        if status == 200 or (status == 500 and response.content and is_xml(response.content)):
            return
        if status == 401:
            locked = b"The referenced account is currently locked out" in response.content
            offers = ", ".join(response.headers.get("WWW-Authenticate", "").split(","))
            raise Unauthorized(f"HTTP 401 from {response.url}", offers=offers, locked_out=locked)
        if status == 503:
            retry_after = response.headers.get("Retry-After", "")
            back_off = float(retry_after) if retry_after.strip().isdigit() else None
            raise ErrorServerBusy("HTTP 503 Service Unavailable", back_off=back_off)
        try:
            super().raise_response_errors(response)
        except (ErrorServerBusy, MalformedResponseError) as error:
            # ErrorServerBusy here only means 'a non-200 with Connection: close': say what the server answered.
            if isinstance(error, ErrorServerBusy) or type(error) is MalformedResponseError:
                raise HttpFailure(status, response.headers.get("Content-Type", ""), _excerpt(response)) from None
            raise


class GatewayProtocol(Protocol):  # type: ignore[misc]
    """exchangelib's Protocol with the gateway's HTTP timeout and without exchangelib's own throttling reaction
    (shrinking the session pool: the gateway bounds concurrent calls per server itself, and exchangelib's
    decrease_poolsize can block a thread while it holds the pool lock)."""

    HTTP_TIMEOUT: float = 30.0

    @property
    def TIMEOUT(self) -> float:  # exchangelib's name
        override: float | None = getattr(_local, "timeout", None)
        return min(override, self.HTTP_TIMEOUT) if override is not None else self.HTTP_TIMEOUT

    def decrease_poolsize(self) -> None:
        raise SessionPoolMinSizeReached("the Spacesync gateway bounds connections per server itself")


def adapter_class(verify_tls: bool, ca_bundle: str | None) -> type[HTTPAdapter]:
    """An HTTPAdapter that verifies TLS against `ca_bundle` (a PEM file), the system's CAs, or not at all."""
    verify: bool | str = (ca_bundle or True) if verify_tls else False

    class GatewayHTTPAdapter(HTTPAdapter):
        def cert_verify(self, conn: Any, url: str, verify_: Any, cert: Any) -> None:
            super().cert_verify(conn, url, verify, cert)

        def get_connection_with_tls_context(self, request: Any, verify_: Any, proxies: Any = None,
                                            cert: Any = None) -> Any:
            return super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)

    return GatewayHTTPAdapter


def protocol_class(verify_tls: bool, ca_bundle: str | None, timeout: float) -> type[GatewayProtocol]:
    """A Protocol class for one gateway: its TLS trust and HTTP timeout."""
    adapter = adapter_class(verify_tls, ca_bundle)

    class SpacesyncProtocol(GatewayProtocol):
        HTTP_ADAPTER_CLS = adapter
        HTTP_TIMEOUT = timeout

    return SpacesyncProtocol


def configuration(server: ExchangeServer, max_connections: int, version: Version | None = None) -> Configuration:
    return Configuration(
        service_endpoint=server.endpoint,
        credentials=Credentials(server.username, server.password),
        auth_type=BASIC if server.auth_type == ExchangeAuth.BASIC else NTLM,
        version=version,
        retry_policy=GatewayRetryPolicy(),
        max_connections=max_connections,
    )


def _cache_key(config: Configuration) -> tuple[str, Credentials]:
    return config.service_endpoint, config.credentials


def cached_protocol(cls: type[GatewayProtocol], config: Configuration) -> GatewayProtocol:
    """A new protocol for `config`, put into exchangelib's process-wide cache in place of whatever was cached for
    its (endpoint, credentials), so `Account(config=...)` uses it. Whoever used the replaced one keeps it."""
    protocol = fresh_protocol(cls, config)
    with CachingProtocol._protocol_cache_lock:
        CachingProtocol._protocol_cache[_cache_key(config)] = (protocol, datetime.now())
    return protocol


def fresh_protocol(cls: type[GatewayProtocol], config: Configuration) -> GatewayProtocol:
    """A protocol outside exchangelib's cache (its own sessions, so its own authentication): the connection test."""
    protocol: GatewayProtocol = type.__call__(cls, config=config)
    return protocol


def uncache(protocol: GatewayProtocol) -> None:
    """Takes `protocol` out of exchangelib's process-wide cache, if it is still the cached one (no I/O)."""
    key = _cache_key(protocol.config)
    with CachingProtocol._protocol_cache_lock:
        entry = CachingProtocol._protocol_cache.get(key)
        if entry is not None and entry[0] is protocol:
            del CachingProtocol._protocol_cache[key]

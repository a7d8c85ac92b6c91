"""Outlook/Exchange location settings, pure: what the Server/Host field accepts, and how a save merges into the
stored settings (and whether the connection must be tested again)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from spacesync.common.events.catalog import ExchangeAuth, ExchangeConnection
from spacesync.common.exchange import service_endpoint

_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"  # underscores: some intranet hosts have them
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")


def check_server(server: str) -> str:
    """The Server/Host field as given, when it is a host name (optionally with a port) or an http(s) URL;
    ValueError saying what is wrong otherwise."""
    endpoint = service_endpoint(server)  # ValueError: neither a host name nor an http(s) URL
    parts = urlsplit(endpoint)
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials: give the user name and password in their own fields")
    try:
        parts.port  # noqa: B018 - reading it validates it
    except ValueError:
        raise ValueError(f"{server!r} has an invalid port") from None
    host = parts.hostname or ""
    if not _HOST_NAME.match(host) and not _is_ip(host):
        raise ValueError(f"{host!r} is not a valid host name")
    return server


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class PasswordRequired(ValueError):
    """First connect without a password: there is none stored to keep."""


class InsecureBasic(ValueError):
    """Basic authentication over plain http to another machine."""


def _private_transport(endpoint: str) -> bool:
    """https, or http to this machine (the local EWS simulator)."""
    parts = urlsplit(endpoint)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    return host == "localhost" or (_is_ip(host) and ipaddress.ip_address(host).is_loopback)


@dataclass(frozen=True)
class MergedSettings:
    settings: ExchangeConnection
    needs_test: bool
    """A connection field changed (or this is the first connect): test before saving."""
    changed: bool


def merge_settings(current: ExchangeConnection | None, changes: Mapping[str, Any], password_encrypted: str | None,
                   now: datetime) -> MergedSettings:
    """The settings after a save. `changes` holds the fields given (None: keep), `password_encrypted` the new
    password's token (None: keep the stored one). Turning 'Populate Name/Email' on stamps the time, so only
    Outlook meetings first seen afterwards get names; turning it off clears the time."""
    if current is None and password_encrypted is None:
        raise PasswordRequired("a password is needed to connect")
    before: dict[str, Any] = current.model_dump() if current else {}
    after = {**before, **{name: value for name, value in changes.items() if value is not None}}
    if password_encrypted is not None:
        after["password_encrypted"] = password_encrypted
    turned_on = bool(after.get("populate_organizer")) and not before.get("populate_organizer")
    if turned_on:
        after["populate_organizer_since"] = now
    elif not after.get("populate_organizer"):
        after["populate_organizer_since"] = None
    settings = ExchangeConnection.model_validate(after)
    if settings.auth_type is ExchangeAuth.BASIC and not _private_transport(service_endpoint(settings.server)):
        raise InsecureBasic("Basic authentication sends the password readable by anyone on the way: use an "
                            "https:// server, or NTLM")
    needs_test = not settings.same_connection(current)
    return MergedSettings(settings, needs_test, changed=settings != current)

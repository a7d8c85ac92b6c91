"""Outcomes of the Outlook/Exchange admin use cases that the caller must hear about (the API answers each with a
problem+json)."""

from __future__ import annotations

from spacesync.common.exchange import ExchangeError


class ExchangeAdminError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ExchangeAdminError):
    """No such location or space, or nothing to show or remove (not connected, not paired)."""


class Conflict(ExchangeAdminError):
    """The request does not fit the current state (`kind` names which rule, e.g. 'spaces-paired')."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class InvalidSettings(ExchangeAdminError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class CheckFailed(ExchangeAdminError):
    """The connection test ('connection') or 'Save & Test' ('pairing') failed: nothing was saved."""

    def __init__(self, check: str, error: ExchangeError) -> None:
        super().__init__(error.message)
        self.check = check
        self.error = error


class ExchangeUnavailable(ExchangeAdminError):
    """Exchange could not answer a read the request needs (the import comparison)."""

    def __init__(self, error: ExchangeError) -> None:
        super().__init__(error.message)
        self.error = error

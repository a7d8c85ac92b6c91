"""First contact, authentication and folder rights, through real exchangelib."""

from __future__ import annotations

import pytest
from ews_helpers import AUTH_TYPES, AccountFactory, requests_seen
from exchangelib import IMPERSONATION, NTLM
from exchangelib.errors import ErrorAccessDenied, ErrorImpersonateUserDenied, ErrorNonExistentMailbox, UnauthorizedError
from exchangelib.folders import Calendar, DistinguishedFolderId, Root
from exchangelib.properties import Mailbox

from spacesync.exchange_simulator.embedded import EmbeddedSimulator


@pytest.mark.parametrize("auth", [None, *AUTH_TYPES])
def test_version_and_calendar_with_every_auth(account: AccountFactory, auth: str | None) -> None:
    room = account(auth=auth)
    assert room.version.build.major_version == 15
    assert room.version.api_version == "Exchange2016"
    rights = room.calendar.effective_rights
    assert (rights.read, rights.create_contents, rights.modify, rights.delete) == (True, True, True, True)


def test_auto_detection_prefers_ntlm(account: AccountFactory) -> None:
    assert account(auth=None).protocol.auth_type == NTLM


@pytest.mark.parametrize("auth", AUTH_TYPES)
def test_wrong_password_is_401(account: AccountFactory, auth: str) -> None:
    with pytest.raises(UnauthorizedError):
        account(password="wrong", auth=auth).calendar  # noqa: B018


def test_ntlm_authenticates_the_connection_not_the_request(account: AccountFactory,
                                                           simulator: EmbeddedSimulator) -> None:
    room = account(auth=NTLM, max_connections=1)
    for _ in range(3):
        room.root.refresh()
    # One handshake (two 401 legs) for the connection, then plain requests on it.
    assert requests_seen(simulator.state, outcome="http_401") == 2
    assert requests_seen(simulator.state, operation="GetFolder", outcome="NoError") >= 3


def _calendar(room_account: object, smtp: str) -> Calendar:
    # The README's way to reach a calendar without GetFolder(root), which free/busy-only accounts may not open.
    return Calendar(root=Root(account=room_account), _distinguished_id=DistinguishedFolderId(
        id="calendar", mailbox=Mailbox(email_address=smtp)))


@pytest.mark.parametrize(("user", "expected"), [
    ("DOMAIN\\writer", (True, True)),
    ("DOMAIN\\reader", (True, False)),
    ("DOMAIN\\fbonly", (False, False)),
])
def test_effective_rights_reflect_the_account(account: AccountFactory, user: str, expected: tuple[bool, bool]) -> None:
    room = account(user=user)
    calendar = Calendar.resolve(account=room, folder=_calendar(room, "room1@example.org"))
    rights = calendar.effective_rights
    assert (rights.read, rights.create_contents) == expected


def test_account_without_rights_is_denied(account: AccountFactory) -> None:
    with pytest.raises(ErrorAccessDenied):
        account(user="DOMAIN\\nobody").calendar  # noqa: B018


def test_free_busy_account_cannot_open_the_root(account: AccountFactory) -> None:
    with pytest.raises(ErrorAccessDenied):
        account(user="DOMAIN\\fbonly").root  # noqa: B018


def test_unknown_mailbox(account: AccountFactory) -> None:
    with pytest.raises(ErrorNonExistentMailbox):
        account("nobody@example.org").calendar  # noqa: B018


@pytest.mark.parametrize("auth", AUTH_TYPES)
def test_impersonation(account: AccountFactory, auth: str) -> None:
    room = account("room1@example.org", user="imp@example.org", auth=auth, access=IMPERSONATION)
    assert room.calendar.effective_rights.create_contents


def test_impersonation_denied_and_unknown(account: AccountFactory) -> None:
    with pytest.raises(ErrorImpersonateUserDenied):
        account("room3@example.org", user="imp@example.org", access=IMPERSONATION).calendar  # noqa: B018
    with pytest.raises(ErrorImpersonateUserDenied):
        account("room1@example.org", user="DOMAIN\\writer", access=IMPERSONATION).calendar  # noqa: B018
    with pytest.raises(ErrorNonExistentMailbox):
        account("ghost@example.org", user="imp@example.org", access=IMPERSONATION).calendar  # noqa: B018

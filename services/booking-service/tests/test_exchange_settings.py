"""Location Exchange settings, pure: the Server/Host field, merging a save, when to test the connection again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spacesync.booking_service.exchange_settings import PasswordRequired, check_server, merge_settings
from spacesync.common.events.catalog import ExchangeConnection

NOW = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
STORED = ExchangeConnection(server="mail.library.example.org", username="LIBRARY\\svc-spacesync",
                            password_encrypted="gAAAAAstored", verified_at=NOW - timedelta(days=3))


@pytest.mark.parametrize("server", [
    "outlook.office365.com", "mail.example.org:8443", "https://mail.example.org/EWS/Exchange.asmx",
    "http://127.0.0.1:8080/EWS/Exchange.asmx", "https://[::1]/EWS/Exchange.asmx", "exchange", "mail.example.org.",
    "mail_01.intra.example.org",
])
def test_host_names_and_urls_are_accepted(server: str) -> None:
    assert check_server(server) == server


@pytest.mark.parametrize(("server", "reason"), [
    ("ftp://mail.example.org", "neither a host name nor an http"),
    ("https://", "neither a host name nor an http"),
    ("not a host!", "is not a valid host name"),
    ("mail..example.org", "is not a valid host name"),
    ("-mail.example.org", "is not a valid host name"),
    ("mail.example.org:http", "invalid port"),
    ("mail.example.org:99999", "invalid port"),
    ("https://admin:secret@mail.example.org", "must not contain credentials"),
])
def test_nonsense_is_refused_with_a_reason(server: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_server(server)


def test_first_connect_needs_a_password_and_takes_the_defaults() -> None:
    changes = {"server": "mail.example.org", "username": "u@example.org", "auth_type": None}
    with pytest.raises(PasswordRequired):
        merge_settings(None, changes, None, NOW)
    merged = merge_settings(None, changes, "gAAAAAnew", NOW)
    assert (merged.needs_test, merged.changed) == (True, True)
    assert (merged.settings.auth_type, merged.settings.access, merged.settings.title_rule) == (
        "ntlm", "delegate", "patron_name")
    assert merged.settings.populate_organizer_since is None


@pytest.mark.parametrize("change", [
    {"server": "other.example.org"}, {"username": "LIBRARY\\someone"}, {"auth_type": "basic"},
    {"access": "impersonation"},
])
def test_a_changed_connection_field_is_tested_again(change: dict[str, str]) -> None:
    merged = merge_settings(STORED, {"server": STORED.server, "username": STORED.username, **change}, None, NOW)
    assert merged.needs_test
    assert merged.settings.password_encrypted == STORED.password_encrypted


def test_a_new_password_is_tested_again() -> None:
    merged = merge_settings(STORED, {"server": STORED.server, "username": STORED.username}, "gAAAAAnew", NOW)
    assert merged.needs_test
    assert merged.settings.password_encrypted == "gAAAAAnew"


def test_options_alone_are_saved_without_a_test_and_keep_the_password_and_verification() -> None:
    merged = merge_settings(STORED, {"server": STORED.server, "username": STORED.username,
                                     "title_rule": "public_nickname"}, None, NOW)
    assert (merged.needs_test, merged.changed) == (False, True)
    assert merged.settings.password_encrypted == STORED.password_encrypted
    assert merged.settings.verified_at == STORED.verified_at


def test_the_same_settings_again_change_nothing() -> None:
    merged = merge_settings(STORED, {"server": STORED.server, "username": STORED.username, "access": None}, None, NOW)
    assert (merged.needs_test, merged.changed) == (False, False)


def test_populate_organizer_stamps_the_time_it_was_turned_on_and_clears_it_when_off() -> None:
    base = {"server": STORED.server, "username": STORED.username}
    on = merge_settings(STORED, {**base, "populate_organizer": True}, None, NOW).settings
    assert on.populate_organizer_since == NOW
    still_on = merge_settings(on, {**base, "title_rule": "patron_name_and_email"}, None, NOW + timedelta(days=1))
    assert still_on.settings.populate_organizer_since == NOW  # staying on keeps the original time
    off = merge_settings(on, {**base, "populate_organizer": False}, None, NOW).settings
    assert (off.populate_organizer, off.populate_organizer_since) == (False, None)

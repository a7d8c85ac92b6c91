"""The committed contract (contracts/) is what the code generates, and real events validate against it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from spacesync.common.contracts import render, stale
from spacesync.common.events import BookingSlot, BookingState, CloudEvent, Patron

CONTRACTS = Path(__file__).resolve().parents[3] / "contracts"


def test_committed_contracts_are_current() -> None:
    problems = stale(CONTRACTS, render())
    assert not problems, "contracts/ is stale; run `make contracts` and commit:\n" + "\n".join(problems)


def schema(name: str) -> Draft202012Validator:
    document = json.loads((CONTRACTS / "events" / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_a_booking_event_validates_against_its_published_schema() -> None:
    state = BookingState(
        booking_id="b-1", version=2, status="confirmed", patron=Patron(
            first_name="Ada", last_name="Lovelace", email="ada@example.org"),
        slots=[BookingSlot(slot_id="s", space_id="r", start=datetime(2026, 12, 1, 9, tzinfo=UTC),
                           end=datetime(2026, 12, 1, 10, tzinfo=UTC), status="confirmed")],
        created_at=datetime.now(UTC), updated_at=datetime.now(UTC))
    validator = schema("booking.updated")
    assert list(validator.iter_errors(json.loads(state.model_dump_json()))) == []
    broken = json.loads(state.model_dump_json()) | {"version": 0, "slots": []}
    assert {e.json_path for e in validator.iter_errors(broken)} == {"$.version", "$.slots"}


def test_cloudevents_headers_validate_against_the_published_header_schema() -> None:
    validator = schema("cloudevents-kafka-headers")
    headers = CloudEvent(source="/panel/3", type="booking.created", subject="b-1").to_headers()
    assert list(validator.iter_errors(headers)) == []
    assert not validator.is_valid({k: v for k, v in headers.items() if k != "ce_id"})


@pytest.mark.parametrize("channel", ["booking.events", "catalog.events", "exchange.sync"])
def test_asyncapi_lists_every_event_type_of_a_channel(channel: str) -> None:
    document = json.loads((CONTRACTS / "asyncapi.json").read_text())
    assert document["asyncapi"] == "3.0.0"
    messages = document["channels"][channel]["messages"]
    for name, ref in messages.items():
        message = document["components"]["messages"][name]
        assert ref["$ref"] == f"#/components/messages/{name}"
        assert message["headers"]["properties"]["ce_type"]["const"] == name
        assert message["payload"]["$ref"].removeprefix("#/components/schemas/") in document["components"]["schemas"]

"""The published event contract, generated from the code: a JSON Schema per event type and an AsyncAPI 3.0
document. `python -m spacesync.common.contracts [--check] DIR` writes them (or fails when DIR is stale).

Written by hand rather than by FastStream's AsyncAPI generator: ours lists every CloudEvents type of a
topic as its own message, with the ce_* headers, which FastStream's per-subscriber schema cannot express.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from spacesync.common.events.registry import EVENT_TYPES, EventType, Topic

CONTRACT_VERSION = "1.0.0"
SCHEMA_BASE = "https://spacesync.dev/contracts/events"

PRODUCERS = {
    Topic.BOOKING_EVENTS: "booking-service (transactional outbox) and other booking systems (their own ce_source)",
    Topic.CATALOG_EVENTS: "booking-service (transactional outbox)",
    Topic.EXCHANGE_SYNC: "exchange-writer",
    Topic.EXCHANGE_FREEBUSY: "exchange-poller",
}
TOPIC_DESCRIPTIONS = {
    Topic.BOOKING_EVENTS: "Full state of every booking after each change. Key: booking id.",
    Topic.CATALOG_EVENTS: "Locations, categories and spaces after each change. Key: the entity's id.",
    Topic.EXCHANGE_SYNC: "What the exchange-writer did with each slot of a booking. Key: booking id.",
    Topic.EXCHANGE_FREEBUSY: "Busy time booked in Outlook per space. Key: space id.",
}


def cloudevents_headers(event_type: EventType | None = None) -> dict[str, Any]:
    """CloudEvents 1.0 Kafka protocol binding, binary content mode."""
    ce_type: dict[str, Any] = {"type": "string", "description": "Event type"}
    if event_type is not None:
        ce_type["const"] = event_type.ce_type
    return {
        "type": "object",
        "title": "CloudEvents Kafka headers (binary mode)",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "content-type"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {"type": "string", "minLength": 1,
                      "description": "Unique per event; consumers drop an id they have processed"},
            "ce_source": {"type": "string", "minLength": 1, "format": "uri-reference",
                          "description": "The producer, e.g. /spacesync/booking-service"},
            "ce_type": ce_type,
            "ce_subject": {"type": "string", "description": "The aggregate id; equals the Kafka key"},
            "ce_time": {"type": "string", "format": "date-time", "description": "When the change happened (UTC)"},
            "content-type": {"type": "string", "const": "application/json"},
        },
    }


def event_schema(event_type: EventType) -> dict[str, Any]:
    schema = event_type.model.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE}/{event_type.ce_type}.schema.json",
        **schema,
        "description": f"Data of {event_type.ce_type}: {event_type.description}",
        "x-cloudevents-type": event_type.ce_type,
        "x-kafka-topic": event_type.topic.value,
        "x-kafka-key": event_type.key,
    }


def asyncapi() -> dict[str, Any]:
    models: list[type[BaseModel]] = sorted({e.model for e in EVENT_TYPES.values()}, key=lambda m: m.__name__)
    _, definitions = models_json_schema([(m, "validation") for m in models],
                                        ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(sorted(definitions.get("$defs", {}).items()))
    messages: dict[str, Any] = {}
    for event_type in EVENT_TYPES.values():
        messages[event_type.ce_type] = {
            "name": event_type.ce_type,
            "title": event_type.ce_type,
            "summary": event_type.description,
            "contentType": "application/json",
            "headers": cloudevents_headers(event_type),
            "payload": {"$ref": f"#/components/schemas/{event_type.model.__name__}"},
            "bindings": {"kafka": {"bindingVersion": "0.5.0",
                                   "key": {"type": "string", "description": f"the {event_type.key}"}}},
        }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in Topic:
        refs = {t.ce_type: {"$ref": f"#/components/messages/{t.ce_type}"}
                for t in EVENT_TYPES.values() if t.topic is topic}
        if not refs:
            continue
        channels[topic.value] = {"address": topic.value, "description": TOPIC_DESCRIPTIONS[topic],
                                 "messages": refs}
        operations[f"publish {topic.value}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{topic.value}"},
            "summary": f"Published by {PRODUCERS[topic]}",
            "messages": [{"$ref": f"#/channels/{topic.value}/messages/{name}"} for name in refs],
        }
        channels[f"{topic.value}.dlq"] = {
            "address": f"{topic.value}.dlq",
            "description": f"Dead letters of {topic.value}: the original record, plus dlq_reason, "
                           "dlq_source_topic, dlq_source_partition, dlq_source_offset, dlq_consumer_group, "
                           "dlq_failed_at headers.",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Spacesync events", "version": CONTRACT_VERSION, "description": (
            "Events of Spacesync on Kafka: CloudEvents 1.0 in binary mode (ce_* headers, JSON value). Payloads "
            "carry the full state with a per-aggregate version or sequence; consumers drop duplicates (ce_id) "
            "and stale versions, and ignore fields they do not know.")},
        "defaultContentType": "application/json",
        "servers": {"kafka": {"host": "kafka:9092", "protocol": "kafka",
                              "description": "The cluster's bootstrap servers"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> dict[str, str]:
    """Every contract file: relative path -> text."""
    files = {"asyncapi.json": asyncapi(), "events/cloudevents-kafka-headers.schema.json": cloudevents_headers()}
    for event_type in EVENT_TYPES.values():
        files[f"events/{event_type.ce_type}.schema.json"] = event_schema(event_type)
    return {path: json.dumps(doc, indent=2, sort_keys=False) + "\n" for path, doc in files.items()}


def stale(directory: Path, rendered: dict[str, str]) -> list[str]:
    """Differences between the committed files and what the code generates now (empty when current)."""
    problems = []
    for path, text in rendered.items():
        target = directory / path
        current = target.read_text("utf-8") if target.exists() else ""
        if current != text:
            diff = difflib.unified_diff(current.splitlines(), text.splitlines(), str(target), "generated",
                                        lineterm="", n=1)
            problems.append("\n".join(list(diff)[:40]))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--check", action="store_true", help="fail when the files differ from the code")
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        problems = stale(args.directory, rendered)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("contracts are stale: run `make contracts` and commit the result", file=sys.stderr)
            return 1
        return 0
    for path, text in rendered.items():
        target = args.directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

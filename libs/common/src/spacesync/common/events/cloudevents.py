"""CloudEvents 1.0 attributes in Kafka binary content mode (ce_* headers, the value is the data)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONTENT_TYPE = "application/json"
SPEC_VERSION = "1.0"


class InvalidEvent(ValueError):
    """An event that can never be processed (bad headers or payload); it goes to the DLQ with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CloudEvent(BaseModel):
    """The context attributes of one event. The data travels as the Kafka value."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    specversion: str = SPEC_VERSION
    datacontenttype: str = CONTENT_TYPE

    def to_headers(self) -> dict[str, str]:
        headers = {
            "ce_specversion": self.specversion,
            "ce_id": self.id,
            "ce_source": self.source,
            "ce_type": self.type,
            "ce_time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "content-type": self.datacontenttype,
        }
        if self.subject is not None:
            headers["ce_subject"] = self.subject
        return headers

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str | bytes | None] | Iterable[tuple[str, bytes | None]],
    ) -> CloudEvent:
        """Reads ce_* headers; raises InvalidEvent naming what is missing or wrong."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        text: dict[str, str] = {}
        try:  # once per event on every consumer: one try around the loop, one check per header
            for name, value in items:
                if value is None:
                    if name.startswith("ce_") or name == "content-type":
                        raise InvalidEvent(f"header {name!r} has no value")
                    continue
                text[name] = value.decode("utf-8") if isinstance(value, bytes) else value
        except UnicodeDecodeError:
            raise InvalidEvent(f"header {name!r} is not UTF-8") from None
        missing = [h for h in ("ce_specversion", "ce_id", "ce_source", "ce_type") if not text.get(h)]
        if missing:
            raise InvalidEvent(f"missing CloudEvents header(s): {', '.join(missing)}")
        if text["ce_specversion"] != SPEC_VERSION:
            raise InvalidEvent(f"unsupported ce_specversion {text['ce_specversion']!r} (expected 1.0)")
        content_type = text.get("content-type", CONTENT_TYPE)
        if content_type != CONTENT_TYPE and (content_type := content_type.split(";")[0].strip()) != CONTENT_TYPE:
            raise InvalidEvent(f"unsupported content-type {content_type!r} (expected {CONTENT_TYPE})")
        fields: dict[str, str] = {
            "id": text["ce_id"], "source": text["ce_source"], "type": text["ce_type"],
            "datacontenttype": content_type,
        }
        if text.get("ce_subject"):
            fields["subject"] = text["ce_subject"]
        if text.get("ce_time"):
            fields["time"] = text["ce_time"]
        try:
            return cls.model_validate(fields)
        except ValidationError as error:
            raise InvalidEvent(f"invalid CloudEvents header: {_first_error(error)}") from None


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    return f"{where}: {first['msg']}"


def describe_validation_error(error: ValidationError) -> str:
    """One line naming every invalid field, for DLQ headers and logs."""
    parts = []
    for item in error.errors()[:10]:
        where = ".".join(str(part) for part in item["loc"]) or "value"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)

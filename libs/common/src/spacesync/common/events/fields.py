"""Field types shared by the event contracts."""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, StringConstraints

# Printable text: control characters (NUL, escapes, line breaks) are refused, not stored or forwarded.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


# Ids are opaque strings: booking-service uses UUIDs, other producers their own (unique per ce_source).
Id = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True, pattern=PRINTABLE)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True, pattern=PRINTABLE)]
PersonName = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True, pattern=PRINTABLE)]
ExchangeId = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=PRINTABLE)]
# Bounded to what JSON readers hold exactly (2^53 - 1) and Postgres bigint stores: a producer's larger number
# is refused with a clear reason (the DLQ), not a consumer stuck on it.
Version = Annotated[int, Field(ge=1, le=2**53 - 1, description="Per-aggregate version: +1 on every change")]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date is out of range") from None


# Times travel in UTC; an offset is required on input so no one guesses a zone.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]

# Consumers ignore fields they do not know (tolerant reader), so producers can add fields safely.
CONTRACT_CONFIG = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

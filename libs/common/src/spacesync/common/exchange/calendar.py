"""Calendar item operations: synchronous exchangelib code, run only in the gateway's worker threads.

Every appointment the writer creates carries two PublicStrings extended properties (our stamps): the slot id and
the booking id. `find_stamped` looks for a slot's appointment with a FindItem Restriction on the slot id (a
folder filter, not a calendar view: whether Exchange accepts a Restriction with a CalendarView is unconfirmed).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from exchangelib import Account, CalendarItem, EWSDateTime, ExtendedProperty
from exchangelib.errors import ErrorInvalidIdMalformed, ErrorItemNotFound, EWSError
from exchangelib.fields import FieldPath
from exchangelib.folders import Calendar, DistinguishedFolderId, Root
from exchangelib.items import ALWAYS_OVERWRITE, SEND_TO_NONE
from exchangelib.properties import Body, Mailbox

from spacesync.common.exchange.model import Appointment, CalendarEntry, ItemGone, ItemRef

SLOT_FIELD = "spacesync_slot_id"
BOOKING_FIELD = "spacesync_booking_id"
UPDATED_FIELDS = ["subject", "body", "start", "end", "location"]
VIEW_FIELDS = ("subject", "start", "end", "legacy_free_busy_status", SLOT_FIELD, BOOKING_FIELD)
ORGANIZER_FIELD = "organizer"


class SlotIdStamp(ExtendedProperty):  # type: ignore[misc]  # exchangelib is untyped
    distinguished_property_set_id = "PublicStrings"
    property_name = "SpacesyncSlotId"
    property_type = "String"


class BookingIdStamp(ExtendedProperty):  # type: ignore[misc]
    distinguished_property_set_id = "PublicStrings"
    property_name = "SpacesyncBookingId"
    property_type = "String"


class UnexpectedAnswer(EWSError):  # type: ignore[misc]
    """Exchange answered, but not what the request asked for."""


_registered = False
_register_lock = threading.Lock()


def register_stamps() -> None:
    """Registers our stamps on exchangelib's CalendarItem (class-wide, once per process)."""
    global _registered
    with _register_lock:
        if _registered:
            return
        for name, stamp in ((SLOT_FIELD, SlotIdStamp), (BOOKING_FIELD, BookingIdStamp)):
            try:
                CalendarItem.get_field_by_fieldname(name)
            except Exception:  # exchangelib's InvalidField: not registered yet
                CalendarItem.register(name, stamp)
        _registered = True


@dataclass(frozen=True)
class MailboxCalendar:
    """A resource mailbox as the service account reaches it: exchangelib Account and its calendar folder, built
    directly (no GetFolder(root), no class-wide lock of `account.calendar`)."""

    account: Any
    calendar: Any

    @classmethod
    def open(cls, account: Account, mailbox: str) -> MailboxCalendar:
        calendar = Calendar(root=Root(account=account), _distinguished_id=DistinguishedFolderId(
            id="calendar", mailbox=Mailbox(email_address=mailbox)))
        return cls(account, calendar)


def ews_utc(moment: datetime) -> EWSDateTime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"appointment times must be timezone-aware (UTC), got {moment.isoformat()}")
    return EWSDateTime.from_datetime(moment.astimezone(UTC))


def plain_utc(moment: date, *, is_end: bool = False) -> datetime:
    """An exchangelib EWSDateTime (any zone) as a plain datetime in UTC. (An all-day item's EWSDate, which
    exchangelib gives only when is_all_day was fetched, is midnight UTC; its end date is inclusive.)"""
    if not isinstance(moment, datetime):
        day = moment + timedelta(days=1) if is_end else moment
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    plain = datetime(moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
                     moment.microsecond, tzinfo=moment.tzinfo)
    return plain.astimezone(UTC)


def _check(appointment: Appointment) -> None:
    if appointment.end <= appointment.start:
        raise ValueError(f"appointment {appointment.slot_id} ends ({appointment.end.isoformat()}) before it starts "
                         f"({appointment.start.isoformat()})")


@dataclass(frozen=True)
class Rights:
    read: bool
    create: bool
    modify: bool
    delete: bool

    @property
    def missing_writes(self) -> list[str]:
        return [name for name in ("create", "modify", "delete") if not getattr(self, name)]


def rights(target: MailboxCalendar) -> Rights:
    """What the account may do in the calendar: one GetFolder(calendar) with EffectiveRights (creates nothing)."""
    folder = Calendar.resolve(account=target.account, folder=target.calendar)
    granted = folder.effective_rights
    if granted is None:
        return Rights(read=False, create=False, modify=False, delete=False)
    return Rights(read=bool(granted.read), create=bool(granted.create_contents), modify=bool(granted.modify),
                  delete=bool(granted.delete))


def create(target: MailboxCalendar, appointment: Appointment) -> ItemRef:
    _check(appointment)
    item = CalendarItem(
        account=target.account, folder=target.calendar, subject=appointment.subject, body=Body(appointment.body),
        start=ews_utc(appointment.start), end=ews_utc(appointment.end), location=appointment.location,
        legacy_free_busy_status="Busy", reminder_is_set=False,
    )
    setattr(item, SLOT_FIELD, appointment.slot_id)
    setattr(item, BOOKING_FIELD, appointment.booking_id)
    item.save(send_meeting_invitations=SEND_TO_NONE)
    return ItemRef(item.id, item.changekey)


def update(target: MailboxCalendar, ref: ItemRef, appointment: Appointment) -> ItemRef:
    """UpdateItem with ConflictResolution AlwaysOverwrite: the booking is the truth, whatever Outlook changed."""
    _check(appointment)
    item = CalendarItem(
        account=target.account, folder=target.calendar, id=ref.item_id, changekey=ref.change_key,
        subject=appointment.subject, body=Body(appointment.body), start=ews_utc(appointment.start),
        end=ews_utc(appointment.end), location=appointment.location,
    )
    try:
        item.save(update_fields=UPDATED_FIELDS, conflict_resolution=ALWAYS_OVERWRITE,
                  send_meeting_invitations=SEND_TO_NONE)
    except (ErrorItemNotFound, ErrorInvalidIdMalformed):  # an id Exchange cannot read names no item either
        raise ItemGone(ref.item_id) from None
    except ValueError as error:  # exchangelib: "'id' mismatch in returned update response"
        raise UnexpectedAnswer(f"UpdateItem answered for another item ({error})") from None
    return ItemRef(item.id, item.changekey)


def delete(target: MailboxCalendar, ref: ItemRef) -> bool:
    """HardDelete, no cancellations. False when the item was already gone (that is success too). The ItemId goes
    without its ChangeKey: the booking is the truth, an edit made in Outlook since must not keep the item alive."""
    item = CalendarItem(account=target.account, folder=target.calendar, id=ref.item_id)
    try:
        item.delete(send_meeting_cancellations=SEND_TO_NONE)
    except (ErrorItemNotFound, ErrorInvalidIdMalformed):
        return False
    return True


def find_stamped(target: MailboxCalendar, slot_id: str) -> list[ItemRef]:
    found = target.calendar.filter(**{SLOT_FIELD: slot_id}).values_list("id", "changekey")
    return [ItemRef(item_id, change_key) for item_id, change_key in found]


def view(target: MailboxCalendar, start: datetime, end: datetime, *, organizer: bool = True) -> list[CalendarEntry]:
    """A calendar view (recurring series expanded into occurrences), by start: one FindItem. `organizer`: with the
    organizer's display name (the name only, never the address)."""
    if end <= start:
        raise ValueError(f"the view window ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    fields = (*VIEW_FIELDS, ORGANIZER_FIELD) if organizer else VIEW_FIELDS
    query = target.calendar.view(start=ews_utc(start), end=ews_utc(end)).only(*fields)
    query.only_fields = tuple(_from_find_item(path) for path in query.only_fields)
    entries = []
    for item in query:
        if isinstance(item, Exception):
            raise item
        found = item.organizer
        entries.append(CalendarEntry(
            item_id=item.id, start=plain_utc(item.start), end=plain_utc(item.end, is_end=True), subject=item.subject,
            busy_status=item.legacy_free_busy_status or "NoData",
            organizer=(found.name or found.email_address) if organizer and found is not None else None,
            slot_id=getattr(item, SLOT_FIELD), booking_id=getattr(item, BOOKING_FIELD),
        ))
    entries.sort(key=lambda entry: (entry.start, entry.end, entry.item_id))
    return entries


def _from_find_item(path: FieldPath) -> FieldPath:
    """The field as FindItem returns it. exchangelib calls the organizer (a mailbox) and extended properties
    'complex' and then follows the FindItem (ids only) with a GetItem for every item: two requests per view. Yet
    FindItem returns both when AdditionalProperties names them: the organizer as Mailbox/Name (no EmailAddress,
    which we never use) and extended properties named by ExtendedFieldURI (our stamps are short strings). A copy
    of the field that says it is not complex makes exchangelib ask FindItem for it and parse it from there."""
    if not path.field.is_complex:
        return path
    field = copy.copy(path.field)
    field.is_complex = False  # on the copy only: CalendarItem's own field stays as it is for every other query
    return FieldPath(field=field, label=path.label, subfield=path.subfield)

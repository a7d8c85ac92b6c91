"""t:CalendarItem in and out: reading the fields a client sets, writing the fields a shape asks for.

Written elements follow the order types.xsd requires inside t:CalendarItem (see ../shared/ews/calendaritem_order.txt);
Exchange answers times in UTC, and so does the simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from spacesync.exchange_simulator.calendar import CalendarItem, ExtendedKey, FreeBusy, Occurrence, Person, Recurrence
from spacesync.exchange_simulator.ews.soap import NSMAP, Element, error, parse_time, t, utc_text

# The CalendarItem children the simulator writes, in schema order.
ORDER = (
    "ItemId", "ParentFolderId", "ItemClass", "Subject", "Sensitivity", "Body", "DateTimeReceived", "Size",
    "Categories", "Importance", "DateTimeSent", "DateTimeCreated", "ReminderIsSet", "ReminderMinutesBeforeStart",
    "HasAttachments", "ExtendedProperty", "LastModifiedName", "LastModifiedTime", "IsAssociated", "UID",
    "DateTimeStamp", "Start", "End", "IsAllDayEvent", "LegacyFreeBusyStatus", "Location", "IsMeeting",
    "IsCancelled", "IsRecurring", "MeetingRequestWasSent", "IsResponseRequested", "CalendarItemType",
    "MyResponseType", "Organizer", "Duration", "AppointmentSequenceNumber", "AppointmentState", "Recurrence",
    "StartTimeZone", "EndTimeZone", "IsOrganizer",
)
# BaseShape Default, as Exchange returns it for calendar items.
DEFAULT_SHAPE = frozenset({
    "ItemId", "Subject", "HasAttachments", "IsAssociated", "Start", "End", "LegacyFreeBusyStatus", "Location",
    "CalendarItemType", "Organizer",
})
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Shape:
    fields: frozenset[str]
    extended: frozenset[ExtendedKey]

    @classmethod
    def read(cls, shape: Element | None) -> Shape:
        base = shape.findtext("t:BaseShape", default="IdOnly", namespaces=NSMAP) if shape is not None else "IdOnly"
        fields = {"IdOnly": {"ItemId"}, "Default": set(DEFAULT_SHAPE), "AllProperties": set(ORDER)}.get(
            base, {"ItemId"})
        extended: set[ExtendedKey] = set()
        extra = shape.find("t:AdditionalProperties", NSMAP) if shape is not None else None
        for uri in extra if extra is not None else []:
            name = etree.QName(uri).localname
            if name == "FieldURI":
                fields.add(uri.get("FieldURI", "").partition(":")[2])
            elif name == "ExtendedFieldURI":
                extended.add(extended_key(uri))
        fields.discard("ExtendedProperty")  # only the extended properties asked for by name are returned
        return cls(frozenset(fields), frozenset(extended))


def extended_key(uri: Element) -> ExtendedKey:
    property_set = uri.get("DistinguishedPropertySetId") or uri.get("PropertySetId") or ""
    name = uri.get("PropertyName") or uri.get("PropertyTag") or uri.get("PropertyId") or ""
    return ExtendedKey(property_set, name, uri.get("PropertyType", "String"))


def _bool(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true")


def _recurrence(element: Element, zone: str) -> Recurrence:
    pattern = element[0] if len(element) else None
    if pattern is None or len(element) < 2:
        raise error("ErrorSchemaValidation", "Recurrence needs a pattern and a range.")
    kind = etree.QName(pattern).localname
    interval = int(pattern.findtext("t:Interval", default="1", namespaces=NSMAP))
    if kind == "DailyRecurrence":
        parsed = Recurrence("daily", interval, time_zone=zone)
    elif kind == "WeeklyRecurrence":
        days = (pattern.findtext("t:DaysOfWeek", default="", namespaces=NSMAP) or "").split()
        parsed = Recurrence("weekly", interval, tuple(_WEEKDAYS.index(d) for d in days if d in _WEEKDAYS),
                            time_zone=zone)
    else:
        raise error("ErrorCalendarInvalidRecurrence", f"The simulator keeps daily and weekly recurrences, not {kind}.")
    series_range = element[1]
    count = series_range.findtext("t:NumberOfOccurrences", namespaces=NSMAP)
    end = series_range.findtext("t:EndDate", namespaces=NSMAP)
    return Recurrence(parsed.pattern, parsed.interval, parsed.weekdays,
                      count=int(count) if count else None,
                      until=parse_time(end[:10] + "T00:00:00", "EndDate").date() if end else None,
                      time_zone=zone)


def apply_field(item: CalendarItem, element: Element, zone: str = "UTC") -> None:
    """Sets on `item` the value one t:CalendarItem child carries (CreateItem, SetItemField)."""
    name = etree.QName(element).localname
    text = element.text or ""
    setters: dict[str, Callable[[], None]] = {
        "Subject": lambda: setattr(item, "subject", text),
        "Body": lambda: _set_body(item, text, element.get("BodyType", "Text")),
        "Sensitivity": lambda: setattr(item, "sensitivity", text),
        "Importance": lambda: setattr(item, "importance", text),
        "ReminderIsSet": lambda: setattr(item, "reminder_is_set", _bool(text)),
        "ReminderMinutesBeforeStart": lambda: setattr(item, "reminder_minutes", int(text or 0)),
        "Categories": lambda: setattr(item, "categories", tuple(s.text or "" for s in element)),
        "Start": lambda: setattr(item, "start", parse_time(text, "Start")),
        "End": lambda: setattr(item, "end", parse_time(text, "End")),
        "IsAllDayEvent": lambda: setattr(item, "is_all_day", _bool(text)),
        "LegacyFreeBusyStatus": lambda: setattr(item, "free_busy", _free_busy(text)),
        "Location": lambda: setattr(item, "location", text),
        "StartTimeZone": lambda: setattr(item, "start_time_zone", element.get("Id")),
        "EndTimeZone": lambda: setattr(item, "end_time_zone", element.get("Id")),
        "Recurrence": lambda: setattr(item, "recurrence", _recurrence(element, zone)),
    }
    if name == "ExtendedProperty":
        uri = element.find("t:ExtendedFieldURI", NSMAP)
        if uri is None:
            raise error("ErrorSchemaValidation", "ExtendedProperty needs an ExtendedFieldURI.")
        values = element.find("t:Values", NSMAP)
        value: str | tuple[str, ...] = (
            tuple(v.text or "" for v in values) if values is not None
            else element.findtext("t:Value", default="", namespaces=NSMAP) or ""
        )
        item.extended[extended_key(uri)] = value
        return
    setter = setters.get(name)
    if setter is not None:
        setter()
    # Other fields (attendees, reminders' due time, ...) are accepted and not kept: rooms don't need them.


def _set_body(item: CalendarItem, text: str, body_type: str) -> None:
    item.body = text
    item.body_type = body_type


def clear_field(item: CalendarItem, uri: Element) -> None:
    """DeleteItemField: back to the default."""
    if etree.QName(uri).localname == "ExtendedFieldURI":
        item.extended.pop(extended_key(uri), None)
        return
    defaults = {"Subject": ("subject", ""), "Body": ("body", ""), "Location": ("location", ""),
                "Categories": ("categories", ()), "Recurrence": ("recurrence", None)}
    field = uri.get("FieldURI", "").partition(":")[2]
    if field in defaults:
        setattr(item, *defaults[field])


def _free_busy(text: str) -> FreeBusy:
    try:
        return FreeBusy(text.strip())
    except ValueError:
        raise error("ErrorSchemaValidation", f"'{text}' is not a LegacyFreeBusyStatus.") from None


def render(entry: Occurrence, shape: Shape, folder_id: str, mailbox_name: str, *, found: bool = False) -> Element:
    """One t:CalendarItem with the fields of `shape`, for a single item, a master or an occurrence. `found`: as
    FindItem lists it, the organizer with its Name only (Exchange leaves the EmailAddress to GetItem)."""
    item = entry.item
    out = etree.Element(t("CalendarItem"))

    def add(tag: str, text: str | None = None, **attrs: str) -> Element:
        child = etree.SubElement(out, t(tag), attrs)
        if text is not None:
            child.text = text
        return child

    organizer = item.organizer or Person(mailbox_name, item.mailbox)
    writers: dict[str, Callable[[], object]] = {
        "ItemId": lambda: add("ItemId", Id=entry.id, ChangeKey=item.change_key),
        "ParentFolderId": lambda: add("ParentFolderId", Id=folder_id, ChangeKey="AgAAAA=="),
        "ItemClass": lambda: add("ItemClass", "IPM.Appointment"),
        "Subject": lambda: add("Subject", item.subject),
        "Sensitivity": lambda: add("Sensitivity", item.sensitivity),
        "Body": lambda: add("Body", item.body, BodyType=item.body_type),
        "DateTimeReceived": lambda: add("DateTimeReceived", utc_text(item.created)),
        "Size": lambda: add("Size", str(len(item.subject) + len(item.body) + 256)),
        "Categories": lambda: _categories(add("Categories"), item.categories),
        "Importance": lambda: add("Importance", item.importance),
        "DateTimeSent": lambda: add("DateTimeSent", utc_text(item.created)),
        "DateTimeCreated": lambda: add("DateTimeCreated", utc_text(item.created)),
        "ReminderIsSet": lambda: add("ReminderIsSet", _xs_bool(item.reminder_is_set)),
        "ReminderMinutesBeforeStart": lambda: add("ReminderMinutesBeforeStart", str(item.reminder_minutes)),
        "HasAttachments": lambda: add("HasAttachments", "false"),
        "ExtendedProperty": lambda: _extended(out, item, shape.extended),
        "LastModifiedName": lambda: add("LastModifiedName", organizer.name),
        "LastModifiedTime": lambda: add("LastModifiedTime", utc_text(item.modified)),
        "IsAssociated": lambda: add("IsAssociated", "false"),
        "UID": lambda: add("UID", item.uid),
        "DateTimeStamp": lambda: add("DateTimeStamp", utc_text(item.modified)),
        "Start": lambda: add("Start", utc_text(entry.start)),
        "End": lambda: add("End", utc_text(entry.end)),
        "IsAllDayEvent": lambda: add("IsAllDayEvent", _xs_bool(item.is_all_day)),
        "LegacyFreeBusyStatus": lambda: add("LegacyFreeBusyStatus", item.free_busy.value),
        "Location": lambda: add("Location", item.location),
        "IsMeeting": lambda: add("IsMeeting", _xs_bool(item.origin == "outlook")),
        "IsCancelled": lambda: add("IsCancelled", "false"),
        "IsRecurring": lambda: add("IsRecurring", _xs_bool(entry.index is not None)),
        "MeetingRequestWasSent": lambda: add("MeetingRequestWasSent", "false"),
        "IsResponseRequested": lambda: add("IsResponseRequested", "false"),
        "CalendarItemType": lambda: add("CalendarItemType", _item_type(entry)),
        "MyResponseType": lambda: add("MyResponseType", "Organizer" if item.organizer is None else "Accept"),
        "Organizer": lambda: _mailbox(add("Organizer"), organizer, name_only=found),
        "Duration": lambda: add("Duration", _duration(entry)),
        "AppointmentSequenceNumber": lambda: add("AppointmentSequenceNumber", "0"),
        "AppointmentState": lambda: add("AppointmentState", "1" if item.origin == "outlook" else "0"),
        "Recurrence": lambda: _recurrence_out(out, item) if entry.index is None else None,
        "StartTimeZone": lambda: add("StartTimeZone", Id=item.start_time_zone or "UTC"),
        "EndTimeZone": lambda: add("EndTimeZone", Id=item.end_time_zone or item.start_time_zone or "UTC"),
        "IsOrganizer": lambda: add("IsOrganizer", _xs_bool(item.organizer is None)),
    }
    for tag in ORDER:
        if tag in shape.fields or (tag == "ExtendedProperty" and shape.extended):
            writers[tag]()
    return out


def _item_type(entry: Occurrence) -> str:
    if entry.index is not None:
        return "Occurrence"
    return "RecurringMaster" if entry.item.recurrence is not None else "Single"


def _xs_bool(value: bool) -> str:
    return "true" if value else "false"


def _duration(entry: Occurrence) -> str:
    seconds = int((entry.end - entry.start).total_seconds())
    return f"PT{seconds // 3600}H{seconds % 3600 // 60}M{seconds % 60}S"


def _categories(parent: Element, categories: tuple[str, ...]) -> None:
    for category in categories:
        etree.SubElement(parent, t("String")).text = category


def _mailbox(parent: Element, person: Person, *, name_only: bool = False) -> None:
    mailbox = etree.SubElement(parent, t("Mailbox"))
    etree.SubElement(mailbox, t("Name")).text = person.name
    if name_only:
        return
    etree.SubElement(mailbox, t("EmailAddress")).text = person.smtp
    etree.SubElement(mailbox, t("RoutingType")).text = "SMTP"


def _extended(parent: Element, item: CalendarItem, wanted: frozenset[ExtendedKey]) -> None:
    for key in sorted(wanted & item.extended.keys(), key=lambda k: (k.property_set, k.name)):
        prop = etree.SubElement(parent, t("ExtendedProperty"))
        uri_attrs = {"PropertyType": key.type}
        if key.property_set in ("PublicStrings", "Common", "Appointment", "Meeting", "Address", "InternetHeaders",
                                "CalendarAssistant", "UnifiedMessaging", "Task", "Sharing"):
            uri_attrs["DistinguishedPropertySetId"] = key.property_set
        elif key.property_set:
            uri_attrs["PropertySetId"] = key.property_set
        uri_attrs["PropertyName" if not key.name.startswith("0x") else "PropertyTag"] = key.name
        etree.SubElement(prop, t("ExtendedFieldURI"), uri_attrs)
        value = item.extended[key]
        if isinstance(value, tuple):
            values = etree.SubElement(prop, t("Values"))
            for one in value:
                etree.SubElement(values, t("Value")).text = one
        else:
            etree.SubElement(prop, t("Value")).text = value


def _recurrence_out(parent: Element, item: CalendarItem) -> None:
    rule = item.recurrence
    if rule is None:
        return
    out = etree.SubElement(parent, t("Recurrence"))
    if rule.pattern == "daily":
        pattern = etree.SubElement(out, t("DailyRecurrence"))
        etree.SubElement(pattern, t("Interval")).text = str(rule.interval)
    else:
        pattern = etree.SubElement(out, t("WeeklyRecurrence"))
        etree.SubElement(pattern, t("Interval")).text = str(rule.interval)
        weekdays = rule.weekdays or (item.start.weekday(),)
        etree.SubElement(pattern, t("DaysOfWeek")).text = " ".join(_WEEKDAYS[d] for d in sorted(weekdays))
    first = item.start.date().isoformat()
    if rule.count is not None:
        series = etree.SubElement(out, t("NumberedRecurrence"))
        etree.SubElement(series, t("StartDate")).text = first
        etree.SubElement(series, t("NumberOfOccurrences")).text = str(rule.count)
    elif rule.until is not None:
        series = etree.SubElement(out, t("EndDateRecurrence"))
        etree.SubElement(series, t("StartDate")).text = first
        etree.SubElement(series, t("EndDate")).text = rule.until.isoformat()
    else:
        series = etree.SubElement(out, t("NoEndRecurrence"))
        etree.SubElement(series, t("StartDate")).text = first

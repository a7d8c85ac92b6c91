"""GetServerTimeZones and GetUserAvailability (free/busy), answered the way Exchange 2016 answers them.

exchangelib's `protocol.get_free_busy_info()` first asks GetServerTimeZones for the full definition of the start
time's zone, derives a `t:TimeZone` (Bias + StandardTime/DaylightTime) from it and sends that with every
GetUserAvailabilityRequest (at most 100 mailboxes each). Event times in the answer are naive local times of that
`t:TimeZone`, so the rules in the request, not the simulator's idea of the zone, decide the wall-clock times.

Choices made where Exchange leaves room (each mirrors what Exchange 2013-2019 on-premises does):

- Request-wide problems (more than 100 mailboxes, a bad time window, interval or view) fail the whole request
  with a SOAP fault: GetUserAvailabilityResponse has no message of its own to carry them.
- A mailbox that does not resolve gets its own ResponseMessage error ErrorMailRecipientNotFound (exchangelib yields
  it as an exception object among the results); the others are still answered, in request order.
- A caller without free/busy permission on the calendar (the simulator's Access.NONE; Exchange's calendar
  permission "None") gets ErrorNoFreeBusyAccess for that mailbox, again per mailbox, not for the request.
  exchangelib only hands ErrorMailRecipientNotFound back as an object: it raises ErrorNoFreeBusyAccess while
  iterating, after yielding the answers before it.
- An account holding ApplicationImpersonation but not impersonating is an ordinary user: the calendar's Default
  permission (AvailabilityOnly) applies, unless its rights name the mailbox otherwise.
- An account with free/busy permission only (Exchange's AvailabilityOnly) gets times and BusyType: asked for a
  Detailed view it is downgraded to FreeBusy(Merged), the view type in the answer says so, and no
  CalendarEventDetails are sent. Details need read access to the calendar (Reviewer or more).
- CalendarEventArray lists Tentative, Busy, OOF and WorkingElsewhere items; Free ones are not listed.
  MergedFreeBusy digits: 0 Free, 1 Tentative, 2 Busy, 3 OOF (4 NoData is never produced for a mailbox the caller
  may see); WorkingElsewhere has no digit of its own and merges as 2 (Busy): read the events to tell them apart.
- WorkingHours are left out (optional in the schema; exchangelib copes without them).
- GetServerTimeZones with an Id the simulator does not know answers ErrorTimeZone (with the empty
  TimeZoneDefinitions the schema requires); without Ids it lists every zone of timezones.WINDOWS_TO_IANA.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo

from lxml import etree

from spacesync.exchange_simulator.calendar import FreeBusy, Occurrence
from spacesync.exchange_simulator.ews.context import Handler, Need, RequestContext
from spacesync.exchange_simulator.ews.soap import (
    NSMAP,
    Element,
    SoapFault,
    error,
    error_message,
    m,
    response,
    success,
    t,
    text_of,
)
from spacesync.exchange_simulator.seed import Access
from spacesync.exchange_simulator.timezones import (
    WEEKDAYS,
    RuleZone,
    TimeZoneDefinition,
    TransitionRule,
    definition,
    known_ids,
)

MAX_MAILBOXES = 100  # Exchange's limit of MailboxData per GetUserAvailabilityRequest
MAX_WINDOW = timedelta(days=62)  # Exchange 2013+ answers free/busy for at most 62 days at a time
MERGED_INTERVAL_MINUTES = (5, 1440)  # the range Exchange accepts for MergedFreeBusyIntervalInMinutes
VIEWS = ("MergedOnly", "FreeBusy", "FreeBusyMerged", "Detailed", "DetailedMerged")
_MERGED_VIEWS = {"MergedOnly", "FreeBusyMerged", "DetailedMerged"}
_DETAILED_VIEWS = {"Detailed", "DetailedMerged"}
_LISTED = {FreeBusy.TENTATIVE, FreeBusy.BUSY, FreeBusy.OOF, FreeBusy.WORKING_ELSEWHERE}
_DIGITS = {FreeBusy.TENTATIVE: 1, FreeBusy.BUSY: 2, FreeBusy.OOF: 3, FreeBusy.WORKING_ELSEWHERE: 2}
_AVAILABILITY = "Microsoft.Exchange.InfoWorker.Common.Availability."


# --- GetServerTimeZones ---------------------------------------------------------------------------------------------


def xs_duration(delta: timedelta) -> str:
    """A timedelta as Exchange writes an xs:duration: -PT1H, PT2H, -PT5H30M, PT0H."""
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}PT{hours}H" if hours or not (minutes or seconds) else f"{sign}PT"
    if minutes:
        text += f"{minutes}M"
    if seconds:
        text += f"{seconds}S"
    return text


def definition_element(zone: TimeZoneDefinition, full: bool = True) -> Element:
    """`t:TimeZoneDefinition`: Id and Name, and with `full` the periods, transition groups and transitions."""
    element = etree.Element(t("TimeZoneDefinition"), Id=zone.id, Name=zone.name)
    if not full:
        return element
    periods = etree.SubElement(element, t("Periods"))
    for period in zone.periods:
        etree.SubElement(periods, t("Period"), Bias=xs_duration(period.bias), Name=period.name, Id=period.id)
    groups = etree.SubElement(element, t("TransitionsGroups"))
    for group in zone.groups:
        group_element = etree.SubElement(groups, t("TransitionsGroup"), Id=group.id)
        if group.to_period is not None:
            plain = etree.SubElement(group_element, t("Transition"))
            etree.SubElement(plain, t("To"), Kind="Period").text = group.to_period
        for rule in group.recurring:
            recurring = etree.SubElement(group_element, t("RecurringDayTransition"))
            etree.SubElement(recurring, t("To"), Kind="Period").text = rule.to
            etree.SubElement(recurring, t("TimeOffset")).text = xs_duration(rule.time_offset)
            etree.SubElement(recurring, t("Month")).text = str(rule.month)
            etree.SubElement(recurring, t("DayOfWeek")).text = rule.day_of_week
            etree.SubElement(recurring, t("Occurrence")).text = str(rule.occurrence)
    transitions = etree.SubElement(element, t("Transitions"))
    for start in zone.transitions:
        if start.since is None:
            transition = etree.SubElement(transitions, t("Transition"))
            etree.SubElement(transition, t("To"), Kind="Group").text = start.group
        else:
            transition = etree.SubElement(transitions, t("AbsoluteDateTransition"))
            etree.SubElement(transition, t("To"), Kind="Group").text = start.group
            etree.SubElement(transition, t("DateTime")).text = f"{start.since.isoformat()}T00:00:00"
    return element


def get_server_time_zones(context: RequestContext, request: Element) -> Element:
    full = request.get("ReturnFullTimeZoneData", "false").strip().lower() in ("true", "1")
    ids = request.find("m:Ids", NSMAP)
    wanted = [(item.text or "").strip() for item in ids.findall("t:Id", NSMAP)] if ids is not None else known_ids()
    found = [(zone_id, definition(zone_id)) for zone_id in wanted]
    unknown = [zone_id for zone_id, zone in found if zone is None]
    if unknown:
        message = error_message("GetServerTimeZonesResponseMessage", error(
            "ErrorTimeZone", f"The time zone '{unknown[0]}' is not a valid Windows time zone id."))
        etree.SubElement(message, m("TimeZoneDefinitions"))  # required by the schema, even in an error
        return response("GetServerTimeZones", [message])
    message = success("GetServerTimeZonesResponseMessage")
    container = etree.SubElement(message, m("TimeZoneDefinitions"))
    container.extend(definition_element(zone, full) for _, zone in found if zone is not None)
    return response("GetServerTimeZones", [message])


# --- GetUserAvailability --------------------------------------------------------------------------------------------


def _fault(code: str, message: str) -> SoapFault:
    return SoapFault(code, message, fault_code=f"a:{code}")


def _int(parent: Element, path: str, default: int | None = None) -> int:
    text = text_of(parent, path)
    if text is None or not text.strip():
        if default is None:
            raise _fault("ErrorSchemaValidation", f"The request failed schema validation: {path} is missing.")
        return default
    try:
        return int(text.strip())
    except ValueError:
        raise _fault("ErrorSchemaValidation", f"The request failed schema validation: {path} "
                                              f"'{text}' is not an integer.") from None


def _transition_rule(element: Element | None) -> TransitionRule | None:
    if element is None:
        return None
    clock = (text_of(element, "t:Time") or "00:00:00").strip()
    weekday = (text_of(element, "t:DayOfWeek") or "").strip()
    try:
        hours, minutes, *seconds = (int(part) for part in clock.split(":"))
        time_of_day = timedelta(hours=hours, minutes=minutes, seconds=seconds[0] if seconds else 0)
    except ValueError:
        raise _fault("ErrorSchemaValidation", f"The request failed schema validation: Time '{clock}'.") from None
    if weekday not in WEEKDAYS:
        raise _fault("ErrorSchemaValidation", f"The request failed schema validation: DayOfWeek '{weekday}'.")
    month = _int(element, "t:Month")
    if not 0 <= month <= 12:
        raise _fault("ErrorTimeZone", f"The time zone's Month {month} is not valid.")
    return TransitionRule(month, WEEKDAYS.index(weekday), _int(element, "t:DayOrder"), time_of_day,
                          _int(element, "t:Bias", 0))


def request_zone(element: Element | None) -> tzinfo:
    """The tzinfo of GetUserAvailability's `t:TimeZone` (UTC when the request has none)."""
    if element is None:
        return UTC
    return RuleZone(_int(element, "t:Bias", 0), _transition_rule(element.find("t:StandardTime", NSMAP)),
                    _transition_rule(element.find("t:DaylightTime", NSMAP)))


def _window_time(options: Element, field: str, zone: tzinfo) -> datetime:
    text = (text_of(options, f"t:TimeWindow/t:{field}") or "").strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fault("ErrorSchemaValidation", f"The request failed schema validation: {field} '{text}' is not "
                                              "a valid dateTime.") from None
    # Without an offset the time is local to the request's TimeZone, as Exchange reads it.
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


def _local_text(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


def _granted(context: RequestContext, smtp: str) -> int:
    if context.impersonating is None and context.account.access_to(smtp) == Access.IMPERSONATION:
        # An ApplicationImpersonation account that is not impersonating is an ordinary user of the organisation:
        # the calendar's Default permission (AvailabilityOnly) applies, as it does for anyone.
        return Need.FREEBUSY
    return context.granted(smtp)


def _failed(code: str, text: str, exception: str, exception_code: int | None) -> Element:
    """A FreeBusyResponse for one mailbox that could not be answered, as Exchange writes it."""
    answer = etree.Element(m("FreeBusyResponse"))
    message = etree.SubElement(answer, m("ResponseMessage"), ResponseClass="Error")
    etree.SubElement(message, m("MessageText")).text = text
    etree.SubElement(message, m("ResponseCode")).text = code
    etree.SubElement(message, m("DescriptiveLinkKey")).text = "0"
    xml = etree.SubElement(message, m("MessageXml"))
    etree.SubElement(xml, t("ExceptionType")).text = _AVAILABILITY + exception
    if exception_code is not None:
        etree.SubElement(xml, t("ExceptionCode")).text = str(exception_code)
    view = etree.SubElement(answer, m("FreeBusyView"))
    etree.SubElement(view, t("FreeBusyViewType")).text = "None"
    return answer


def _merged(occurrences: list[Occurrence], start: datetime, end: datetime, interval: timedelta) -> str:
    slots = max(1, math.ceil((end - start) / interval))
    digits = [0] * slots
    for occurrence in occurrences:
        first = max(0, math.floor((occurrence.start - start) / interval))
        last = min(slots, math.ceil((occurrence.end - start) / interval))
        digit = _DIGITS[occurrence.item.free_busy]
        for slot in range(first, last):
            digits[slot] = max(digits[slot], digit)
    return "".join(str(digit) for digit in digits)


def _event(parent: Element, occurrence: Occurrence, zone: tzinfo, details: bool) -> None:
    item = occurrence.item
    event = etree.SubElement(parent, t("CalendarEvent"))
    etree.SubElement(event, t("StartTime")).text = _local_text(occurrence.start, zone)
    etree.SubElement(event, t("EndTime")).text = _local_text(occurrence.end, zone)
    etree.SubElement(event, t("BusyType")).text = item.free_busy.value
    if not details:
        return
    flags = {
        "IsMeeting": item.organizer is not None and item.organizer.smtp.lower() != item.mailbox,
        "IsRecurring": occurrence.index is not None,
        "IsException": False,
        "IsReminderSet": item.reminder_is_set,
        "IsPrivate": item.sensitivity == "Private",
    }
    info = etree.SubElement(event, t("CalendarEventDetails"))
    etree.SubElement(info, t("ID")).text = item.id
    etree.SubElement(info, t("Subject")).text = item.subject
    etree.SubElement(info, t("Location")).text = item.location
    for name, value in flags.items():
        etree.SubElement(info, t(name)).text = "true" if value else "false"


def _free_busy(context: RequestContext, known: set[str], entry: Element, zone: tzinfo, start: datetime,
               end: datetime, interval: timedelta, view: str) -> Element:
    address = (text_of(entry, "t:Email/t:Address") or "").strip().lower()
    if address not in known or address not in context.calendars.mailboxes:
        return _failed("ErrorMailRecipientNotFound",
                       f"Unable to resolve e-mail address <>;SMTP:{address} to an Active Directory object.",
                       "MailRecipientNotFoundException", 5009)
    granted = _granted(context, address)
    if granted < Need.FREEBUSY:
        return _failed("ErrorNoFreeBusyAccess",
                       f"The requester does not have permission to view free/busy information for {address}.",
                       "NoFreeBusyAccessException", None)
    details = view in _DETAILED_VIEWS and granted >= Need.READ
    given = view.replace("Detailed", "FreeBusy") if view in _DETAILED_VIEWS and not details else view
    occurrences = [o for o in context.calendars.view(address, start, end) if o.item.free_busy in _LISTED]
    answer = etree.Element(m("FreeBusyResponse"))
    answer.append(success("ResponseMessage"))
    free_busy_view = etree.SubElement(answer, m("FreeBusyView"))
    etree.SubElement(free_busy_view, t("FreeBusyViewType")).text = given
    if given in _MERGED_VIEWS:
        etree.SubElement(free_busy_view, t("MergedFreeBusy")).text = _merged(occurrences, start, end, interval)
    if given != "MergedOnly" and occurrences:
        events = etree.SubElement(free_busy_view, t("CalendarEventArray"))
        for occurrence in occurrences:
            _event(events, occurrence, zone, details)
    return answer


def get_user_availability(context: RequestContext, request: Element) -> Element:
    array = request.find("m:MailboxDataArray", NSMAP)
    entries = array.findall("t:MailboxData", NSMAP) if array is not None else []
    if len(entries) > MAX_MAILBOXES:
        raise _fault("ErrorMailboxDataArrayTooBig", f"There are too many target mailboxes requested: {len(entries)}."
                                                    f" The maximum allowed is {MAX_MAILBOXES}.")
    options = request.find("t:FreeBusyViewOptions", NSMAP)
    if options is None:
        raise _fault("ErrorSchemaValidation", "The simulator answers free/busy requests (FreeBusyViewOptions) "
                                              "only; meeting suggestions are not implemented.")
    zone = request_zone(request.find("t:TimeZone", NSMAP))
    start, end = _window_time(options, "StartTime", zone), _window_time(options, "EndTime", zone)
    if end <= start:
        raise _fault("ErrorInvalidTimeInterval", "The specified time interval is invalid: "
                                                 "StartTime must be earlier than EndTime.")
    if end - start > MAX_WINDOW:
        raise _fault("ErrorTimeIntervalTooBig", f"The time interval specified is too big. "
                                                f"Max allowed is {MAX_WINDOW.days} days.")
    minutes = _int(options, "t:MergedFreeBusyIntervalInMinutes", 30)
    low, high = MERGED_INTERVAL_MINUTES
    if not low <= minutes <= high:
        raise _fault("ErrorInvalidMergedFreeBusyInterval", f"The MergedFreeBusyIntervalInMinutes {minutes} is "
                                                           f"invalid; it must be between {low} and {high}.")
    view = " ".join((text_of(options, "t:RequestedView") or "").split())
    if view not in VIEWS:
        raise _fault("ErrorInvalidFreeBusyViewType", f"The requested free/busy view type '{view}' is invalid.")
    known = {mailbox.smtp for mailbox in context.seed.mailboxes}
    answers = [_free_busy(context, known, entry, zone, start, end, timedelta(minutes=minutes), view)
               for entry in entries]
    outer = etree.Element(m("GetUserAvailabilityResponse"), nsmap={"m": NSMAP["m"], "t": NSMAP["t"]})
    etree.SubElement(outer, m("FreeBusyResponseArray")).extend(answers)
    return outer


HANDLERS: dict[str, Handler] = {
    "GetServerTimeZones": get_server_time_zones,
    "GetUserAvailabilityRequest": get_user_availability,
}

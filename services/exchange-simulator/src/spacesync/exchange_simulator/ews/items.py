"""CreateItem, UpdateItem, DeleteItem, GetItem and FindItem on calendar items."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from lxml import etree

from spacesync.exchange_simulator import timezones
from spacesync.exchange_simulator.calendar import CalendarItem, ItemNotFound, Occurrence, StaleChangeKey
from spacesync.exchange_simulator.ews import item_xml
from spacesync.exchange_simulator.ews.context import Handler, Need, RequestContext
from spacesync.exchange_simulator.ews.folders import calendar_of, folder_id
from spacesync.exchange_simulator.ews.restriction import matches
from spacesync.exchange_simulator.ews.soap import (
    NSMAP,
    Element,
    EwsError,
    error,
    error_message,
    m,
    parse_time,
    response,
    success,
)


def _children(parent: Element | None) -> list[Element]:
    return list(parent) if parent is not None else []


def _message(tag: str, item: CalendarItem | None = None, entry_id: str | None = None) -> Element:
    message = success(tag)
    if item is not None:
        items = etree.SubElement(message, m("Items"))
        rendered = etree.SubElement(items, f"{{{NSMAP['t']}}}CalendarItem")
        etree.SubElement(rendered, f"{{{NSMAP['t']}}}ItemId", Id=entry_id or item.id, ChangeKey=item.change_key)
    return message


def _item_zone(context: RequestContext, element: Element) -> str:
    """The IANA zone a recurring series repeats in: its StartTimeZone, else the request's TimeZoneContext."""
    zone_element = element.find("t:StartTimeZone", NSMAP)
    windows_id = zone_element.get("Id") if zone_element is not None else context.time_zone
    zone = timezones.iana_for(windows_id) if windows_id else None
    return str(zone.key) if zone is not None else "UTC"


def create_item(context: RequestContext, request: Element) -> Element:
    messages = []
    try:
        mailbox = calendar_of(context, request.find("m:SavedItemFolderId", NSMAP), Need.WRITE)
    except EwsError as failure:
        count = max(1, len(_children(request.find("m:Items", NSMAP))))
        return response("CreateItem", [error_message("CreateItemResponseMessage", failure, "Items")
                                       for _ in range(count)])
    for element in _children(request.find("m:Items", NSMAP)):
        try:
            if etree.QName(element).localname != "CalendarItem":
                raise error("ErrorInvalidOperation", "The simulator keeps calendar items only.")
            draft = CalendarItem(id="", change_key="", mailbox=mailbox)
            zone = _item_zone(context, element)
            for child in element:
                item_xml.apply_field(draft, child, zone)
            if draft.end < draft.start:
                raise error("ErrorCalendarEndDateIsEarlierThanStartDate")
            stored = context.calendars.create(mailbox, draft)
            messages.append(_message("CreateItemResponseMessage", stored))
        except EwsError as failure:
            messages.append(error_message("CreateItemResponseMessage", failure, "Items"))
    return response("CreateItem", messages)


def _writable(context: RequestContext, item_id: str) -> CalendarItem:
    item = context.calendars.find(item_id)
    context.require(item.mailbox, Need.WRITE)
    return item


def update_item(context: RequestContext, request: Element) -> Element:
    overwrite = request.get("ConflictResolution") == "AlwaysOverwrite"
    messages = []
    for change in _children(request.find("m:ItemChanges", NSMAP)):
        try:
            id_element = change.find("t:ItemId", NSMAP)
            if id_element is None:
                raise error("ErrorInvalidOperation", "Only items are updated here, not occurrences by index.")
            item_id = id_element.get("Id", "")
            item = _writable(context, item_id)
            if item_id != item.id:
                raise error("ErrorInvalidOperation", "The simulator does not modify single occurrences of a series.")
            updated = context.calendars.update(
                item_id, None if overwrite else id_element.get("ChangeKey"),
                partial(_apply_updates, context, updates=change.find("t:Updates", NSMAP)))
            message = _message("UpdateItemResponseMessage", updated)
            conflicts = etree.SubElement(message, m("ConflictResults"))
            etree.SubElement(conflicts, f"{{{NSMAP['t']}}}Count").text = "0"
            messages.append(message)
        except (ItemNotFound, StaleChangeKey) as missing:
            code = "ErrorItemNotFound" if isinstance(missing, ItemNotFound) else "ErrorIrresolvableConflict"
            messages.append(error_message("UpdateItemResponseMessage", error(code), "Items"))
        except EwsError as failure:
            messages.append(error_message("UpdateItemResponseMessage", failure, "Items"))
    return response("UpdateItem", messages)


def _apply_updates(context: RequestContext, item: CalendarItem, *, updates: Element | None) -> None:
    # Work on a copy so an invalid update changes nothing.
    draft = replace(item, extended=dict(item.extended))
    for update in _children(updates):
        kind = etree.QName(update).localname
        if kind == "DeleteItemField":
            item_xml.clear_field(draft, update[0])
            continue
        holder = update.find("t:CalendarItem", NSMAP)
        if holder is None:
            continue
        zone = _item_zone(context, holder)
        for child in holder:
            item_xml.apply_field(draft, child, zone)
    if draft.end < draft.start:
        raise error("ErrorCalendarEndDateIsEarlierThanStartDate")
    for name in ("subject", "body", "body_type", "sensitivity", "importance", "reminder_is_set", "reminder_minutes",
                 "categories", "start", "end", "start_time_zone", "end_time_zone", "is_all_day", "free_busy",
                 "location", "extended", "recurrence"):
        setattr(item, name, getattr(draft, name))


def delete_item(context: RequestContext, request: Element) -> Element:
    messages = []
    for id_element in _children(request.find("m:ItemIds", NSMAP)):
        try:
            item_id = id_element.get("Id", "")
            item = _writable(context, item_id)
            if item_id != item.id:
                raise error("ErrorInvalidOperation", "The simulator does not delete single occurrences of a series.")
            context.calendars.delete(item.id)
            messages.append(success("DeleteItemResponseMessage"))
        except ItemNotFound:
            messages.append(error_message("DeleteItemResponseMessage", error("ErrorItemNotFound")))
        except EwsError as failure:
            messages.append(error_message("DeleteItemResponseMessage", failure))
    return response("DeleteItem", messages)


def _render(context: RequestContext, entry: Occurrence, shape: item_xml.Shape, *, found: bool = False) -> Element:
    mailbox = context.mailbox(entry.item.mailbox)
    return item_xml.render(entry, shape, folder_id(mailbox.smtp, "calendar"), mailbox.name, found=found)


def get_item(context: RequestContext, request: Element) -> Element:
    shape = item_xml.Shape.read(request.find("m:ItemShape", NSMAP))
    messages = []
    for id_element in _children(request.find("m:ItemIds", NSMAP)):
        try:
            entry = context.calendars.occurrence(id_element.get("Id", ""))
            context.require(entry.item.mailbox, Need.READ)
            message = success("GetItemResponseMessage")
            etree.SubElement(message, m("Items")).append(_render(context, entry, shape))
            messages.append(message)
        except ItemNotFound:
            messages.append(error_message("GetItemResponseMessage", error("ErrorItemNotFound"), "Items"))
        except EwsError as failure:
            messages.append(error_message("GetItemResponseMessage", failure, "Items"))
    return response("GetItem", messages)


def find_item(context: RequestContext, request: Element) -> Element:
    shape = item_xml.Shape.read(request.find("m:ItemShape", NSMAP))
    messages = []
    for parent in _children(request.find("m:ParentFolderIds", NSMAP)):
        try:
            holder = etree.Element(m("ParentFolderIds"))
            holder.append(etree.fromstring(etree.tostring(parent)))
            mailbox = calendar_of(context, holder, Need.READ)
            entries, total, offset, last = _find(context, mailbox, request)
            message = success("FindItemResponseMessage")
            attrs = {"TotalItemsInView": str(total), "IncludesLastItemInRange": "true" if last else "false"}
            if offset is not None:
                attrs = {"IndexedPagingOffset": str(offset), **attrs}
            root = etree.SubElement(message, m("RootFolder"), attrs)
            items = etree.SubElement(root, f"{{{NSMAP['t']}}}Items")
            for entry in entries:
                items.append(_render(context, entry, shape, found=True))
            messages.append(message)
        except EwsError as failure:
            messages.append(error_message("FindItemResponseMessage", failure))
    return response("FindItem", messages)


def _find(context: RequestContext, mailbox: str, request: Element,
          ) -> tuple[list[Occurrence], int, int | None, bool]:
    """(entries, total in the view, next offset for indexed paging, includes the last item)."""
    restriction = request.find("m:Restriction", NSMAP)
    view = request.find("m:CalendarView", NSMAP)
    if view is not None:
        if restriction is not None:
            raise error("ErrorInvalidRestriction", "Restrictions and sort order may not be specified for a "
                                                   "CalendarView.")
        start = parse_time(view.get("StartDate"), "StartDate")
        end = parse_time(view.get("EndDate"), "EndDate")
        if end < start:
            raise error("ErrorCalendarEndDateIsEarlierThanStartDate")
        entries = context.calendars.view(mailbox, start, end)
        limit = view.get("MaxEntriesReturned")
        if limit is not None and len(entries) > int(limit):
            # Exchange fails the whole view rather than truncating it.
            raise error("ErrorExceededFindCountLimit",
                        "The number of items in the view exceeds MaxEntriesReturned.")
        return entries, len(entries), None, True
    masters = [Occurrence(item, item.start, item.end) for item in context.calendars.items(mailbox)]
    if restriction is not None and len(restriction):
        masters = [entry for entry in masters if matches(restriction[0], entry.item)]
    paging = request.find("m:IndexedPageItemView", NSMAP)
    if paging is None:
        return masters, len(masters), None, True
    offset = int(paging.get("Offset", "0"))
    size = int(paging.get("MaxEntriesReturned", str(len(masters) or 1)))
    if paging.get("BasePoint") == "End":
        offset = max(0, len(masters) - offset - size)
    page = masters[offset:offset + size]
    next_offset = offset + len(page)
    return page, len(masters), next_offset, next_offset >= len(masters)


HANDLERS: dict[str, Handler] = {
    "CreateItem": create_item,
    "UpdateItem": update_item,
    "DeleteItem": delete_item,
    "GetItem": get_item,
    "FindItem": find_item,
}

"""FindItem Restriction: the search expressions exchangelib's filter() sends, evaluated on one item."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from lxml import etree

from spacesync.exchange_simulator.calendar import CalendarItem
from spacesync.exchange_simulator.ews import item_xml
from spacesync.exchange_simulator.ews.soap import NSMAP, Element, error, parse_time

_FIELDS: dict[str, Callable[[CalendarItem], Any]] = {
    "item:Subject": lambda item: item.subject,
    "item:Body": lambda item: item.body,
    "calendar:Location": lambda item: item.location,
    "calendar:Start": lambda item: item.start,
    "calendar:End": lambda item: item.end,
    "calendar:LegacyFreeBusyStatus": lambda item: item.free_busy.value,
    "calendar:UID": lambda item: item.uid,
    "calendar:IsAllDayEvent": lambda item: item.is_all_day,
    "item:DateTimeCreated": lambda item: item.created,
    "item:LastModifiedTime": lambda item: item.modified,
}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "IsEqualTo": lambda a, b: a == b,
    "IsNotEqualTo": lambda a, b: a != b,
    "IsGreaterThan": lambda a, b: a > b,
    "IsGreaterThanOrEqualTo": lambda a, b: a >= b,
    "IsLessThan": lambda a, b: a < b,
    "IsLessThanOrEqualTo": lambda a, b: a <= b,
}


def _value(item: CalendarItem, uri: Element) -> Any:
    kind = etree.QName(uri).localname
    if kind == "ExtendedFieldURI":
        return item.extended.get(item_xml.extended_key(uri))
    getter = _FIELDS.get(uri.get("FieldURI", ""))
    if getter is None:
        raise error("ErrorInvalidRestriction", f"The simulator cannot restrict on {uri.get('FieldURI')}.")
    return getter(item)


def _constant(reference: Any, text: str) -> Any:
    """The constant typed like the field it is compared with."""
    if isinstance(reference, datetime):
        return parse_time(text, "Constant")
    if isinstance(reference, bool):
        return text.lower() in ("1", "true")
    return text


def matches(expression: Element, item: CalendarItem) -> bool:
    kind = etree.QName(expression).localname
    if kind == "And":
        return all(matches(child, item) for child in expression)
    if kind == "Or":
        return any(matches(child, item) for child in expression)
    if kind == "Not":
        return not matches(expression[0], item)
    if kind == "Exists":
        return _value(item, expression[0]) not in (None, "")
    if kind == "Contains":
        value = _value(item, expression[0])
        constant = expression.find("t:Constant", NSMAP)
        needle = constant.get("Value", "") if constant is not None else ""
        if isinstance(value, tuple):
            return any(needle.lower() in one.lower() for one in value)
        return needle.lower() in str(value or "").lower()
    compare = _COMPARE.get(kind)
    if compare is None:
        raise error("ErrorInvalidRestriction", f"The simulator does not evaluate {kind}.")
    value = _value(item, expression[0])
    constant = expression.find("t:FieldURIOrConstant/t:Constant", NSMAP)
    if constant is None:
        raise error("ErrorInvalidRestriction", "Only comparisons with a constant are evaluated.")
    if value is None:
        return kind == "IsNotEqualTo"
    if isinstance(value, tuple):
        return any(compare(one, constant.get("Value", "")) for one in value)
    return compare(value, _constant(value, constant.get("Value", "")))

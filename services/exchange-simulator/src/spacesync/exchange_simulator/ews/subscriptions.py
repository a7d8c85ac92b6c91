"""Subscribe, GetEvents, GetStreamingEvents and Unsubscribe: pull and streaming notifications on calendars.

GetStreamingEvents answers with HTTP chunks, each a whole SOAP envelope, as Exchange does: ConnectionStatus OK at
once and then every heartbeat, Notifications as changes happen, errors for subscriptions it cannot (or no longer)
serve, and ConnectionStatus Closed when ConnectionTimeout minutes have passed, when no subscription is left, or
when the server shuts down. The model behind it is notifications.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from lxml import etree

from spacesync.exchange_simulator.ews.context import Handler, Need, RequestContext, Streamed
from spacesync.exchange_simulator.ews.folders import FOLDERS, folder_id, resolve_folder
from spacesync.exchange_simulator.ews.soap import (
    NSMAP,
    Element,
    EwsError,
    error,
    error_message,
    fault,
    m,
    response,
    success,
    t,
    text_of,
    utc_text,
)
from spacesync.exchange_simulator.notifications import (
    EVENT_TYPES,
    Batch,
    Caller,
    Event,
    Kind,
    SubscriptionError,
)

# Messages for the codes soap.MESSAGES does not know, worded as Exchange words them.
_MESSAGES = {
    "ErrorSubscriptionAccessDenied": "Access is denied. Only the subscription owner may access the subscription.",
    "ErrorSubscriptionDelegateAccessNotSupported": "Subscriptions are not supported for delegate user access.",
    "ErrorSubscriptionUnsubscribed": "The StreamingSubscription was unsubscribed while the current connection was "
                                     "servicing it.",
    "ErrorNewEventStreamConnectionOpened": "Another connection was opened against this subscription.",
    "ErrorInvalidPullSubscriptionId": "SubscriptionId is invalid. Subscription is not a pull subscription.",
    "ErrorInvalidSubscription": "Subscription is invalid. Subscription is not a streaming subscription.",
    "ErrorInvalidWatermark": "The watermark is not valid for this subscription.",
    "ErrorMissedNotificationEvents": "Events were missed: the subscription fell too far behind the mailbox.",
    "ErrorReadEventsFailed": "The events for this subscription are no longer available.",
}
_PARENT_CHANGE_KEY = "AQAAAA=="  # folders.py answers every folder with this ChangeKey


def _error(code: str, message: str | None = None) -> EwsError:
    return error(code, message or _MESSAGES.get(code))


def _caller(context: RequestContext) -> Caller:
    return Caller(context.account.username, context.impersonating)


# -- Subscribe -----------------------------------------------------------------------------------------------------


def subscribe(context: RequestContext, request: Element) -> Element:
    try:
        message = _subscribe(context, request)
    except EwsError as failure:
        message = error_message("SubscribeResponseMessage", failure)
    return response("Subscribe", [message])


def _subscribe(context: RequestContext, request: Element) -> Element:
    spec = request[0] if len(request) else None
    kind: Kind
    if spec is not None and etree.QName(spec).localname == "PullSubscriptionRequest":
        kind = "pull"
    elif spec is not None and etree.QName(spec).localname == "StreamingSubscriptionRequest":
        kind = "streaming"
    elif spec is not None and etree.QName(spec).localname == "PushSubscriptionRequest":
        raise _error("ErrorInvalidSubscriptionRequest", "The simulator does not send push notifications.")
    else:
        raise fault("ErrorSchemaValidation", "Subscribe needs a Pull- or StreamingSubscriptionRequest.")
    event_types = frozenset((element.text or "").strip() for element in spec.findall("t:EventTypes/t:EventType", NSMAP))
    if not event_types or not event_types <= EVENT_TYPES:
        raise fault("ErrorSchemaValidation", f"EventTypes must name some of {', '.join(sorted(EVENT_TYPES))}.")
    mailbox, folders = _subscribed_folders(context, spec)
    context.require(mailbox, Need.READ)
    if context.subscriptions.refuse_delegate_access and mailbox != context.own_mailbox:
        raise _error("ErrorSubscriptionDelegateAccessNotSupported")
    timeout = 30
    start = None
    if kind == "pull":
        timeout = _int_in(text_of(spec, "t:Timeout"), 1, 1440, "Timeout")
        # The schema puts Watermark in the types namespace; exchangelib sends it in the messages one.
        found = spec.find("{*}Watermark")
        start = (found.text or "").strip() if found is not None else None
    try:
        subscription = context.subscriptions.subscribe(kind, _caller(context), mailbox, event_types, folders,
                                                       timeout, start or None)
    except SubscriptionError as failure:
        raise _error(failure.code) from None
    message = success("SubscribeResponseMessage")
    etree.SubElement(message, m("SubscriptionId")).text = subscription.id
    if kind == "pull":
        etree.SubElement(message, m("Watermark")).text = subscription.last_watermark_sent
    return message


def _subscribed_folders(context: RequestContext, spec: Element) -> tuple[str, frozenset[str]]:
    """The mailbox and folder names a subscription request watches (all folders in one mailbox)."""
    folder_ids = spec.find("t:FolderIds", NSMAP)
    if folder_ids is not None and len(folder_ids):
        resolved = [resolve_folder(context, target) for target in folder_ids]
        mailboxes = {mailbox for mailbox, _ in resolved}
        if len(mailboxes) > 1:
            raise _error("ErrorInvalidSubscriptionRequest", "All folders of a subscription must be in one mailbox.")
        return mailboxes.pop(), frozenset(name for _, name in resolved)
    if spec.get("SubscribeToAllFolders") in ("true", "1"):
        own = context.own_mailbox
        if not own:
            raise error("ErrorNonExistentMailbox", SmtpAddress="")
        context.mailbox(own)
        return own, frozenset(FOLDERS)
    raise _error("ErrorInvalidSubscriptionRequest", "Name FolderIds or set SubscribeToAllFolders.")


def _int_in(text: str | None, low: int, high: int, name: str) -> int:
    value = (text or "").strip()
    if not value.lstrip("-").isdigit() or not low <= int(value) <= high:
        raise fault("ErrorSchemaValidation", f"{name} must be a whole number from {low} to {high}.")
    return int(value)


# -- GetEvents and Unsubscribe -------------------------------------------------------------------------------------


def get_events(context: RequestContext, request: Element) -> Element:
    subscription_id = (text_of(request, "m:SubscriptionId") or "").strip()
    last_watermark = (text_of(request, "m:Watermark") or "").strip()
    if not subscription_id or not last_watermark:
        raise fault("ErrorSchemaValidation", "GetEvents needs a SubscriptionId and a Watermark.")
    subscriptions = context.subscriptions
    try:
        subscription = subscriptions.get(subscription_id, _caller(context), "pull")
        batch = subscriptions.get_events(subscription, last_watermark)
    except SubscriptionError as failure:
        return response("GetEvents", [error_message("GetEventsResponseMessage", _error(failure.code))])
    message = success("GetEventsResponseMessage")
    message.append(_notification(m("Notification"), batch))
    return response("GetEvents", [message])


def unsubscribe(context: RequestContext, request: Element) -> Element:
    subscription_id = (text_of(request, "m:SubscriptionId") or "").strip()
    if not subscription_id:
        raise fault("ErrorSchemaValidation", "Unsubscribe needs a SubscriptionId.")
    try:
        context.subscriptions.unsubscribe(subscription_id, _caller(context))
        message = success("UnsubscribeResponseMessage")
    except SubscriptionError as failure:
        message = error_message("UnsubscribeResponseMessage", _error(failure.code))
    return response("Unsubscribe", [message])


def _notification(tag: str, batch: Batch) -> Element:
    """A NotificationType element: SubscriptionId, (pull: PreviousWatermark, MoreEvents), then the events."""
    notification = etree.Element(tag)
    etree.SubElement(notification, t("SubscriptionId")).text = batch.subscription_id
    if batch.previous_watermark is not None:
        etree.SubElement(notification, t("PreviousWatermark")).text = batch.previous_watermark
        etree.SubElement(notification, t("MoreEvents")).text = "true" if batch.more_events else "false"
    notification.extend(_event(event) for event in batch.events)
    return notification


def _event(event: Event) -> Element:
    element = etree.Element(t(event.kind))
    if event.watermark is not None:
        etree.SubElement(element, t("Watermark")).text = event.watermark
    if event.kind == "StatusEvent" or event.at is None or event.mailbox is None:
        return element
    etree.SubElement(element, t("TimeStamp")).text = utc_text(event.at)
    etree.SubElement(element, t("ItemId"), Id=event.item_id or "", ChangeKey=event.change_key or "")
    etree.SubElement(element, t("ParentFolderId"), Id=folder_id(event.mailbox, event.folder or "calendar"),
                     ChangeKey=_PARENT_CHANGE_KEY)
    return element


# -- GetStreamingEvents --------------------------------------------------------------------------------------------


def get_streaming_events(context: RequestContext, request: Element) -> Streamed:
    ids = [(element.text or "").strip() for element in request.findall("m:SubscriptionIds/t:SubscriptionId", NSMAP)]
    if not ids or not all(ids):
        raise fault("ErrorSchemaValidation", "GetStreamingEvents needs SubscriptionIds.")
    minutes = _int_in(text_of(request, "m:ConnectionTimeout"), 1, 30, "ConnectionTimeout")
    return Streamed(bodies=_stream(context, ids, minutes * 60.0))


async def _stream(context: RequestContext, ids: list[str], lifetime: float) -> AsyncIterator[Element]:
    subscriptions = context.subscriptions
    if subscriptions.max_stream_seconds is not None:
        lifetime = min(lifetime, subscriptions.max_stream_seconds)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime
    connection = subscriptions.connect(ids, _caller(context))
    # When the client goes away the endpoint stops reading this generator without closing it: release the
    # subscriptions when the request's task ends, however it ends.
    task = asyncio.current_task()
    if task is not None:
        task.add_done_callback(lambda _: subscriptions.disconnect(connection))
    try:
        if connection.subscriptions:
            yield _status("OK")
        heartbeat = loop.time() + subscriptions.heartbeat_seconds
        while connection.subscriptions and not subscriptions.closing and loop.time() < deadline:
            batches, errors = subscriptions.take_stream(connection)
            for body in _errors(errors):
                yield body
            if batches:
                yield _notifications(batches)
                continue
            now = loop.time()
            if now >= heartbeat:
                if now + 1 < deadline:
                    yield _status("OK")
                heartbeat = now + subscriptions.heartbeat_seconds
                continue
            await subscriptions.wait(connection, min(deadline, heartbeat) - now)
        for body in _errors(subscriptions.take_errors(connection)):
            yield body
        yield _status("Closed")
    finally:
        subscriptions.disconnect(connection)


def _streaming_response(message: Element) -> Element:
    return response("GetStreamingEvents", [message])


def _status(status: str) -> Element:
    message = success("GetStreamingEventsResponseMessage")
    etree.SubElement(message, m("ConnectionStatus")).text = status
    return _streaming_response(message)


def _notifications(batches: Iterable[Batch]) -> Element:
    message = success("GetStreamingEventsResponseMessage")
    container = etree.SubElement(message, m("Notifications"))
    container.extend(_notification(t("Notification"), batch) for batch in batches)
    return _streaming_response(message)


def _errors(errors: list[tuple[str, str]]) -> Iterable[Element]:
    """One error envelope per response code, naming the subscriptions it concerns (as Exchange groups them)."""
    grouped: dict[str, list[str]] = {}
    for code, subscription_id in errors:
        grouped.setdefault(code, []).append(subscription_id)
    for code, subscription_ids in grouped.items():
        message = error_message("GetStreamingEventsResponseMessage", _error(code))
        container = etree.SubElement(message, m("ErrorSubscriptionIds"))
        for subscription_id in subscription_ids:
            etree.SubElement(container, t("SubscriptionId")).text = subscription_id
        yield _streaming_response(message)


HANDLERS: dict[str, Handler] = {
    "Subscribe": subscribe,
    "GetEvents": get_events,
    "GetStreamingEvents": get_streaming_events,
    "Unsubscribe": unsubscribe,
}

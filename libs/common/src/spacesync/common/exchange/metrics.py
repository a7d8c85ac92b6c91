"""Prometheus metrics of the Exchange gateway (default registry). Labels never carry a user, mailbox or password."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "spacesync_ews_requests",
    "Exchange (EWS) calls made by the gateway, by operation and outcome "
    "(ok, item_gone, rejected, cancelled by the caller, or the connection problem: throttled, timeout, "
    "wrong_credentials, ...)",
    ["operation", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "spacesync_ews_request_seconds",
    "Time an Exchange (EWS) call took in its worker thread, by operation (throttling waits not included)",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0),
)
THROTTLED = Counter(
    "spacesync_ews_throttled",
    "Exchange answers asking the gateway to back off (ErrorServerBusy, HTTP 503)",
)
NOTIFICATIONS = Counter(
    "spacesync_ews_notifications",
    "Calendar change notifications received (a streamed notification, or a GetEvents round with changes), by mode",
    ["mode"],
)
SUBSCRIPTIONS = Gauge(
    "spacesync_ews_subscriptions",
    "Calendar subscriptions held by CalendarWatch, by mode (streaming, pull)",
    ["mode"],
)
RESUBSCRIBES = Counter(
    "spacesync_ews_resubscribes",
    "Calendars read again because events may have been missed, by reason (lost: Exchange dropped the "
    "subscription; missed: it lost events; dropped: a stream connection failed)",
    ["reason"],
)
DELEGATE_REFUSED = Gauge(
    "spacesync_ews_delegate_refused_mailboxes",
    "Watched mailboxes without notifications because Exchange refuses subscriptions made with delegate access "
    "(ErrorSubscriptionDelegateAccessNotSupported): they are read by polling; impersonation gets notifications",
)

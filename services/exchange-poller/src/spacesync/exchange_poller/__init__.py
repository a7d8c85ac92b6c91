"""Spacesync exchange-poller: the busy picture of paired resource calendars (Outlook meetings) onto
exchange.freebusy."""

"""What a booking slot looks like in Exchange: title by the location's rule, body, location. Pure."""

from __future__ import annotations

import hashlib

from spacesync.common.events.booking import BookingSlot, BookingState
from spacesync.common.events.catalog import TitleRule
from spacesync.common.exchange import Appointment, slot_stamp


def title(rule: TitleRule, booking: BookingState, *, nicknames_enabled: bool) -> str:
    """The seed's 'Outlook/Exchange Event Title' option. With 'public nickname', a booking without one (or a
    category without public nicknames) gets no title at all, never the patron's name."""
    patron = booking.patron
    name = f"{patron.first_name} {patron.last_name}"
    if rule is TitleRule.PATRON_NAME:
        return name
    if rule is TitleRule.PATRON_NAME_AND_EMAIL:
        return f"{name} ({patron.email})"
    return booking.public_nickname if nicknames_enabled and booking.public_nickname else ""


def body(booking: BookingState, slot: BookingSlot) -> str:
    patron = booking.patron
    return (f"Booked by {patron.first_name} {patron.last_name} <{patron.email}>\n"
            f"Booking reference: {booking.booking_id}\n"
            f"Time (UTC): {slot.start:%Y-%m-%d %H:%M} to {slot.end:%Y-%m-%d %H:%M}\n"
            "Written by Spacesync; change or cancel the booking in the booking system.")


def appointment(source: str, booking: BookingState, slot: BookingSlot, *, rule: TitleRule,
                nicknames_enabled: bool, space_name: str) -> Appointment:
    return Appointment(slot_id=slot_stamp(source, booking.booking_id, slot.slot_id), booking_id=booking.booking_id,
                       subject=title(rule, booking, nicknames_enabled=nicknames_enabled),
                       body=body(booking, slot), start=slot.start, end=slot.end, location=space_name)


def fingerprint(mailbox: str, appt: Appointment) -> str:
    """Identifies what was written, so an event that changes nothing visible costs no Exchange call."""
    text = "\0".join((mailbox.lower(), appt.subject, appt.body, appt.start.isoformat(), appt.end.isoformat(),
                      appt.location))
    return hashlib.sha256(text.encode()).hexdigest()[:32]

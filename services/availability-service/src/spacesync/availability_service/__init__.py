"""Spacesync availability-service: slot views folded from catalog, bookings and Exchange busy time; public and
admin APIs."""

"""Runs booking-service: `python -m spacesync.booking_service` (configuration from SPACESYNC_* variables)."""

from spacesync.booking_service.app import create_app
from spacesync.booking_service.settings import BookingServiceSettings
from spacesync.common.http import serve
from spacesync.common.logging import configure_logging
from spacesync.common.settings import load_settings


def main() -> None:
    settings = load_settings(BookingServiceSettings)
    configure_logging("booking-service", settings.log_level)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()

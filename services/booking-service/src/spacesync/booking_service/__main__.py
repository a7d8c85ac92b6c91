"""Runs booking-service: `python -m spacesync.booking_service` (configuration from SPACESYNC_* variables)."""

from spacesync.booking_service.app import create_app
from spacesync.booking_service.settings import BookingServiceSettings
from spacesync.common.http import serve
from spacesync.common.logging import configure_logging


def main() -> None:
    settings = BookingServiceSettings()  # admin_token is required: from the environment
    configure_logging("booking-service", settings.log_level)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()

"""Runs exchange-poller: `python -m spacesync.exchange_poller` (configuration from SPACESYNC_* variables)."""

from spacesync.common.http import serve
from spacesync.common.logging import configure_logging
from spacesync.common.settings import load_settings
from spacesync.exchange_poller.app import create_app
from spacesync.exchange_poller.settings import PollerSettings


def main() -> None:
    settings = load_settings(PollerSettings)
    configure_logging("exchange-poller", settings.log_level)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()

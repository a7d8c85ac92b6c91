"""Runs exchange-writer: `python -m spacesync.exchange_writer` (configuration from SPACESYNC_* variables)."""

from spacesync.common.http import serve
from spacesync.common.logging import configure_logging
from spacesync.common.settings import load_settings
from spacesync.exchange_writer.app import create_app
from spacesync.exchange_writer.settings import WriterSettings


def main() -> None:
    settings = load_settings(WriterSettings)
    configure_logging("exchange-writer", settings.log_level)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()

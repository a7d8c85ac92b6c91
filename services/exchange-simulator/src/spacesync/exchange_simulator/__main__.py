"""Runs the EWS simulator: `python -m spacesync.exchange_simulator` (configuration from SPACESYNC_SIMULATOR_*)."""

from __future__ import annotations

import logging

from aiohttp import web

from spacesync.common.logging import configure_logging
from spacesync.common.settings import load_settings
from spacesync.exchange_simulator.app import create_app
from spacesync.exchange_simulator.persistence import StateFileError
from spacesync.exchange_simulator.seed import SeedError, load_seed
from spacesync.exchange_simulator.settings import SimulatorSettings

log = logging.getLogger("spacesync.exchange_simulator")


def main() -> None:
    settings = load_settings(SimulatorSettings)
    configure_logging("exchange-simulator", settings.log_level)
    try:
        seed = load_seed(settings.seed_file)
        app = create_app(seed, settings.admin_token, settings.state_file)
    except (SeedError, StateFileError) as error:
        raise SystemExit(f"configuration error: {error}") from None
    log.info("EWS simulator (a test double, not Exchange) at http://%s:%d/EWS/Exchange.asmx with %d mailboxes",
             settings.http_host, settings.http_port, len(seed.mailboxes))
    web.run_app(app, host=settings.http_host, port=settings.http_port, access_log=None, print=None,
                shutdown_timeout=5)


if __name__ == "__main__":
    main()

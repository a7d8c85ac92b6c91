"""exchange-simulator settings: SPACESYNC_SIMULATOR_* (and SPACESYNC_HTTP_HOST/PORT like every service)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_SEED = Path(__file__).parent / "demo_seed.yaml"


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACESYNC_SIMULATOR_", extra="ignore", validate_by_name=True)

    http_host: str = Field(default="127.0.0.1",
                           validation_alias=AliasChoices("SPACESYNC_SIMULATOR_HTTP_HOST", "SPACESYNC_HTTP_HOST"))
    http_port: int = Field(default=8090,
                           validation_alias=AliasChoices("SPACESYNC_SIMULATOR_HTTP_PORT", "SPACESYNC_HTTP_PORT"))
    log_level: str = Field(default="INFO",
                           validation_alias=AliasChoices("SPACESYNC_SIMULATOR_LOG_LEVEL", "SPACESYNC_LOG_LEVEL"))
    # Mailboxes, accounts and rights (YAML or JSON); the default is the demo library's.
    seed_file: Path = DEMO_SEED
    # When set, calendars are loaded from this file at start (if it exists) and saved to it on shutdown.
    state_file: Path | None = None
    # Bearer token for the admin API; empty: the admin API is open (the simulator listens on loopback by default).
    admin_token: str = ""

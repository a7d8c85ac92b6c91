"""exchange-simulator settings (SPACESYNC_EWS_SIM_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACESYNC_EWS_SIM_", extra="ignore", validate_by_name=True)

    http_host: str = "127.0.0.1"
    http_port: int = 8090
    log_level: str = "INFO"
    seed_file: Path = Field(default=Path(__file__).parent / "demo_seed.yaml")
    # When set, calendars are loaded from this file at start (if it exists) and saved to it on shutdown.
    state_file: Path | None = None
    # Shared secret for the admin API; empty: the admin API is open (it listens on loopback by default).
    admin_token: str = ""

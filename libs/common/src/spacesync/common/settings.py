"""Configuration from environment variables (prefix SPACESYNC_), shared by every service."""

from __future__ import annotations

from typing import TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACESYNC_KAFKA_", extra="ignore", validate_by_name=True)

    # KAFKA_BOOTSTRAP_SERVERS is honoured too: it is what most tooling and CI set.
    bootstrap_servers: str = Field(
        default="127.0.0.1:39092",
        validation_alias=AliasChoices("SPACESYNC_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    # Prepended to every topic name, so environments (or test runs) can share one cluster.
    topic_prefix: str = ""
    topic_partitions: int = 6
    topic_replication_factor: int = 1
    client_id: str = "spacesync"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class PostgresSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACESYNC_POSTGRES_", extra="ignore", validate_by_name=True)

    dsn: SecretStr = Field(
        default=SecretStr("postgresql://spacesync:spacesync@127.0.0.1:35432/spacesync"),
        validation_alias=AliasChoices("SPACESYNC_POSTGRES_DSN", "DATABASE_URL"),
    )
    pool_min_size: int = 2
    pool_max_size: int = 10


class ServiceSettings(BaseSettings):
    """Settings every service has; a service subclasses it for its own."""

    model_config = SettingsConfigDict(env_prefix="SPACESYNC_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_level: str = "INFO"
    # Seconds the service waits for in-flight work when it gets SIGTERM.
    shutdown_grace_seconds: float = 20.0

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)


class EventServiceSettings(ServiceSettings):
    """A service with a PostgreSQL schema of its own that consumes events and publishes through an outbox."""

    schema_name: str
    event_source: str = Field(description="ce_source of the events it publishes")
    consumer_group: str
    create_topics: bool = True
    outbox_batch_size: int = 500
    outbox_poll_interval_seconds: float = 1.0


S = TypeVar("S", bound=BaseSettings)


def load_settings(settings_class: type[S]) -> S:
    """Reads the settings from the environment; a missing or invalid variable stops the service with its name."""
    try:
        return settings_class()
    except ValidationError as error:
        prefix = _env_prefix(settings_class, error.title)
        problems = [f"{prefix}{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()]
        raise SystemExit("configuration error: " + "; ".join(problems)) from None


def _env_prefix(settings_class: type[BaseSettings], failed: str) -> str:
    """The prefix of the settings class that failed: the class itself, or one of its nested settings (such as
    KafkaSettings, read from SPACESYNC_KAFKA_* by its own default factory)."""
    for field in settings_class.model_fields.values():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseSettings) and nested.__name__ == failed:
            return str(nested.model_config.get("env_prefix", ""))
    return str(settings_class.model_config.get("env_prefix", ""))

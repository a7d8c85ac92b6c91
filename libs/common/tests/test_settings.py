"""Configuration from the environment: aliases that tooling sets, and clear errors naming the variable."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from spacesync.common.settings import KafkaSettings, PostgresSettings, ServiceSettings, load_settings


class Needy(ServiceSettings):
    admin_token: SecretStr


def test_common_variable_names_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    for preferred in ("SPACESYNC_KAFKA_BOOTSTRAP_SERVERS", "SPACESYNC_POSTGRES_DSN"):  # e.g. from infra.sh env
        monkeypatch.delenv(preferred, raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db/app")
    monkeypatch.setenv("SPACESYNC_KAFKA_TOPIC_PREFIX", "staging.")
    kafka, postgres = KafkaSettings(), PostgresSettings()
    assert kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert kafka.topic("booking.events") == "staging.booking.events"
    assert postgres.dsn.get_secret_value() == "postgresql://u:secret@db/app"
    assert "secret" not in repr(postgres)  # a DSN's password never reaches a log line through repr


def test_missing_or_invalid_settings_stop_with_the_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPACESYNC_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("SPACESYNC_HTTP_PORT", "eighty")
    with pytest.raises(SystemExit) as stopped:
        load_settings(Needy)
    message = str(stopped.value)
    assert "SPACESYNC_ADMIN_TOKEN: Field required" in message
    assert "SPACESYNC_HTTP_PORT: Input should be a valid integer" in message


def test_an_invalid_nested_setting_is_named_with_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACESYNC_ADMIN_TOKEN", "t")
    monkeypatch.setenv("SPACESYNC_KAFKA_TOPIC_PARTITIONS", "six")  # read by KafkaSettings' own default factory
    with pytest.raises(SystemExit, match="SPACESYNC_KAFKA_TOPIC_PARTITIONS: Input should be a valid integer"):
        load_settings(Needy)


def test_settings_given_in_code_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "from-env:9092")
    assert KafkaSettings(bootstrap_servers="given:9092").bootstrap_servers == "given:9092"
    assert PostgresSettings(dsn=SecretStr("postgresql://given/db")).dsn.get_secret_value() == "postgresql://given/db"

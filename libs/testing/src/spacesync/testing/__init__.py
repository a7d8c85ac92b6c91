"""Test support shared by every Spacesync test suite (installed as a pytest plugin)."""

from spacesync.testing.infra import Infra, KafkaControl
from spacesync.testing.kafka import KafkaReader, Record
from spacesync.testing.server import RunningApp, run_app
from spacesync.testing.wait import wait_until

__all__ = ["Infra", "KafkaControl", "KafkaReader", "Record", "RunningApp", "run_app", "wait_until"]

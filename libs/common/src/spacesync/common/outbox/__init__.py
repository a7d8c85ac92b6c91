"""Transactional outbox: write events with the state change, relay them to Kafka afterwards."""

from spacesync.common.outbox.relay import OutboxRelay
from spacesync.common.outbox.writer import OutboxEvent, add_to_outbox

__all__ = ["OutboxEvent", "OutboxRelay", "add_to_outbox"]

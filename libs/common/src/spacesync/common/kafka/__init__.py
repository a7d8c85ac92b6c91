"""Kafka on FastStream: the broker every service uses, CloudEvents consuming with a dead-letter queue."""

from spacesync.common.kafka.broker import BrokerConnection, BrokerSender, create_broker
from spacesync.common.kafka.consumer import BatchHandler, EventHandler, subscribe_event_batches, subscribe_events
from spacesync.common.kafka.dlq import DLQ_EVENTS, DeadLetterMiddleware, dlq_topic
from spacesync.common.kafka.topics import ensure_topics

__all__ = [
    "DLQ_EVENTS",
    "BatchHandler",
    "BrokerConnection",
    "BrokerSender",
    "DeadLetterMiddleware",
    "EventHandler",
    "create_broker",
    "dlq_topic",
    "ensure_topics",
    "subscribe_event_batches",
    "subscribe_events",
]

"""Kafka on FastStream: the broker every service uses, CloudEvents consuming with a dead-letter queue."""

from spacesync.common.kafka.broker import BrokerConnection, BrokerSender, create_broker
from spacesync.common.kafka.consumer import EventHandler, subscribe_events
from spacesync.common.kafka.dlq import DLQ_EVENTS, DeadLetterMiddleware, dlq_topic
from spacesync.common.kafka.topics import ensure_topics

__all__ = [
    "DLQ_EVENTS",
    "BrokerConnection",
    "BrokerSender",
    "DeadLetterMiddleware",
    "EventHandler",
    "create_broker",
    "dlq_topic",
    "ensure_topics",
    "subscribe_events",
]

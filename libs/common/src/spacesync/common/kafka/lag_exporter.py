"""`python -m spacesync.common.kafka.lag_exporter`: consumer-group lag for Prometheus, under kafka_exporter's names.

kafka_consumergroup_lag and kafka_consumergroup_current_offset {consumergroup, topic, partition} for every group
matching SPACESYNC_LAG_EXPORTER_GROUPS, on every topic it committed offsets on (all that topic's partitions), and
kafka_topic_partition_current_offset / _oldest_offset {topic, partition} for every topic matching
SPACESYNC_LAG_EXPORTER_TOPICS. Alerts and dashboards written for Strimzi's Kafka Exporter work unchanged.

Kafka is read in the background every SPACESYNC_LAG_EXPORTER_INTERVAL_SECONDS; a scrape serves the last snapshot
(a custom collector: a group or partition that is gone is gone from /metrics, no stale series). Kafka unreachable:
the exporter keeps serving, counts each failed refresh, and after SPACESYNC_LAG_EXPORTER_UNREADY_AFTER_FAILURES
in a row is not ready and drops the snapshot (frozen lag would look like a steady backlog).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import TopicPartition
from fastapi import FastAPI
from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from spacesync.common.http import HealthChecks, health_router, serve
from spacesync.common.kafka.offsets import OffsetReader, PartitionLag, Span, group_lag
from spacesync.common.logging import configure_logging
from spacesync.common.settings import ServiceSettings, load_settings

log = logging.getLogger(__name__)
SERVICE = "kafka-lag-exporter"

SCRAPE_ERRORS = Counter("spacesync_lag_exporter_scrape_errors_total",
                        "Refreshes of the offsets snapshot that failed (Kafka unreachable or refusing)")
LAST_SUCCESS = Gauge("spacesync_lag_exporter_last_success_timestamp_seconds",
                     "Unix time of the last successful refresh of the offsets snapshot")


class LagExporterOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACESYNC_LAG_EXPORTER_", extra="ignore")

    groups: re.Pattern[str] = Field(default=re.compile(".*"),
                                    description="Consumer groups exported: a regular expression the whole name matches")
    topics: re.Pattern[str] = Field(default=re.compile("(?!__).*"),
                                    description="Topics exported: a regular expression the whole name matches "
                                                "(default: all but Kafka's internal ones)")
    interval_seconds: float = Field(default=10.0, gt=0, description="Kafka is read this often")
    timeout_seconds: float = Field(default=30.0, gt=0, description="A refresh taking longer has failed")
    unready_after_failures: int = Field(default=3, ge=1,
                                        description="Failed refreshes in a row after which /readyz answers 503")


class LagExporterSettings(ServiceSettings):
    http_port: int = 8085
    exporter: LagExporterOptions = Field(default_factory=LagExporterOptions)  # SPACESYNC_LAG_EXPORTER_*


@dataclass(frozen=True)
class Snapshot:
    spans: dict[TopicPartition, Span]
    """Every exported topic's partitions."""
    lags: dict[str, list[PartitionLag]]
    """By group: every partition of the topics the group committed on."""


def wanted(pattern: re.Pattern[str], names: list[str]) -> list[str]:
    return [name for name in names if pattern.fullmatch(name)]


async def read_snapshot(reader: OffsetReader, options: LagExporterOptions) -> Snapshot:
    groups = wanted(options.groups, await reader.groups())
    committed = dict(zip(groups, await asyncio.gather(*(reader.committed(group) for group in groups)), strict=True))
    read_by_groups = {tp.topic for offsets in committed.values() for tp in offsets}
    partitions = await reader.partitions()
    topics = {tp.topic for tp in partitions}
    exported = set(wanted(options.topics, sorted(topics))) | (read_by_groups & topics)
    spans = await reader.spans([tp for tp in partitions if tp.topic in exported])
    lags = {group: group_lag(spans, offsets, {tp.topic for tp in offsets}) for group, offsets in committed.items()}
    return Snapshot({tp: span for tp, span in spans.items() if options.topics.fullmatch(tp.topic)}, lags)


class SnapshotCollector(Collector):
    """Serves the last snapshot under kafka_exporter's metric names."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.snapshot
        families = self._families()
        if snapshot is None:
            yield from families
            return
        end, oldest, committed, lag = families
        for tp, span in sorted(snapshot.spans.items()):
            end.add_metric([tp.topic, str(tp.partition)], span.end)
            oldest.add_metric([tp.topic, str(tp.partition)], span.oldest)
        for group, partitions in sorted(snapshot.lags.items()):
            for p in partitions:
                labels = [group, p.topic, str(p.partition)]
                lag.add_metric(labels, p.lag)
                if p.committed is not None:
                    committed.add_metric(labels, p.committed)
        yield from families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        partition, group = ["topic", "partition"], ["consumergroup", "topic", "partition"]
        return [
            GaugeMetricFamily("kafka_topic_partition_current_offset",
                              "End offset of the topic partition (the next record's offset)", labels=partition),
            GaugeMetricFamily("kafka_topic_partition_oldest_offset", "First offset still in the topic partition",
                              labels=partition),
            GaugeMetricFamily("kafka_consumergroup_current_offset",
                              "Offset the consumer group committed on the partition (absent: never committed)",
                              labels=group),
            GaugeMetricFamily("kafka_consumergroup_lag",
                              "Records the consumer group has yet to read on the partition (end minus committed; "
                              "never committed: end minus oldest)", labels=group),
        ]


class LagExporter:
    """Refreshes the snapshot until cancelled; never raises on Kafka errors."""

    def __init__(self, settings: LagExporterSettings, collector: SnapshotCollector) -> None:
        self._settings = settings
        self._options = settings.exporter
        self._collector = collector
        self.failures = 0  # in a row

    async def run(self) -> None:
        reader: OffsetReader | None = None
        try:
            while True:
                try:
                    if reader is None:
                        reader = OffsetReader(self._settings.kafka, client_id=f"{self._settings.kafka.client_id}-"
                                                                              f"{SERVICE}")
                        await asyncio.wait_for(reader.start(), self._options.timeout_seconds)
                    snapshot = await asyncio.wait_for(read_snapshot(reader, self._options),
                                                      self._options.timeout_seconds)
                except Exception as error:
                    self._failed(error)
                    if reader is not None:  # a fresh client next time: aiokafka's may not recover from an outage
                        await reader.close()
                        reader = None
                else:
                    self._collector.snapshot = snapshot
                    self.failures = 0
                    LAST_SUCCESS.set(time.time())
                await asyncio.sleep(self._options.interval_seconds)
        finally:
            if reader is not None:
                await reader.close()

    def _failed(self, error: Exception) -> None:
        SCRAPE_ERRORS.inc()
        self.failures += 1
        log.warning("consumer lag not read from Kafka", extra={"error": repr(error), "failures": self.failures})
        if self.failures >= self._options.unready_after_failures:
            self._collector.snapshot = None

    async def check(self) -> None:
        """Readiness: the last refreshes reached Kafka."""
        if self.failures >= self._options.unready_after_failures:
            raise ConnectionError(f"the last {self.failures} refreshes could not read Kafka")
        if self._collector.snapshot is None:
            raise ConnectionError("Kafka not read yet")


def create_app(settings: LagExporterSettings) -> FastAPI:
    collector = SnapshotCollector()
    exporter = LagExporter(settings, collector)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        REGISTRY.register(collector)
        task = asyncio.create_task(exporter.run(), name="lag-exporter")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            REGISTRY.unregister(collector)

    app = FastAPI(title="Spacesync Kafka lag exporter", version="0.1.0", lifespan=lifespan,
                  description="Consumer-group lag under kafka_exporter's metric names.")
    app.state.exporter = exporter
    app.include_router(health_router(HealthChecks(required={"kafka": exporter.check})))
    return app


def main() -> None:
    settings = load_settings(LagExporterSettings)
    configure_logging(SERVICE, settings.log_level)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()

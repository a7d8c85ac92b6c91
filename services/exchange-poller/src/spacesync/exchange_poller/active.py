"""One active exchange-poller per schema: the instance holding the Leadership lock consumes catalog.events and
reads Exchange; the others are hot standbys that do neither.

A standby must not even consume: the engine hears of catalog changes only from its own process's fold, so a
standby in the consumer group would take catalog partitions from the active engine and fold changes it never
hears of. On taking the lock an instance starts the catalog consumer and a fresh engine (which loads the catalog
from Postgres and reads every room); on losing the lock's connection both are stopped at once (cancelled: a read in
flight publishes nothing), before a standby can have taken over.

Readiness stays true on a standby: it is healthy and able to take over, and a never-ready standby would stall a
rolling update and count as disrupted under the PodDisruptionBudget. spacesync_poller_active says which works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from faststream.kafka import KafkaBroker

from spacesync.common.db.leadership import Leadership
from spacesync.common.db.pool import Conn
from spacesync.common.kafka import BrokerConnection
from spacesync.common.settings import KafkaSettings
from spacesync.exchange_poller import metrics
from spacesync.exchange_poller.engine import Poller

log = logging.getLogger(__name__)


class ActivePoller:
    def __init__(self, leadership: Leadership, new_poller: Callable[[], Poller], catalog: KafkaBroker,
                 kafka: KafkaSettings, *, stop_timeout: float) -> None:
        """`catalog`: a broker of its own carrying only the catalog.events consumer, started while active."""
        self._leadership = leadership
        self._new_poller = new_poller
        self._catalog = catalog
        self._kafka = kafka
        self._stop_timeout = stop_timeout
        self._stopping = False
        self.tries = 0
        """Tries for the lock while another instance held it."""
        self.poller = new_poller()
        """The engine of the current term (or of the next one, on a standby)."""
        metrics.ACTIVE.set(0)

    @property
    def is_active(self) -> bool:
        return self._leadership.is_leader

    async def run(self) -> None:
        """Until stop(): waits for the lock, then polls while holding it."""
        await self._leadership.run(self._lead, standby=self._wait)

    def stop(self) -> None:
        """A graceful stop: reads in flight finish and their pictures commit with their outbox rows."""
        self._stopping = True
        self._leadership.stop()
        self.poller.stop()

    async def _wait(self, _: Conn) -> None:
        self.tries += 1

    async def _lead(self, _: Conn) -> None:
        if self._stopping:
            return
        poller = self.poller
        metrics.ACTIVE.set(1)
        log.info("exchange-poller active: consuming catalog.events and reading Exchange")
        consumer = BrokerConnection(self._catalog, self._kafka, create_topics=False)
        connecting = asyncio.create_task(consumer.run(), name="catalog-consumer")
        polling = asyncio.create_task(poller.run(), name="poller")
        try:
            await asyncio.shield(polling)  # returns after stop(); a lost lock cancels this wait, not yet the engine
        finally:
            polling.cancel()  # at once when the lock is lost; a no-op after a graceful stop
            connecting.cancel()
            await asyncio.gather(polling, connecting, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._catalog.stop(), self._stop_timeout)
            metrics.ACTIVE.set(0)
            metrics.ROOMS.clear()  # a standby watches nothing: no frozen room counts or picture ages
            metrics.PICTURE_AGE.clear()
            if not self._stopping:
                self.poller = self._new_poller()  # the next term starts afresh from Postgres
                log.warning("exchange-poller no longer active: stopped consuming and reading Exchange")

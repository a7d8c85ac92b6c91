"""One active replica among those sharing a service's schema: the one holding a Postgres session advisory lock.

A session lock lives as long as the connection that took it: a replica that crashes, or whose session Postgres
ends, loses the lock, and a standby (retrying every `retry_interval`) takes it. The holder learns of the loss from
that same connection (closed, or not answering a ping within `ping_timeout`), and its work is cancelled at once,
before a standby can have taken over: Postgres frees the lock only once the session is gone.

Postgres ends the session of a holder that vanished without closing it (node lost, network cut) by TCP keepalives,
set on the lock's session to about half a minute (the OS default is over two hours, during which no standby could
take over). Exception: a session Postgres frees without the holder hearing of it (a failover moving the database's
address, a connection cut after Postgres ended the session) frees the lock at once, and the old holder's work runs
until a ping fails (up to `ping_interval` + `ping_timeout`) while a standby may already lead. A session Postgres
ends in the open (pg_terminate_backend, a restart) is noticed at once (the termination listener).

The lock needs a session of its own: the DSN must reach Postgres directly or through a pooler in session mode
(PgBouncer's transaction or statement mode would hand the session, and the lock, to other clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable

import asyncpg

from spacesync.common.db.pool import Conn, connect

log = logging.getLogger(__name__)

Lead = Callable[[Conn], Awaitable[None]]
MAX_BACKOFF_SECONDS = 30.0
# Postgres notices a vanished holder within ~25 s idle (10 + 3 probes 5 s apart), 30 s with data unacknowledged.
SESSION_SETTINGS = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3",
                    "tcp_user_timeout": "30000"}


class LostLock(ConnectionError):
    """The connection that held the lock is gone (or does not answer): another replica may hold it now."""


class Leadership:
    def __init__(self, dsn: str, schema: str, name: str, *, retry_interval: float = 1.0,
                 ping_interval: float = 2.0, ping_timeout: float = 5.0,
                 on_change: Callable[[bool], None] = lambda _: None,
                 on_error: Callable[[Exception], None] = lambda _: None) -> None:
        """`on_error`: a term (standby or active) ended with an error, e.g. Postgres unreachable; tried again later."""
        self._dsn = dsn
        self._schema = schema
        self.name = name
        self._retry_interval = retry_interval
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._on_change = on_change
        self._on_error = on_error
        self._stopping = asyncio.Event()
        self.is_leader = False

    async def run(self, lead: Lead, *, standby: Lead | None = None, ping: bool = True) -> None:
        """Until stop(): waits for the lock (calling `standby` between tries), then runs `lead` while holding it.

        `lead` gets the lock's connection and returns once stopping. With `ping` the connection is watched and `lead`
        cancelled when it is lost, so `lead` must not use it; without, `lead` works on it and so notices a loss by
        its own errors. Errors (Postgres unreachable, `lead` failing) end the term; it is tried again after a backoff.
        """
        backoff = self._retry_interval
        while not self._stopping.is_set():
            try:
                await self._term(lead, standby, ping)
                backoff = self._retry_interval
            except Exception as error:
                log.warning("active instance lost its lock or could not take it; retrying", exc_info=error,
                            extra={"lock": self.name, "error": repr(error), "retry_in": backoff})
                self._on_error(error)
                await self._pause(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def stop(self) -> None:
        """Ends a standby's wait; an active `lead` is told to stop by its owner."""
        self._stopping.set()

    async def _term(self, lead: Lead, standby: Lead | None, ping: bool) -> None:
        # application_name: pg_stat_activity tells operators which pod (host name) holds which lock.
        identity = f"{self.name} {socket.gethostname()}"[:63]
        conn = await connect(self._dsn, self._schema, settings={**SESSION_SETTINGS, "application_name": identity})
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self.name):
                if standby is not None:
                    await standby(conn)
                if await self._pause(self._retry_interval):
                    return
            self._set(True)
            log.info("active instance", extra={"lock": self.name})
            if ping:
                await _first_to_end(lead(conn), self._watch(conn))
            else:
                await lead(conn)
        finally:
            self._set(False)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)

    async def _watch(self, conn: Conn) -> None:
        """Returns never: raises LostLock once the connection is closed or does not answer."""
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _: closed.set())
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), self._ping_interval)
            try:
                if closed.is_set() or conn.is_closed():
                    raise ConnectionError("the connection was closed")
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self._ping_timeout)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
                log.error("active instance lost the connection holding its lock: stopping its work",
                          extra={"lock": self.name, "error": repr(error)})
                raise LostLock(f"lost the connection holding {self.name!r}: {error!r}") from error

    def _set(self, leader: bool) -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            self._on_change(leader)

    async def _pause(self, seconds: float) -> bool:
        """Waits for stop() or the timeout; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        return self._stopping.is_set()


async def _first_to_end(work: Awaitable[None], watch: Awaitable[None]) -> None:
    """Runs both; when one ends (returns or raises) the other is cancelled, and the first one's error raised."""
    working, watching = asyncio.ensure_future(work), asyncio.ensure_future(watch)
    try:
        done, _ = await asyncio.wait({working, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (working, watching):
            task.cancel()
        await asyncio.gather(working, watching, return_exceptions=True)
    first = watching if watching in done else working
    first.result()

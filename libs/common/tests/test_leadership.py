"""Leadership: one holder of the advisory lock at a time, a standby that takes over, work stopped on a lost lock."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from spacesync.common.db.leadership import Leadership
from spacesync.testing import wait_until


class Worker:
    """A `lead` that records whether it is working, and runs until stopped or cancelled."""

    def __init__(self) -> None:
        self.working = False
        self.terms = 0
        self.backend_pid: int | None = None
        self.stopping = asyncio.Event()
        self.waits = 0  # tries for the lock while another holds it

    async def wait(self, conn: asyncpg.Connection[Any]) -> None:
        self.waits += 1

    async def __call__(self, conn: asyncpg.Connection[Any]) -> None:
        self.terms += 1
        self.backend_pid = conn.get_server_pid()
        self.working = True
        try:
            await self.stopping.wait()
        finally:
            self.working = False


@contextlib.asynccontextmanager
async def running(leadership: Leadership, worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(leadership.run(worker, standby=worker.wait))
    try:
        yield task
    finally:
        leadership.stop()
        worker.stopping.set()
        await asyncio.wait_for(task, timeout=30)


def leadership(postgres_dsn: str, name: str, changes: list[bool] | None = None) -> Leadership:
    return Leadership(postgres_dsn, "public", name, retry_interval=0.1, ping_interval=0.2, ping_timeout=2,
                      on_change=(changes.append if changes is not None else lambda _: None))


async def test_one_leads_the_other_waits_and_takes_over_when_the_first_stops(postgres_dsn: str) -> None:
    name = f"test-lock:{uuid.uuid4().hex}"
    first, second = Worker(), Worker()
    one, other = leadership(postgres_dsn, name), leadership(postgres_dsn, name)
    async with running(one, first):
        await wait_until(lambda: first.working, message="first active")
        async with running(other, second):
            await wait_until(lambda: second.waits >= 3, message="the standby tried for the lock")
            assert not other.is_leader
            assert not second.working
            assert first.working
            one.stop()
            first.stopping.set()
            await wait_until(lambda: second.working and other.is_leader, timeout=15, message="standby takes over")
            assert not one.is_leader
            assert not first.working


async def test_work_stops_at_once_when_the_lock_connection_is_lost_and_the_lock_is_taken_again(
        postgres_dsn: str) -> None:
    name = f"test-lock:{uuid.uuid4().hex}"
    worker, changes = Worker(), list[bool]()
    holder = leadership(postgres_dsn, name, changes)
    async with running(holder, worker):
        await wait_until(lambda: worker.working, message="active")
        killed = worker.backend_pid
        admin = await asyncpg.connect(postgres_dsn)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", killed)
        finally:
            await admin.close()
        await wait_until(lambda: not worker.working, timeout=10, message="work cancelled on the lost connection")
        await wait_until(lambda: worker.working and worker.backend_pid != killed, timeout=30,
                         message="the lock taken again on a new connection")
    assert worker.terms == 2
    assert changes == [True, False, True, False]


async def test_an_unreachable_database_is_retried_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker()
    holder = Leadership("postgresql://nobody:nothing@127.0.0.1:1/none", "public", "unreachable",
                        retry_interval=0.05)
    task = asyncio.create_task(holder.run(worker))
    await wait_until(lambda: sum("retrying" in r.message for r in caplog.records) >= 3, timeout=30,
                     message="three failed tries")
    assert not task.done()
    assert not worker.working
    holder.stop()
    await asyncio.wait_for(task, timeout=35)


async def test_postgres_ends_a_vanished_holders_session_within_a_minute(postgres_dsn: str) -> None:
    """A holder whose node is lost or cut off sends no FIN: Postgres frees the lock only when it ends that session,
    which without TCP keepalives takes the OS default (over 2 hours on Linux), and no standby could take over."""
    found: dict[str, int] = {}
    holder = leadership(postgres_dsn, f"test-lock:{uuid.uuid4().hex}")

    async def lead(conn: asyncpg.Connection[Any]) -> None:
        rows = await conn.fetch("SELECT name, setting FROM pg_settings WHERE name LIKE 'tcp_%'")
        found.update({row["name"]: int(row["setting"]) for row in rows})
        holder.stop()

    await asyncio.wait_for(holder.run(lead), timeout=30)
    idle, interval, count = (found[f"tcp_keepalives_{n}"] for n in ("idle", "interval", "count"))
    assert 0 < idle + interval * count <= 60, found  # an idle session: keepalive probes unanswered
    assert 0 < found["tcp_user_timeout"] <= 60_000, found  # ms; a session with data unacknowledged


async def test_the_lock_holders_session_names_the_lock_and_the_host(postgres_dsn: str) -> None:
    """An operator finds which pod holds the lock (a hung one to restart) from pg_stat_activity."""
    name = f"test-lock:{uuid.uuid4().hex[:8]}"
    holder = leadership(postgres_dsn, name)
    seen: list[str] = []

    async def lead(conn: asyncpg.Connection[Any]) -> None:
        seen.append(await conn.fetchval(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = (hashtext($1)::bigint & 4294967295)::oid",
            name))
        holder.stop()

    await asyncio.wait_for(holder.run(lead), timeout=30)
    assert seen == [f"{name} {socket.gethostname()}"]

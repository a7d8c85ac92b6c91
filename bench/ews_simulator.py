"""EWS simulator throughput: what real exchangelib gets from a simulator process, against a raw-HTTP baseline.

For each thread count T it runs, for D seconds each:
- baseline: raw `requests` posting one pre-built GetFolder envelope (Basic auth, keep-alive): the ceiling of the
  simulator's HTTP+SOAP path on this machine, without exchangelib's client-side cost;
- exchangelib GetFolder(calendar) (NTLM: one handshake per connection, then plain requests);
- exchangelib CreateItem of a booking-like appointment with a PublicStrings extended property (the writer's call);
- exchangelib free/busy (GetUserAvailability) for 20 rooms per request over one week, each room holding
  10 Outlook meetings that week (created through the admin API): the poller's call.
It prints requests/s, p50/p99 latency, and the simulator process's CPU use during the row (its share of one
core, and CPU ms per request): where the simulator is below one core, the client (exchangelib, one process,
its own GIL) is the bottleneck, not the simulator. The simulator runs as its own process on 127.0.0.1;
exchangelib uses max_connections = threads.

    uv run python bench/ews_simulator.py --seconds 5 --threads 1,8
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import requests
import yaml
from exchangelib import (
    DELEGATE,
    NTLM,
    Account,
    CalendarItem,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    ExtendedProperty,
    FailFast,
    close_connections,
)
from exchangelib.items import SEND_TO_NONE

ROOMS = 40
FREE_BUSY_ROOMS = [f"room{i}@bench.example.org" for i in range(20, 40)]  # not written by the CreateItem row
USER, PASSWORD = "BENCH\\svc", "bench-password"
GET_FOLDER = """<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
<s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>
<s:Body><m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>
<m:FolderIds><t:DistinguishedFolderId Id="calendar"><t:Mailbox><t:EmailAddress>room0@bench.example.org</t:EmailAddress>
</t:Mailbox></t:DistinguishedFolderId></m:FolderIds></m:GetFolder></s:Body></s:Envelope>"""


class SlotId(ExtendedProperty):  # type: ignore[misc]  # exchangelib is untyped
    distinguished_property_set_id = "PublicStrings"
    property_name = "X-Spacesync-Slot-Id"
    property_type = "String"


def start_simulator(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    seed = {
        "mailboxes": [{"smtp": f"room{i}@bench.example.org", "name": f"Room {i}"} for i in range(ROOMS)],
        "accounts": [{"username": USER, "password": PASSWORD, "default_access": "delegate_write"}],
    }
    seed_file = workdir / "seed.yaml"
    seed_file.write_text(yaml.safe_dump(seed))
    port = 38090
    env = {**os.environ, "SPACESYNC_SIMULATOR_SEED_FILE": str(seed_file), "SPACESYNC_SIMULATOR_HTTP_PORT": str(port),
           "SPACESYNC_SIMULATOR_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "spacesync.exchange_simulator"], env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                book_outlook_meetings(base)
                return process, base + "/EWS/Exchange.asmx"
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the simulator did not start")


def book_outlook_meetings(base: str) -> None:
    """10 one-hour meetings in the first week of 2031 in each room the free/busy row reads."""
    with httpx.Client(base_url=base, timeout=10) as admin:
        for room in FREE_BUSY_ROOMS:
            for n in range(10):
                start = datetime(2031, 1, 1 + n % 7, 8 + n, tzinfo=UTC)
                admin.post(f"/admin/mailboxes/{room}/meetings", json={
                    "organizer": {"name": "Staff Member", "smtp": "staff@bench.example.org"},
                    "subject": f"Staff meeting {n}", "start": start.isoformat(),
                    "end": (start + timedelta(hours=1)).isoformat(), "free_busy": "Busy",
                }).raise_for_status()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(threads: int, seconds: float, make_call: Callable[[int], Callable[[int], None]],
        ) -> tuple[float, list[float], list[str]]:
    """Each thread builds its call once, then repeats it until the time is up: (req/s, latencies, errors)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    stop_at = time.monotonic() + seconds

    def worker(number: int) -> None:
        try:
            call = make_call(number)
            sequence = 0
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                call(sequence)
                latencies[number].append(time.perf_counter() - started)
                sequence += 1
        except Exception as error:  # a bench row reports its failure instead of hiding it
            errors.append(f"{type(error).__name__}: {error}")

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    started = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    flat = [x for per in latencies for x in per]
    return len(flat) / (time.monotonic() - started), flat, errors


def account(url: str, mailbox: str, threads: int) -> Account:
    config = Configuration(service_endpoint=url, credentials=Credentials(USER, PASSWORD), auth_type=NTLM,
                           retry_policy=FailFast(), max_connections=threads)
    return Account(mailbox, config=config, access_type=DELEGATE, autodiscover=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", default="1,8")
    args = parser.parse_args()
    CalendarItem.register("slot_id", SlotId)
    with tempfile.TemporaryDirectory() as workdir:
        process, url = start_simulator(Path(workdir))
        try:
            print(f"EWS simulator at {url}; {ROOMS} rooms; {args.seconds:.0f} s per row")
            print(f"{'T':>3} | {'operation':<40} | {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} | vs baseline | "
                  f"simulator CPU  ms/req")
            for threads in (int(t) for t in args.threads.split(",")):
                baseline = 0.0
                for name, factory in scenarios(url, threads).items():
                    cpu_before, wall_before = cpu_seconds(process.pid), time.monotonic()
                    rate, latencies, errors = run(threads, args.seconds, factory)
                    cpu = cpu_seconds(process.pid) - cpu_before
                    busy = cpu / (time.monotonic() - wall_before)
                    if errors:
                        print(f"{threads:>3} | {name:<40} | FAILED: {errors[0]}")
                        continue
                    baseline = baseline or rate
                    ordered = sorted(latencies)
                    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
                    print(f"{threads:>3} | {name:<40} | {rate:7.0f} {statistics.median(ordered) * 1000:7.1f} "
                          f"{p99 * 1000:7.1f} | {rate / baseline:11.2f} | {busy:8.0%} {cpu * 1000 / len(ordered):7.2f}")
                close_connections()
        finally:
            process.terminate()
            process.wait(timeout=10)


def scenarios(url: str, threads: int) -> dict[str, Callable[[int], Callable[[int], None]]]:
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    utc = EWSTimeZone("UTC")
    shared = account(url, "room0@bench.example.org", threads)

    def raw(_: int) -> Callable[[int], None]:
        session = requests.Session()
        headers = {"Content-Type": "text/xml; charset=utf-8", "Authorization": basic}

        def call(_: int) -> None:
            session.post(url, data=GET_FOLDER, headers=headers, timeout=10).raise_for_status()
        return call

    def get_folder(_: int) -> Callable[[int], None]:
        return lambda _: shared.calendar.refresh()

    def create(worker: int) -> Callable[[int], None]:
        room = account(url, f"room{worker % ROOMS}@bench.example.org", threads)
        calendar = room.calendar

        def call(sequence: int) -> None:
            start = EWSDateTime(2031, 1, 1, tzinfo=utc) + timedelta(minutes=30 * sequence)
            item = CalendarItem(folder=calendar, subject=f"Booking {worker}-{sequence}", start=start,
                                end=start + timedelta(minutes=30), legacy_free_busy_status="Busy", location="Room")
            item.slot_id = f"slot-{worker}-{sequence}"
            item.save(send_meeting_invitations=SEND_TO_NONE)
        return call

    def free_busy(_: int) -> Callable[[int], None]:
        rooms = [(room, "Room", False) for room in FREE_BUSY_ROOMS]
        start = EWSDateTime(2031, 1, 1, tzinfo=utc)

        def call(_: int) -> None:
            list(shared.protocol.get_free_busy_info(accounts=rooms, start=start, end=start + timedelta(days=7)))
        return call

    return {"baseline: raw POST GetFolder (Basic)": raw, "exchangelib GetFolder (NTLM)": get_folder,
            "exchangelib CreateItem + ext. property": create, "exchangelib free/busy, 20 rooms": free_busy}


if __name__ == "__main__":
    main()

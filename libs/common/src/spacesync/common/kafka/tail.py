"""`python -m spacesync.common.kafka.tail [TOPIC ...]`: print the CloudEvents on topics as they arrive.

One line per event (time, topic, ce_type, key, version) and, with --data, the JSON value. An operator's
tool for the local stack; it reads from the beginning and commits nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import orjson
from aiokafka import AIOKafkaConsumer

from spacesync.common.events import Topic
from spacesync.common.settings import KafkaSettings


async def tail(topics: list[str], settings: KafkaSettings, show_data: bool) -> None:
    consumer = AIOKafkaConsumer(*(settings.topic(t) for t in topics), bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        async for record in consumer:
            headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
            try:
                data = orjson.loads(record.value or b"null")
            except orjson.JSONDecodeError:
                data = None
            version = data.get("version", data.get("sequence", "")) if isinstance(data, dict) else ""
            print(f"{headers.get('ce_time', '-'):<28} {record.topic:<22} {headers.get('ce_type', '?'):<20} "
                  f"{(record.key or b'').decode():<38} v{version}", flush=True)
            if show_data:
                print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode(), flush=True)
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("topics", nargs="*", default=[t.value for t in Topic])
    parser.add_argument("--data", action="store_true", help="print each event's JSON")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail(args.topics, KafkaSettings(), args.data))


if __name__ == "__main__":
    main()

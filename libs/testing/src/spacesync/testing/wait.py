"""Waiting on a condition with a deadline: the only way tests synchronise (never a bare sleep)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def wait_until(condition: Callable[[], Awaitable[T | None]], *, timeout: float = ..., interval: float = ...,
                     message: str = ...) -> T: ...
@overload
async def wait_until(condition: Callable[[], T | None], *, timeout: float = ..., interval: float = ...,
                     message: str = ...) -> T: ...


async def wait_until(
    condition: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05, message: str = "condition",
) -> Any:
    """Polls `condition` until it returns something truthy; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = condition()
        last = await result if inspect.isawaitable(result) else result
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")
        await asyncio.sleep(interval)

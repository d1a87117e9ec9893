"""A probe of whether an event loop keeps running while its tasks wait on threads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

_T = TypeVar("_T")


async def ticks_while(work: Awaitable[_T]) -> tuple[_T, int]:
    """Await ``work`` and count the loop's turns meanwhile: a loop blocked by the work barely turns."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    tick_task = asyncio.create_task(ticker())
    try:
        result = await work
    finally:
        tick_task.cancel()
    return result, ticks

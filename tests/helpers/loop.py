"""A probe of whether an event loop keeps running while its tasks wait on threads.

Counting loop turns against a threshold depends on how fast threads start on
a busy machine. Instead, a blocking call under test asks the loop to answer
(:meth:`LoopProbe.loop_answers`) and waits for the answer, which only a task
on the loop gives: if the loop were blocked while the call runs, no answer
would come and the call reports it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import TypeVar

_T = TypeVar("_T")

#: Seconds a blocking call waits for the loop's answer before it reports the loop as blocked.
WAIT_SECONDS = 30.0


class LoopProbe:
    """A question a thread asks and only a running event loop answers."""

    def __init__(self) -> None:
        self._asked = threading.Event()
        self._answered = threading.Event()

    def loop_answers(self) -> bool:
        """From a thread: True once the loop has run after this call began."""
        self._asked.set()
        return self._answered.wait(WAIT_SECONDS)

    async def around(self, work: Awaitable[_T]) -> _T:
        """Await ``work`` with a task on the loop that answers the question once it is asked."""

        async def answer() -> None:
            while not self._asked.is_set():
                await asyncio.sleep(0.001)
            self._answered.set()

        task = asyncio.create_task(answer())
        try:
            return await work
        finally:
            task.cancel()

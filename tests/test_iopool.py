"""The thread pool for blocking disk work (mailhorn/iopool.py)."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time

import pytest

from mailhorn.iopool import IoPool, offload
from tests.helpers.loop import LoopProbe

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("iopool_test", default="unset")


def test_results_exceptions_and_context_reach_the_caller() -> None:
    def fail() -> None:
        raise OSError(5, "Input/output error")

    async def main() -> None:
        _VAR.set("caller")
        assert await offload(lambda a, b=0: a + b, 2, b=3) == 5
        assert await offload(_VAR.get) == "caller"
        assert await offload(threading.get_ident) != threading.get_ident()
        with pytest.raises(OSError, match="Input/output error"):
            await offload(fail)

    asyncio.run(main())


def test_calls_run_side_by_side_up_to_max_threads_and_the_loop_keeps_running() -> None:
    pool = IoPool(4, "side-by-side")
    barrier = threading.Barrier(4, timeout=30)
    probe = LoopProbe()

    def meet() -> tuple[int, bool]:
        # Four calls that each wait for all four finish only if they run at
        # once; each then asks the loop, which must still be running.
        return barrier.wait(), probe.loop_answers()

    async def main() -> list[tuple[int, bool]]:
        return await probe.around(asyncio.gather(*(pool.run(meet) for _ in range(4))))

    assert sorted(asyncio.run(main())) == [(0, True), (1, True), (2, True), (3, True)]
    assert pool._threads <= 4
    pool.close()


def test_many_calls_with_few_threads_all_complete_in_order_of_their_callers() -> None:
    pool = IoPool(2, "test")

    async def main() -> list[int]:
        return list(await asyncio.gather(*(pool.run(lambda i=i: (time.sleep(0.001), i)[1]) for i in range(200))))

    assert asyncio.run(main()) == list(range(200))
    pool.close()


def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    pool = IoPool(2, "test")
    release = threading.Event()

    async def main() -> int:
        slow = asyncio.ensure_future(pool.run(release.wait, 30))
        await asyncio.sleep(0.05)
        slow.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await slow
        return await pool.run(lambda: 7)

    assert asyncio.run(main()) == 7
    pool.close()


def test_a_pool_follows_a_new_event_loop_once_the_old_one_is_closed() -> None:
    pool = IoPool(2, "test")
    assert asyncio.run(pool.run(lambda: 1)) == 1
    assert asyncio.run(pool.run(lambda: 2)) == 2
    pool.close()


def test_idle_threads_end_on_close() -> None:
    pool = IoPool(3, "idle-on-close")

    async def main() -> None:
        await asyncio.gather(*(pool.run(time.sleep, 0.05) for _ in range(3)))

    asyncio.run(main())
    before = {t for t in threading.enumerate() if t.name.startswith("idle-on-close-")}
    assert before
    pool.close()
    deadline = time.monotonic() + 10
    while any(t.is_alive() for t in before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.is_alive() for t in before)


def test_a_forked_child_starts_its_own_threads() -> None:
    """A pool used before fork() works in the child, where its threads do not exist."""
    pool = IoPool(2, "test")
    assert asyncio.run(pool.run(lambda: 1)) == 1
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            ok = asyncio.run(asyncio.wait_for(pool.run(lambda: 41), 10)) == 41
            ok = ok and asyncio.run(asyncio.wait_for(offload(lambda: 42), 10)) == 42
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    pool.close()

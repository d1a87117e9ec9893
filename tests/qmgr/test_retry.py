"""Backoff, expiry, forced expiry, defer_transports and flush, with a controlled clock."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mailhorn.queue.listing import EXPIRE_BIT, set_mark
from mailhorn.runtime_build import qmgr_wakeup
from tests.qmgr.util import Clock, make_setup


def settings(tmp_path: Path, extra: str = "") -> str:
    table = tmp_path / "transport"
    table.write_text("z@example.com retry:4.4.1 connect to mx.example.com: Connection refused\n"
                     "d@example.com discard:dropped\n")
    return (f"transport_maps = texthash:{table}\nminimal_backoff_time = 300s\n"
            "maximal_backoff_time = 4000s\nmaximal_queue_lifetime = 1h\n" + extra)


def test_backoff_follows_time_in_queue_then_expires(tmp_path: Path) -> None:
    s = make_setup(tmp_path, settings(tmp_path))
    clock = Clock()
    queue_id = s.submit("z@example.com", when=clock.t)
    qm = s.manager(clock)

    def path() -> str:
        return s.store.path("deferred", queue_id)

    async def attempt(queue: str, expect: int) -> None:
        assert await qm.scan(queue) == expect
        await qm.drain()

    asyncio.run(attempt("incoming", 1))
    assert s.queue("deferred") == [queue_id]
    # Next attempt: now + time in queue, at least minimal_backoff_time.
    assert os.stat(path()).st_mtime == pytest.approx(clock.t + 300, abs=0.01)
    asyncio.run(attempt("deferred", 0))  # not due yet
    clock.advance(1000)
    asyncio.run(attempt("deferred", 1))
    assert os.stat(path()).st_mtime == pytest.approx(clock.t + 1000, abs=0.01)
    clock.advance(2000)
    asyncio.run(attempt("deferred", 1))
    assert os.stat(path()).st_mtime == pytest.approx(clock.t + 3000, abs=0.01)
    assert not any("expired" in t for t in s.tagged())
    clock.advance(3000)  # 6000s in the queue: past maximal_queue_lifetime
    asyncio.run(attempt("deferred", 1))
    tagged = s.tagged()
    assert f"qmgr: {queue_id}: from=<a@example.org>, status=expired, returned to sender" in tagged
    assert s.queue("deferred") == [] and s.queue("active") == []
    assert tagged[-1] == f"qmgr: {queue_id}: removed"
    # The notice to the sender is a new message in the queue.
    assert len(s.queue("incoming")) == 1


def test_backoff_is_capped_and_null_sender_uses_bounce_queue_lifetime(tmp_path: Path) -> None:
    s = make_setup(tmp_path, settings(tmp_path, "bounce_queue_lifetime = 0\nmaximal_backoff_time = 500s\n"))
    clock = Clock()
    normal = s.submit("z@example.com", when=clock.t - 100000, created=clock.t, sender="a@example.org")
    notice = s.submit("z@example.com", when=clock.t, sender="")
    qm = s.manager(clock)
    # A message that arrived long ago (its queue file is new) waits at most maximal_backoff_time.
    asyncio.run(_once(qm, "incoming"))
    assert os.stat(s.store.path("deferred", normal)).st_mtime == pytest.approx(clock.t + 500, abs=0.01)
    assert f"qmgr: {notice}: from=<>, status=expired, returned to sender" in s.tagged()
    assert notice not in s.queue("deferred")


async def _once(qm: object, queue: str) -> None:
    from mailhorn.queue.manager import QueueManager

    assert isinstance(qm, QueueManager)
    await qm.scan(queue)
    await qm.drain()


def test_forced_expiry_returns_with_last_reason(tmp_path: Path) -> None:
    s = make_setup(tmp_path, settings(tmp_path))
    clock = Clock()
    queue_id = s.submit("z@example.com", when=clock.t)
    qm = s.manager(clock)
    asyncio.run(_once(qm, "incoming"))
    set_mark(s.store.path("deferred", queue_id), EXPIRE_BIT)  # postsuper -f

    async def flush_all() -> None:
        await qm.scan("deferred", scan_all=True, flush=True)
        await qm.drain()

    asyncio.run(flush_all())
    tagged = s.tagged()
    assert f"qmgr: {queue_id}: from=<a@example.org>, status=force-expired, returned to sender" in tagged
    last_try = [t for t in tagged if t.startswith("error: ") and "to=<z@example.com>" in t][-1]
    assert last_try.endswith("dsn=4.4.1, status=deferred (connect to mx.example.com: Connection refused)")
    assert s.queue("deferred") == []


def test_defer_transports_wait_for_flush(tmp_path: Path) -> None:
    s = make_setup(tmp_path, settings(tmp_path, "defer_transports = discard\n"))
    queue_id = s.submit("d@example.com")
    qm = s.manager()
    wakeup = qmgr_wakeup(s.runtime)

    async def until(check: object, what: str) -> None:
        assert callable(check)
        for _ in range(1000):
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}")

    async def go() -> None:
        task = asyncio.create_task(qm.run(wakeup))
        try:
            wakeup.notify()
            await until(lambda: s.queue("deferred") == [queue_id], "the message to be deferred")
            deferred = [t for t in s.tagged() if t.startswith("error: ")]
            assert deferred and deferred[0].endswith("dsn=4.3.2, status=deferred (deferred transport)")
            wakeup.notify()  # an ordinary wakeup leaves deferred mail alone
            await asyncio.sleep(0.05)
            assert s.queue("deferred") == [queue_id]
            wakeup.notify(flush=True)  # postqueue -f / mailhorn flush
            await until(lambda: f"qmgr: {queue_id}: removed" in s.tagged(), "the flush")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert any(t.startswith("discard: ") and "status=sent (dropped)" in t for t in s.tagged())
    assert s.queue("deferred") == [] and s.queue("active") == []

"""Unnamed queue files made ahead (mailhorn/queue/spares.py) and writers that use them."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
from pathlib import Path

import pytest

from mailhorn.queue.spares import BATCH
from mailhorn.queue.store import TEMP_PREFIX, QueueStore, QueueWriter
from tests.queue.util import SAMPLE, make_store


async def _filled(store: QueueStore) -> None:
    """Start a batch (by taking from the empty pool) and wait until it is there."""
    assert store.spares.take() is None
    for _ in range(500):
        if len(store.spares) == BATCH:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(store.spares)} spare files after 5 seconds")


async def _write(writer: QueueWriter) -> str:
    writer.sender("a@example.org")
    writer.recipient("b@example.net")
    await writer.awrite(SAMPLE)
    writer.end_content()
    return await writer.acommit()


def test_writers_start_from_unnamed_files_that_the_commit_links(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    incoming = tmp_path / "queue" / "incoming"

    async def main() -> str:
        await _filled(store)
        assert os.listdir(incoming) == []  # spare files have no name
        writer = await store.awriter()
        assert writer.temp_path == ""
        assert len(store.spares) == BATCH - 1
        assert os.listdir(incoming) == []
        return await _write(writer)

    queue_id = asyncio.run(main())
    assert os.listdir(incoming) == [queue_id]
    # A short queue ID ends in the file's inode number, as Postfix's.
    assert int(queue_id[5:], 16) == os.stat(incoming / queue_id).st_ino
    qf = store.read("incoming", queue_id)
    assert [r.address for r in qf.recipients] == ["b@example.net"]
    assert b"".join(store.content("incoming", queue_id, qf)) == SAMPLE


def test_an_aborted_or_dropped_spare_leaves_nothing_behind(tmp_path: Path) -> None:
    store = make_store(tmp_path)

    async def main() -> None:
        await _filled(store)
        writer = await store.awriter()
        writer.sender("a@example.org")
        writer.abort()

    asyncio.run(main())
    assert os.listdir(tmp_path / "queue" / "incoming") == []
    fds = [fd for fd, _inode in store.spares._files]
    assert fds
    del store
    gc.collect()
    for fd in fds:  # a store that is gone closed its spare files
        with pytest.raises(OSError):
            os.fstat(fd)


def test_the_first_message_and_a_pool_that_cannot_link_use_named_files(tmp_path: Path) -> None:
    store = make_store(tmp_path)

    def refuse(fd: int, path: str) -> None:
        raise OSError(18, "Invalid cross-device link")

    store.spares.link = refuse  # type: ignore[method-assign]  # as without /proc

    async def main() -> list[str]:
        first = await store.awriter()  # nothing made yet: a named file
        assert os.path.basename(first.temp_path).startswith(TEMP_PREFIX)
        ids = [await _write(first)]
        for _ in range(50):
            if store.spares.usable is not None:
                break
            await asyncio.sleep(0.01)
        assert store.spares.usable is False and len(store.spares) == 0
        later = await store.awriter()
        assert later.temp_path
        ids.append(await _write(later))
        return ids

    ids = asyncio.run(main())
    assert sorted(os.listdir(tmp_path / "queue" / "incoming")) == sorted(ids)


def test_a_forked_child_does_not_write_into_its_parents_spares(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    asyncio.run(_filled(store))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        ok = len(store.spares) == 0
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(store.spares) == BATCH  # the parent's are still open and its own
    for fd, inode in store.spares._files:
        assert os.fstat(fd).st_ino == inode


def test_a_passing_shortage_during_the_probe_is_asked_about_again(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    real_link = store.spares.link
    calls: list[str] = []

    def short_once(fd: int, path: str) -> None:
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.EMFILE, "Too many open files")
        real_link(fd, path)

    store.spares.link = short_once  # type: ignore[method-assign]

    async def main() -> None:
        assert store.spares.take() is None
        for _ in range(100):
            if store.spares._filling is None:
                break
            await asyncio.sleep(0.01)
        assert store.spares.usable is None and len(store.spares) == 0  # not decided yet
        await _filled(store)

    asyncio.run(main())
    assert store.spares.usable is True and len(calls) == 2
    assert os.listdir(tmp_path / "queue" / "incoming") == []  # the probe file is gone

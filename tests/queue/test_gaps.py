"""Recovery removes the temporary files of writers that are gone, at once.

The temporary name carries the writer's process ID; a file whose writer no
longer runs (no such process, a process that started after the file was
written, or one that is not mailhorn) is litter, whatever its age, and a
file whose writer still runs stays.

Recovery runs while sessions already commit (worker 0 recovers at start;
every worker accepts at once): a commit and a recovery that meet on one
temporary name both go on, in either order.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.queue.store import TEMP_PREFIX, QueueStore
from mailhorn.queue.tempfiles import process_start


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    s = QueueStore(str(tmp_path / "queue"))
    s.setup()
    return s


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def _temp(store: QueueStore, pid: int, mtime: float | None = None) -> str:
    name = f"{TEMP_PREFIX}{pid}.1.{time.monotonic_ns()}.0"
    path = os.path.join(store.root, "incoming", name)
    with open(path, "wb") as f:
        f.write(b"partial")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return name


def _running(procs: list[subprocess.Popen[bytes]], *argv: str) -> int:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *argv],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    procs.append(p)
    while process_start(p.pid) is None:
        time.sleep(0.01)
    return p.pid


def test_recover_removes_a_young_temp_file_of_a_dead_writer(store: QueueStore) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = _temp(store, int(done.stdout))
    report = store.recover()
    assert report.removed_temp == (dead,)
    assert os.listdir(os.path.join(store.root, "incoming")) == []


def test_recover_sees_pid_reuse_and_strangers(store: QueueStore,
                                              procs: list[subprocess.Popen[bytes]]) -> None:
    # A mailhorn process that started after the file was written: the ID was reused.
    reused = _temp(store, _running(procs, "mailhorn-writer"), mtime=time.time() - 120)
    # A process older than the file, but not a mailhorn process.
    stranger_pid = _running(procs, "something-else")
    stranger = _temp(store, stranger_pid)
    # A live mailhorn writer in another process, started before its file.
    live_pid = _running(procs, "mailhorn-writer")
    time.sleep(0.05)
    live = _temp(store, live_pid)
    report = store.recover()
    assert sorted(report.removed_temp) == sorted([reused, stranger])
    assert os.listdir(os.path.join(store.root, "incoming")) == [live]


def test_recover_keeps_the_file_of_a_live_writer_in_this_process(store: QueueStore) -> None:
    writer = store.writer()
    writer.sender("a@example.org")
    report = store.recover()
    assert report.removed_temp == ()
    assert os.path.exists(writer.temp_path)
    writer.abort()


def test_recovery_running_beside_a_commit_does_not_fail_it(store: QueueStore) -> None:
    """Worker 0 recovers the queue at start while the other workers' (and its
    own) smtpd sessions already commit: a recovery that sees a live writer's
    temporary file between its link and its unlink removes that name (it has
    a second link), and the commit must still succeed, its file durable
    under the queue ID and no temporary name left."""
    writer = store.writer()
    writer.sender("a@example.org")
    writer.recipient("b@example.net")
    writer.write(b"Subject: beside recovery\n\nbody\n")
    writer.end_content()
    seen: list[tuple[str, ...]] = []

    def recover_now(point: str) -> None:
        if point == "after-link":
            seen.append(store.recover().removed_temp)

    store.hooks.crash_point = recover_now
    queue_id = writer.commit()
    assert seen == [(os.path.basename(writer.temp_path),)]
    assert list(store.scan("incoming")) == [queue_id]
    assert store.read("incoming", queue_id).recipients[0].address == "b@example.net"
    assert os.listdir(os.path.join(store.root, "incoming")) == [queue_id]



class _Paused(Exception):
    """Raised at a crash point to stop a commit exactly there."""


def test_recovery_survives_a_writer_removing_its_temporary_name_first(store: QueueStore) -> None:
    """The other order of the same race: recovery has seen the second link,
    then the writer's own unlink comes first. Recovery goes on (a failing
    recovery would end worker 0 and every session it serves)."""

    def pause(point: str) -> None:
        if point == "after-link":
            raise _Paused(point)

    writer = store.writer()
    writer.sender("a@example.org")
    writer.recipient("b@example.net")
    writer.end_content()
    store.hooks.crash_point = pause
    with pytest.raises(_Paused):
        writer.commit()
    temp = writer.temp_path
    assert os.stat(temp).st_nlink == 2

    def writer_unlinks_meanwhile(point: str) -> None:
        if point == "recovery-examined":
            os.unlink(temp)  # the writer's own unlink, after recovery's lstat

    store.hooks.crash_point = writer_unlinks_meanwhile
    report = store.recover()
    assert report.removed_temp == ()
    assert list(store.scan("incoming")) == [writer.queue_id]
    assert os.listdir(os.path.join(store.root, "incoming")) == [writer.queue_id]

"""Recovery removes the temporary files of writers that are gone, at once.

The temporary name carries the writer's process ID; a file whose writer no
longer runs (no such process, a process that started after the file was
written, or one that is not mailhorn) is litter, whatever its age, and a
file whose writer still runs stays.
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

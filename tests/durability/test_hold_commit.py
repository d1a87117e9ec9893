"""Commits straight into ``hold``: durable under the queue ID, nothing left in ``incoming``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailhorn.queue.store import FsHooks, QueueStore


class Crash(Exception):
    """Stands for the process dying at a crash point."""


def _write(store: QueueStore) -> str:
    w = store.writer()
    w.sender("a@example.org")
    w.recipient("b@example.net")
    w.write(b"Subject: held\n\nbody\n")
    w.end_content()
    return w.commit("hold")


def test_commit_into_hold(tmp_path: Path) -> None:
    store = QueueStore(root=str(tmp_path / "queue"))
    store.setup()
    queue_id = _write(store)
    assert list(store.scan("hold")) == [queue_id]
    assert os.listdir(tmp_path / "queue" / "incoming") == []
    assert store.read("hold", queue_id).sender == "a@example.org"


def test_hashed_hold_directory_is_created(tmp_path: Path) -> None:
    store = QueueStore(root=str(tmp_path / "queue"), hash_names=frozenset({"hold"}), hash_depth=2)
    store.setup()
    queue_id = _write(store)
    assert store.find(queue_id) == ("hold", store.path("hold", queue_id))


def test_crash_after_link_leaves_a_temp_file_recovery_removes(tmp_path: Path) -> None:
    def crash(point: str) -> None:
        if point == "after-link":
            raise Crash(point)

    store = QueueStore(root=str(tmp_path / "queue"), hooks=FsHooks(crash_point=crash))
    store.setup()
    with pytest.raises(Crash):
        _write(store)
    [queue_id] = list(store.scan("hold"))
    [temp] = os.listdir(tmp_path / "queue" / "incoming")
    assert temp.startswith("tmp.")
    recovery = QueueStore(root=str(tmp_path / "queue")).recover()
    assert recovery.removed_temp == (temp,)
    assert os.listdir(tmp_path / "queue" / "incoming") == []
    assert store.read("hold", queue_id).recipients[0].address == "b@example.net"

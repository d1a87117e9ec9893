"""The fault injection switch of the queue store (``MAILHORN_FAULT_INJECT``), without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.config.load import load
from mailhorn.queue.store import FAULT_INJECT_ENV, QueueStore, QueueWriteError, fault_injection_hooks


def _store(tmp_path: Path) -> QueueStore:
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path / 'queue'}\n")
    store = QueueStore.from_config(load(str(tmp_path)))
    store.setup()
    return store


def test_unset_switch_writes_normally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAULT_INJECT_ENV, raising=False)
    store = _store(tmp_path)
    with store.writer() as w:
        w.sender("a@example.org")
        w.recipient("b@example.net")
        w.write(b"Subject: x\n\nbody\n")
        w.end_content()
        queue_id = w.commit()
    assert list(store.scan("incoming")) == [queue_id]


@pytest.mark.parametrize("spec", ["fsync:1.0", "write:1", "pwrite:1.0", "fsync:0, write:1.0"])
def test_switch_fails_commits_with_451(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    store = _store(tmp_path)
    monkeypatch.setenv(FAULT_INJECT_ENV, spec)
    faulty = _store(tmp_path)
    with faulty.writer() as w:
        w.sender("a@example.org")
        w.recipient("b@example.net")
        w.write(b"Subject: x\n\nbody\n")
        if "pwrite" in spec:
            # The size record is rewritten in place (pwrite) only once the
            # start of the file has left the buffer: a message over the flush size.
            w.write(b"x" * 300_000 + b"\n")
        w.end_content()
        with pytest.raises(QueueWriteError) as failure:
            w.commit()
    assert str(failure.value.reply) == "451 4.3.0 Error: queue file write error"
    assert list(store.scan("incoming")) == []
    assert list((tmp_path / "queue" / "incoming").iterdir()) == []


@pytest.mark.parametrize("spec", ["fsync", "rename:1.0", "fsync:x"])
def test_malformed_switch_is_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        fault_injection_hooks(spec)

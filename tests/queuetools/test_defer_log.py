"""The delivery status logs: format, appends, torn records, removal and renaming."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from mailhorn.queue.defer_log import (
    LogRecord,
    defer_reasons,
    log_path,
    read_log,
    record_bounce,
    record_defer,
    record_trace,
    remove_logs,
    rename_logs,
)
from mailhorn.queue.store import QueueStore


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    s = QueueStore(root=str(tmp_path / "spool"))
    s.setup()
    return s


def test_defer_record_format_and_hashed_path(store: QueueStore) -> None:
    record_defer(store, "695E220C285", "y@example.com", "4.4.1", "test reason one",
                 offset=291, orig_rcpt="Y@example.com", when=1795272548)
    path = log_path(store, "defer", "695E220C285")
    assert path == os.path.join(store.root, "defer", "6", "695E220C285")
    assert Path(path).read_text() == (
        "recipient=y@example.com\noffset=291\norig_rcpt=Y@example.com\nstatus=4.4.1\n"
        "action=delayed\nreason=test reason one\ntime=1795272548\n\n")
    assert read_log(store, "defer", "695E220C285") == [
        LogRecord("y@example.com", "4.4.1", "delayed", "test reason one", 291,
                  "Y@example.com", 1795272548)]


def test_bounce_and_trace_logs(store: QueueStore) -> None:
    record_bounce(store, "ABCDE1", "u@example.com", "5.1.1", "550 5.1.1 no such user", when=5)
    record_trace(store, "ABCDE1", "v@example.com", "2.0.0", "delivered to mailbox", when=6)
    assert read_log(store, "bounce", "ABCDE1") == [
        LogRecord("u@example.com", "5.1.1", "failed", "550 5.1.1 no such user", None, None, 5)]
    assert read_log(store, "trace", "ABCDE1")[0].action == "delivered"
    assert os.path.exists(os.path.join(store.root, "bounce", "ABCDE1"))


def test_reason_text_is_kept_on_one_line(store: QueueStore) -> None:
    record_defer(store, "ABCDE1", "u@example.com", "4.0.0", "a\r\nb\0c=d", when=1)
    (rec,) = read_log(store, "defer", "ABCDE1")
    assert rec.reason == "a  b c=d"


def test_last_reason_per_recipient_in_first_seen_order(store: QueueStore) -> None:
    for rcpt, reason in [("b@x", "one"), ("a@x", "two"), ("b@x", "three")]:
        record_defer(store, "ABCDE1", rcpt, "4.0.0", reason)
    reasons = defer_reasons(store, "ABCDE1")
    assert [(k, v.reason) for k, v in reasons.items()] == [("b@x", "three"), ("a@x", "two")]


def test_torn_last_record_and_unknown_fields_are_ignored(store: QueueStore) -> None:
    record_defer(store, "ABCDE1", "a@x", "4.0.0", "kept")
    with open(log_path(store, "defer", "ABCDE1"), "a") as f:
        f.write("recipient=b@x\nfuture=field\nstatus=4.0.0\n\nrecipient=c@x\nstatus=4.")
    assert [r.recipient for r in read_log(store, "defer", "ABCDE1")] == ["a@x", "b@x"]
    assert read_log(store, "defer", "FFFFF1") == []


def test_concurrent_appends_do_not_interleave(store: QueueStore) -> None:
    def writer(n: int) -> None:
        for i in range(50):
            record_defer(store, "ABCDE1", f"r{n}-{i}@example.com", "4.0.0", "x" * 300)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = read_log(store, "defer", "ABCDE1")
    assert len(records) == 200
    assert all(r.reason == "x" * 300 and r.status == "4.0.0" for r in records)


def test_remove_and_rename(store: QueueStore) -> None:
    record_defer(store, "695E220C285", "a@x", "4.0.0", "r")
    record_bounce(store, "695E220C285", "b@x", "5.0.0", "r")
    rename_logs(store, "695E220C285", "695E2ABC")
    assert read_log(store, "defer", "695E220C285") == []
    assert [r.recipient for r in read_log(store, "bounce", "695E2ABC")] == ["b@x"]
    assert remove_logs(store, "695E2ABC") == ["bounce/695E2ABC", "defer/6/695E2ABC"]
    assert remove_logs(store, "695E2ABC") == []
    with pytest.raises(ValueError):
        log_path(store, "deferred", "695E2ABC")

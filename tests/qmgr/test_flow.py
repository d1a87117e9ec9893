"""One attempt of a message: discard, error, retry, corrupt files, double bounces, logs."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from mailhorn.queue import defer_log
from tests.qmgr.util import BODY, make_setup, run_incoming

LINE = re.compile(r"^(?P<id>\w+): to=<(?P<to>[^>]*)>, (?:orig_to=<[^>]*>, )?relay=(?P<relay>\S+), "
                  r"delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=(?P<dsn>\d\.\d+\.\d+), "
                  r"status=(?P<status>\w+) \((?P<text>.*)\)$")


def bounce_available() -> bool:
    try:
        return importlib.util.find_spec("mailhorn.bounce.notify") is not None
    except ModuleNotFoundError:
        return False


def transport_table(tmp_path: Path, text: str) -> str:
    path = tmp_path / "transport"
    path.write_text(text)
    return f"transport_maps = texthash:{path}\n"


def test_discard_delivers_and_removes(tmp_path: Path) -> None:
    s = make_setup(tmp_path, transport_table(tmp_path, "gone@example.com discard:silently dropped\n"
                                                       "other@example.com discard:\n"))
    queue_id = s.submit("gone@example.com", "other@example.com")
    qm = s.manager()

    assert run_incoming(qm) == 1
    tagged = s.tagged()
    assert tagged[0] == f"qmgr: {queue_id}: from=<a@example.org>, size={len(BODY)}, nrcpt=2 (queue active)"
    sent = [LINE.match(t.split(": ", 1)[1]) for t in tagged if t.startswith("discard: ")]
    assert sorted((m["to"], m["relay"], m["dsn"], m["status"], m["text"]) for m in sent if m) == [
        ("gone@example.com", "none", "2.0.0", "sent", "silently dropped"),
        ("other@example.com", "none", "2.0.0", "sent", "example.com"),
    ]
    assert tagged[-1] == f"qmgr: {queue_id}: removed"
    assert s.queue("active") == [] and s.queue("incoming") == [] and s.queue("deferred") == []


def test_error_transport_bounces_with_its_text(tmp_path: Path) -> None:
    s = make_setup(tmp_path, transport_table(tmp_path, "x@example.com error:5.1.1 mailbox unavailable\n"
                                                       "y@example.com error:no such user here\n"))
    queue_id = s.submit("x@example.com", "y@example.com")
    qm = s.manager()

    run_incoming(qm)
    lines = [LINE.match(t.split(": ", 1)[1]) for t in s.tagged() if t.startswith("error: ")]
    assert sorted((m["to"], m["dsn"], m["status"], m["text"]) for m in lines if m) == [
        ("x@example.com", "5.1.1", "bounced", "mailbox unavailable"),
        ("y@example.com", "5.0.0", "bounced", "no such user here"),
    ]
    if bounce_available():
        # The notice was queued and the message is gone with its logs.
        assert s.queue("deferred") == [] and s.queue("active") == []
        assert f"qmgr: {queue_id}: removed" in s.tagged()
    else:
        # No bounce service: the records wait, the recipients are done, the message stays.
        assert s.queue("deferred") == [queue_id]
        records = defer_log.read_log(s.store, "bounce", queue_id)
        assert sorted((r.recipient, r.status, r.reason) for r in records) == [
            ("x@example.com", "5.1.1", "mailbox unavailable"), ("y@example.com", "5.0.0", "no such user here")]
        assert s.store.read("deferred", queue_id).pending == ()


def test_retry_defers_and_records_reason(tmp_path: Path) -> None:
    s = make_setup(tmp_path, transport_table(tmp_path, "z@example.com retry:4.4.1 try later\n"))
    queue_id = s.submit("z@example.com")
    qm = s.manager()

    run_incoming(qm)
    lines = [LINE.match(t.split(": ", 1)[1]) for t in s.tagged() if t.startswith("error: ")]
    assert [(m["to"], m["dsn"], m["status"], m["text"]) for m in lines if m] == [
        ("z@example.com", "4.4.1", "deferred", "try later")]
    assert s.queue("deferred") == [queue_id]
    reasons = defer_log.defer_reasons(s.store, queue_id)
    assert reasons["z@example.com"].reason == "try later"
    assert s.store.read("deferred", queue_id).pending[0].address == "z@example.com"


def test_corrupt_files_move_to_corrupt(tmp_path: Path) -> None:
    s = make_setup(tmp_path, transport_table(tmp_path, "gone@example.com error:5.1.1 gone\n"))
    envelope = s.submit("gone@example.com")
    content = s.submit("gone@example.com")
    for queue_id, where in ((envelope, 30), (content, -20)):
        path = Path(s.store.path("incoming", queue_id))
        data = bytearray(path.read_bytes())
        data[where] ^= 0xFF  # a damaged envelope record, a damaged content chunk
        path.write_bytes(bytes(data))
    qm = s.manager()

    run_incoming(qm)
    assert s.queue("corrupt") == sorted([envelope, content])
    assert s.queue("active") == [] and s.queue("deferred") == []
    tagged = s.tagged()
    for queue_id in (envelope, content):
        assert f"qmgr: warning: corrupt file queue active id {queue_id}" in tagged
    assert any(t.startswith(f"qmgr: warning: {envelope}: message rejected: ") for t in tagged)


def test_resolver_errors_and_double_bounce(tmp_path: Path) -> None:
    s = make_setup(tmp_path, "double_bounce_sender = double-bounce\n")
    queue_id = s.submit("double-bounce@mail.example.org", "-opt@mail.example.org", sender="")
    qm = s.manager()

    run_incoming(qm)
    tagged = s.tagged()
    qmgr_lines = [LINE.match(t.split(": ", 1)[1]) for t in tagged if t.startswith("qmgr: ") and "to=<" in t]
    assert [(m["to"], m["dsn"], m["status"], m["text"]) for m in qmgr_lines if m] == [
        ("double-bounce@mail.example.org", "2.0.0", "sent", "undeliverable postmaster notification discarded")]
    errors = [LINE.match(t.split(": ", 1)[1]) for t in tagged if t.startswith("error: ")]
    assert [(m["to"], m["dsn"], m["status"], m["text"]) for m in errors if m] == [
        ("-opt@mail.example.org", "5.1.3", "bounced", "bad address syntax")]
    assert os.path.exists(s.store.path("deferred", queue_id)) != bounce_available()

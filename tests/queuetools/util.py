"""Helpers for the queue tool tests: queues built message by message, commands run in-process."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailhorn.queue.defer_log import record_defer
from mailhorn.queue.store import QueueStore


@dataclass
class Message:
    """One message to place in a queue under a chosen queue ID."""

    queue: str
    queue_id: str
    sender: str
    recipients: Sequence[str]
    arrival: float
    size: int = 300
    done: Sequence[str] = ()
    #: (recipient, dsn status, reason) appended to the defer log, in order.
    defer: Sequence[tuple[str, str, str]] = ()
    mode_bits: int = 0
    extra_headers: list[str] = field(default_factory=list)


def content_of(size: int) -> bytes:
    """Message content of exactly ``size`` bytes (headers, blank line, body)."""
    head = b"Subject: test\n\n"
    if size <= len(head):
        return head[:size]
    body = (b"x" * 71 + b"\n") * ((size - len(head)) // 72 + 1)
    return head + body[: size - len(head)]


def make_config(tmp_path: Path, extra: str = "") -> tuple[Path, QueueStore]:
    """A configuration directory and an empty queue below ``tmp_path``."""
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    spool = tmp_path / "spool"
    (etc / "main.cf").write_text(
        f"queue_directory = {spool}\nmaillog_file = {tmp_path / 'maillog'}\n{extra}")
    (etc / "master.cf").write_text("")
    store = QueueStore(root=str(spool))
    store.setup()
    return etc, store


def place(store: QueueStore, msg: Message) -> str:
    """Write ``msg`` with the queue writer, then give it its queue and ID; returns the path."""
    with store.writer(arrival=msg.arrival) as writer:
        writer.sender(msg.sender)
        for rcpt in msg.recipients:
            writer.recipient(rcpt)
        writer.write(content_of(msg.size))
        writer.commit()
        produced = writer.queue_id
    path = store.path(msg.queue, msg.queue_id)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    os.rename(store.path("incoming", produced), path)
    if msg.done:
        qf = store.read(msg.queue, msg.queue_id)
        offsets = [r.offset for r in qf.recipients if r.address in msg.done]
        store.mark_done(msg.queue, msg.queue_id, offsets)
    for rcpt, status, reason in msg.defer:
        record_defer(store, msg.queue_id, rcpt, status, reason)
    if msg.mode_bits:
        os.chmod(path, os.stat(path).st_mode | msg.mode_bits)
    return path


@dataclass
class Result:
    status: int
    out: str
    err: str


def call(run: Callable[[list[str]], int], argv: list[str], stdin: str = "") -> Result:
    """Run a command's ``run(argv)`` in this process, capturing its streams."""
    saved = sys.stdin, sys.stdout, sys.stderr
    out, err = io.StringIO(), io.StringIO()
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
    try:
        try:
            status = run(argv)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return Result(status, out.getvalue(), err.getvalue())


def where(store: QueueStore) -> dict[str, str]:
    """queue ID -> queue, for every message file."""
    found: dict[str, str] = {}
    for queue in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt"):
        for queue_id in store.scan(queue):
            found[queue_id] = queue
    return found

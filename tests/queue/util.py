"""Helpers shared by the queue tests: a store in a temp dir and sample messages."""

from __future__ import annotations

from pathlib import Path

from mailhorn.queue.queuefile import DsnNotify, DsnRet, RecordType
from mailhorn.queue.store import FsHooks, QueueStore

SAMPLE = (b"Received: from client.example (localhost [127.0.0.1])\n"
          b"Subject: a test\n"
          b"From: Sender <a@example.org>\n"
          b"\n"
          b"first body line\n"
          b"second body line\n")


def make_store(tmp_path: Path, hooks: FsHooks | None = None, **kwargs: object) -> QueueStore:
    store = QueueStore(str(tmp_path / "queue"), hooks=hooks or FsHooks(), **kwargs)  # type: ignore[arg-type]
    store.setup()
    return store


def write_sample(store: QueueStore, content: bytes = SAMPLE, arrival: float | None = 1700000000.25,
                 recipients: tuple[str, ...] = ("x@example.com", "y@example.com")) -> str:
    """Write and commit one message with every kind of envelope record."""
    with store.writer(arrival) as w:
        w.create_time(1700000000)
        w.sender("a@example.org", "Sender Name")
        # One attribute alone in its record, the rest sharing one (as cleanup writes them).
        w.attribute("rewrite_context", "remote")
        w.attributes([("log_client_name", "client.example"), ("log_client_address", "127.0.0.1"),
                      ("helo_name", "client.example"), ("protocol_name", "ESMTP"), ("sasl_username", "alice"),
                      ("log_ident", "ident"), ("encoding", "8bit"), ("smtputf8", "1")])
        w.content_filter("smtp:[127.0.0.1]:10024")
        w.dsn("ENVID-1", DsnRet.HDRS)
        w.warn_time(1700003600)
        for i, rcpt in enumerate(recipients):
            if i == 0:
                w.recipient(rcpt, orig_rcpt=rcpt.upper(), dsn_orcpt=f"rfc822;{rcpt}",
                            dsn_notify=DsnNotify.SUCCESS | DsnNotify.FAILURE)
            else:
                w.recipient(rcpt)
        w.write(content)
        w.end_content()
        w.extracted(RecordType.RETURN_RECEIPT, "rr@example.org")
        w.extracted(RecordType.ERRORS_TO, "errors@example.org")
        return w.commit()

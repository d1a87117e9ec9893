"""Helpers for bounce tests: queue a message through the real cleanup, log outcomes, send notices."""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage, Message
from pathlib import Path

from mailhorn.bounce.notify import send_dsn
from mailhorn.cleanup.request import ClientInfo, Outcome, RecipientRequest
from mailhorn.queue import defer_log
from mailhorn.runtime import Runtime
from tests.cleanup.util import Rig, make_rig

HOST = "oracle.example.org"
CLIENT = ClientInfo(name="localhost", addr="127.0.0.1", port="4711", helo="client.example",
                    protocol="ESMTP")


def rig(root: Path, **params: str) -> Rig:
    return make_rig(root, myhostname=HOST, mydomain="example.org", **params)


def queue(r: Rig, data: bytes, *, sender: str = "s@sender.example",
          recipients: tuple[RecipientRequest, ...] = (RecipientRequest("r1@dest.example"),),
          **fields: object) -> str:
    """Queue a message through cleanup as smtpd would; returns its queue ID."""
    from mailhorn.cleanup.request import CleanupRequest, Source

    request = CleanupRequest(Source.SMTPD, sender, recipients, client=CLIENT,
                             **fields)  # type: ignore[arg-type]

    async def go() -> str:
        session = r.cleanup.open(request)
        await session.write(data)
        result = await session.finish()
        assert result.outcome is Outcome.QUEUED and result.queue_id
        return result.queue_id

    return asyncio.run(go())


def log_all(r: Rig, queue_id: str, log: str, status: str, reason: str, *, action: str = "") -> None:
    """Record the same outcome for every recipient, in address order (as qmgr sorts them)."""
    qf = r.store.read("incoming", queue_id)
    for rcpt in sorted(qf.recipients, key=lambda x: x.address):
        if log == "bounce":
            defer_log.record_bounce(r.store, queue_id, rcpt.address, status, reason,
                                    offset=rcpt.offset, orig_rcpt=rcpt.orig_rcpt)
        elif log == "defer":
            defer_log.record_defer(r.store, queue_id, rcpt.address, status, reason,
                                   offset=rcpt.offset, orig_rcpt=rcpt.orig_rcpt)
        else:
            defer_log.record_trace(r.store, queue_id, rcpt.address, status, reason,
                                   action=action or "delivered", offset=rcpt.offset,
                                   orig_rcpt=rcpt.orig_rcpt)


def notify(r: Rig, queue_id: str, kind: str) -> str | None:
    runtime = Runtime(queue=r.store, cleanup=r.cleanup, anvil=None,  # type: ignore[arg-type]
                      wakeup_qmgr=lambda: None)
    return asyncio.run(send_dsn(r.config, runtime, r.store, "incoming", queue_id, kind))


def notice(r: Rig, queue_id: str) -> tuple[str, list[str], bytes]:
    """(envelope sender, recipients, content) of a queued notice."""
    qf, content = r.read(queue_id)
    return qf.sender, [x.address for x in qf.recipients], content


def parse(content: bytes) -> EmailMessage:
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def report_parts(msg: Message) -> tuple[EmailMessage, list[Message], EmailMessage]:
    """(notification, delivery-status blocks, returned part) of a DSN."""
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    text, status, returned = parts
    assert isinstance(text, EmailMessage) and isinstance(returned, EmailMessage)
    assert isinstance(status, EmailMessage)
    assert text.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    return text, [b for b in blocks if isinstance(b, Message)], returned


def attached(part: EmailMessage) -> EmailMessage:
    """The message inside a message/rfc822 part."""
    payload = part.get_payload()
    assert isinstance(payload, list) and isinstance(payload[0], EmailMessage)
    return payload[0]

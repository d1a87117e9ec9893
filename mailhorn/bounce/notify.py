"""Sending delivery status notifications: Postfix's bounce(8) service.

:func:`send_dsn` reads one queued message and its delivery status log
(``bounce/ID`` for a failure notice, ``defer/ID`` for a delay warning,
``trace/ID`` for a success notice; :mod:`mailhorn.queue.defer_log`), builds
the RFC 3464 report (:mod:`mailhorn.bounce.dsn`) and submits it through
cleanup (``Source.BOUNCE``, envelope sender ``<>``), as Postfix's bounce
daemon does. Who gets what:

* the sender gets a notice for the recipients whose RFC 3461 NOTIFY asks
  for it: FAILURE/DELAY when NOTIFY was not given (RFC 3461 §4.1), SUCCESS
  only when asked, nothing for NEVER;
* ``notify_classes`` ``bounce``: a copy (returned message headers only) to
  ``bounce_notice_recipient``; ``delay``: a copy of delay warnings to
  ``delay_notice_recipient``. Postmaster copies come from
  ``double_bounce_sender`` so that their own failure is never returned;
* mail from ``<>`` never gets a notice; when it fails, the whole message
  goes to ``2bounce_notice_recipient`` if ``notify_classes`` lists
  ``2bounce`` (or ``bounce``, which implies it), else it is dropped, as in
  Postfix;
* mail from ``double_bounce_sender`` (a postmaster notice that failed) is
  dropped with ``warning: ID: undeliverable postmaster notification
  discarded``, which ends every loop.

The returned message is complete for failure notices unless RET=HDRS was
asked or it is larger than ``bounce_size_limit``; delay warnings and
success notices return the headers unless RET=FULL was asked.

After a failure or success notice is queued its log (``bounce/ID`` or
``trace/ID``) is removed, as Postfix's bounce daemon removes the log it
has reported, so a notice is never sent twice; the defer log stays (the
message is still queued).

Log lines (``bounce`` program): ``ID: sender non-delivery notification:
NEWID``, ``ID: postmaster non-delivery notification: NEWID``, ``ID: sender
delay notification: NEWID``, ``ID: postmaster delay notification: NEWID``,
``ID: sender delivery status notification: NEWID``.

Parameters read: ``myhostname``, ``myorigin``, ``notify_classes``,
``bounce_notice_recipient``, ``2bounce_notice_recipient``,
``delay_notice_recipient``, ``double_bounce_sender``, ``bounce_size_limit``,
``delay_warning_time``, ``maximal_queue_lifetime``.

Errors: ``OSError`` or :class:`~mailhorn.queue.queuefile.CorruptQueueFile`
when the queue file cannot be read; :class:`NoticeNotQueued` when cleanup
refuses the notice (the caller keeps the log and tries again later).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mailhorn import log
from mailhorn.bounce.dsn import DsnInfo, DsnRecipient, Kind, build_dsn, header_block
from mailhorn.cleanup.request import CleanupRequest, Outcome, RecipientRequest, Source
from mailhorn.config.load import Config
from mailhorn.iopool import offload
from mailhorn.queue import defer_log
from mailhorn.queue.defer_log import LogRecord
from mailhorn.queue.queuefile import DsnNotify, DsnRet, QueueFile, Recipient
from mailhorn.queue.store import QueueStore
from mailhorn.runtime import Runtime

#: The log each notice reports, and the NOTIFY keyword that asks for it.
_LOGS = {Kind.FAILURE: "bounce", Kind.DELAY: "defer", Kind.SUCCESS: "trace"}
_WANTS = {Kind.FAILURE: DsnNotify.FAILURE, Kind.DELAY: DsnNotify.DELAY, Kind.SUCCESS: DsnNotify.SUCCESS}
_WORDS = {Kind.FAILURE: "non-delivery", Kind.DELAY: "delay", Kind.SUCCESS: "delivery status"}


class NoticeNotQueued(Exception):
    """cleanup did not accept a notification."""


def wants(kind: Kind, notify: DsnNotify | None) -> bool:
    """Whether a recipient's NOTIFY asks for this notice (RFC 3461 §4.1)."""
    if notify is None:
        return kind is not Kind.SUCCESS
    return bool(notify & _WANTS[kind])


def _match(records: Sequence[LogRecord], qf: QueueFile) -> list[tuple[LogRecord, Recipient | None]]:
    """Each log record with its queue file recipient (by offset, else by address)."""
    by_offset = {r.offset: r for r in qf.recipients}
    by_address: dict[str, Recipient] = {}
    for r in qf.recipients:
        by_address.setdefault(r.address.casefold(), r)
    out: list[tuple[LogRecord, Recipient | None]] = []
    for rec in records:
        found = by_offset.get(rec.offset) if rec.offset is not None else None
        if found is None:
            found = by_address.get(rec.recipient.casefold())
        out.append((rec, found))
    return out


def _dsn_recipient(rec: LogRecord, rcpt: Recipient | None) -> DsnRecipient:
    return DsnRecipient(
        address=rec.recipient, status=rec.status, action=rec.action, reason=rec.reason,
        orig_rcpt=rec.orig_rcpt or (rcpt.orig_rcpt if rcpt else None),
        dsn_orcpt=rcpt.dsn_orcpt if rcpt else None)


def _qualify(address: str, origin: str) -> str:
    return address if "@" in address or not address else f"{address}@{origin}"


async def send_dsn(config: Config, runtime: Runtime, store: QueueStore, queue_name: str,
                   queue_id: str, kind: str) -> str | None:
    """Send the ``kind`` notice ("failure", "delay", "success") for one message.

    Returns the queue ID of the notice to the sender, or of the postmaster
    notice when only that was sent, or None when nothing was due.
    """
    which = Kind(kind)
    qf = await offload(store.read, queue_name, queue_id, verify_content=False)
    log_name = _LOGS[which]
    if which is Kind.DELAY:
        records = list((await offload(defer_log.defer_reasons, store, queue_id)).values())
    else:
        records = await offload(defer_log.read_log, store, log_name, queue_id)
    pairs = _match(records, qf)
    myorigin = config.get("myorigin")
    double_bounce = _qualify(config.get("double_bounce_sender"), myorigin)
    classes = {c.lower() for c in config.list("notify_classes")}
    sender = qf.sender
    result: str | None = None
    if sender and sender.casefold() == double_bounce.casefold():
        log.warning(f"{queue_id}: undeliverable postmaster notification discarded", program="bounce")
    elif not sender:
        if which is Kind.FAILURE and classes & {"2bounce", "bounce"} and pairs:
            everyone = tuple(_dsn_recipient(r, q) for r, q in pairs)
            result = await _notify(config, runtime, store, queue_name, qf, queue_id, which, everyone,
                                   to=config.get("2bounce_notice_recipient"), postmaster=True,
                                   headers_only=_too_big(config, qf))
        elif which is Kind.DELAY and "delay" in classes and pairs:
            everyone = tuple(_dsn_recipient(r, q) for r, q in pairs)
            result = await _notify(config, runtime, store, queue_name, qf, queue_id, which, everyone,
                                   to=config.get("delay_notice_recipient"), postmaster=True,
                                   headers_only=True)
    else:
        chosen = tuple(_dsn_recipient(r, q) for r, q in pairs
                       if wants(which, q.dsn_notify if q else None))
        if chosen:
            result = await _notify(config, runtime, store, queue_name, qf, queue_id, which, chosen,
                                   to=sender, postmaster=False,
                                   headers_only=_headers_only(config, qf, which))
        copy_to = {Kind.FAILURE: ("bounce", "bounce_notice_recipient"),
                   Kind.DELAY: ("delay", "delay_notice_recipient")}.get(which)
        if chosen and copy_to is not None and copy_to[0] in classes:
            pm = await _notify(config, runtime, store, queue_name, qf, queue_id, which, chosen,
                               to=config.get(copy_to[1]), postmaster=True, headers_only=True)
            result = result or pm
    if which is not Kind.DELAY:
        await defer_log.aremove_logs(store, queue_id, (log_name,))
    return result


def _too_big(config: Config, qf: QueueFile) -> bool:
    return qf.content_size > config.int("bounce_size_limit")


def _headers_only(config: Config, qf: QueueFile, which: Kind) -> bool:
    if qf.dsn_ret is DsnRet.HDRS:
        return True
    if which is not Kind.FAILURE and qf.dsn_ret is not DsnRet.FULL:
        return True
    return _too_big(config, qf)


def _read_content(store: QueueStore, queue_name: str, queue_id: str, qf: QueueFile,
                  headers_only: bool) -> list[bytes]:
    """The returned message: at most the header block, or the whole (bounded) message."""
    chunks = store.content(queue_name, queue_id, qf)
    if headers_only:
        # header_block stops reading at the end of the header; the generator
        # (and its file) is closed when dropped.
        return list(header_block(chunks))
    return list(chunks)


async def _notify(config: Config, runtime: Runtime, store: QueueStore, queue_name: str,
                  qf: QueueFile, queue_id: str, which: Kind, recipients: tuple[DsnRecipient, ...],
                  *, to: str, postmaster: bool, headers_only: bool) -> str:
    """Build one notice, hand it to cleanup, log it; returns its queue ID."""
    myorigin = config.get("myorigin")
    to = _qualify(to, myorigin)
    eight_bit = qf.attributes.get("encoding") == "8bit"
    info = DsnInfo(
        kind=which, queue_id=queue_id, myhostname=config.get("myhostname"), myorigin=myorigin,
        sender=qf.sender, recipient=to, arrival=float(qf.arrival_time[0]), recipients=recipients,
        postmaster=postmaster, headers_only=headers_only, eight_bit=eight_bit, envid=qf.dsn_envid,
        now=time.time(), delay_hours=config.time("delay_warning_time") // 3600,
        lifetime_days=config.time("maximal_queue_lifetime") // 86400,
        lifetime_seconds=config.time("maximal_queue_lifetime"))
    content = await offload(_read_content, store, queue_name, queue_id, qf, headers_only)
    envelope_sender = _qualify(config.get("double_bounce_sender"), myorigin) if postmaster else ""
    request = CleanupRequest(
        source=Source.BOUNCE, sender=envelope_sender,
        recipients=(RecipientRequest(to, orcpt=f"rfc822;{to}"),),
        body_type="8BITMIME" if eight_bit else "",
        # Only smtpd and pickup apply content_filter (Postfix); notices go out unfiltered.
        content_filter="")
    session = runtime.cleanup.open(request)
    try:
        for piece in build_dsn(info, content):
            await session.write(piece)
    except BaseException:
        await session.abort()
        raise
    outcome = await session.finish()
    if outcome.outcome is not Outcome.QUEUED or outcome.queue_id is None:
        why = outcome.reply.text if outcome.reply is not None else outcome.outcome.value
        raise NoticeNotQueued(f"{queue_id}: notification not queued: {why}")
    who = "postmaster" if postmaster else "sender"
    log.info(f"{queue_id}: {who} {_WORDS[which]} notification: {outcome.queue_id}", program="bounce")
    runtime.wakeup_qmgr()
    return outcome.queue_id

"""Delivery status notifications: who gets one, and what Python's email parser reads in it.

Each notice is built from a message queued by the real cleanup and the
delivery status logs the queue manager writes, submitted through cleanup,
and read back from the queue file.
"""

from __future__ import annotations

from pathlib import Path

from mailhorn.cleanup.request import RecipientRequest
from mailhorn.queue import defer_log
from tests.bounce.util import HOST, attached, log_all, notice, notify, parse, queue, report_parts, rig

MESSAGE = b"Subject: test\nFrom: s@sender.example\nMessage-ID: <m1@x>\n\nhello body\n"
REMOTE = ("host mx.dest.example[192.0.2.1] said: 550 5.1.1 <r1@dest.example>: Recipient address "
          "rejected: User unknown in local recipient table (in reply to RCPT TO command)")


def test_failure_notice_is_a_delivery_status_report(tmp_path: Path) -> None:
    r = rig(tmp_path)
    qid = queue(r, MESSAGE, recipients=(RecipientRequest("r1@dest.example", "rfc822;orig@dest.example"),
                                        RecipientRequest("r2@dest.example")),
                dsn_envid="env123", dsn_ret="FULL")
    log_all(r, qid, "bounce", "5.1.1", REMOTE)
    new = notify(r, qid, "failure")
    assert new is not None
    sender, rcpts, content = notice(r, new)
    assert sender == "" and rcpts == ["s@sender.example"]
    msg = parse(content)
    assert msg["From"] == f"Mail Delivery System <MAILER-DAEMON@{HOST}>"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    text, blocks, returned = report_parts(msg)
    assert f"This is the mail system at host {HOST}." in text.get_content()
    assert "<r1@dest.example>: host mx.dest.example[192.0.2.1] said: 550 5.1.1" in text.get_content()
    head, first, second = blocks
    assert head["Reporting-MTA"] == f"dns; {HOST}"
    assert head["Original-Envelope-Id"] == "env123"
    assert head["X-Postfix-Queue-ID"] == qid
    assert head["X-Postfix-Sender"] == "rfc822; s@sender.example"
    assert first["Final-Recipient"] == "rfc822; r1@dest.example"
    assert first["Original-Recipient"] == "rfc822;orig@dest.example"
    assert second["Original-Recipient"] == "rfc822;r2@dest.example"
    for block in (first, second):
        assert block["Action"] == "failed"
        assert block["Status"] == "5.1.1"
        assert block["Remote-MTA"] == "dns; mx.dest.example"
        assert " ".join(block["Diagnostic-Code"].split()) == (
            "smtp; 550 5.1.1 <r1@dest.example>: Recipient address rejected: "
            "User unknown in local recipient table")
    assert returned.get_content_type() == "message/rfc822"
    inner = attached(returned)
    assert inner["Subject"] == "test" and inner["Return-Path"] == "<s@sender.example>"
    assert inner.get_payload() == "hello body\n"
    assert f"{qid}: sender non-delivery notification: {new}" in r.log_lines()
    # The bounce log is reported once.
    assert defer_log.read_log(r.store, "bounce", qid) == []
    assert notify(r, qid, "failure") is None


def test_notify_never_and_notify_lists(tmp_path: Path) -> None:
    r = rig(tmp_path)
    qid = queue(r, MESSAGE, recipients=(RecipientRequest("r1@dest.example", notify=frozenset({"NEVER"})),))
    log_all(r, qid, "bounce", "5.1.1", "nope")
    assert notify(r, qid, "failure") is None
    assert list(r.store.scan("incoming")) == [qid]
    # NOTIFY=SUCCESS alone: no failure notice, but a success notice.
    qid2 = queue(r, MESSAGE, recipients=(RecipientRequest("r2@dest.example", notify=frozenset({"SUCCESS"})),))
    log_all(r, qid2, "bounce", "5.1.1", "nope")
    assert notify(r, qid2, "failure") is None
    log_all(r, qid2, "trace", "2.0.0", "delivered to mailbox")
    new = notify(r, qid2, "success")
    assert new is not None
    msg = parse(notice(r, new)[2])
    assert msg["Subject"] == "Successful Mail Delivery Report"
    text, blocks, returned = report_parts(msg)
    assert "successfully delivered" in text.get_content()
    assert blocks[1]["Action"] == "delivered" and blocks[1]["Status"] == "2.0.0"
    assert returned.get_content_type() == "text/rfc822-headers"
    assert returned["Content-Description"] == "Message Headers"
    assert f"{qid2}: sender delivery status notification: {new}" in r.log_lines()
    # Without NOTIFY there is no success notice (RFC 3461 §4.1 default: FAILURE, DELAY).
    qid3 = queue(r, MESSAGE)
    log_all(r, qid3, "trace", "2.0.0", "delivered to mailbox")
    assert notify(r, qid3, "success") is None


def test_ret_hdrs_and_size_limit_return_headers_only(tmp_path: Path) -> None:
    r = rig(tmp_path, bounce_size_limit="500")
    qid = queue(r, MESSAGE, dsn_ret="HDRS")
    log_all(r, qid, "bounce", "5.1.1", "nope")
    msg = parse(notice(r, notify(r, qid, "failure") or "")[2])
    _text, _blocks, returned = report_parts(msg)
    assert returned.get_content_type() == "text/rfc822-headers"
    assert returned["Content-Description"] == "Undelivered Message Headers"
    body = returned.get_content()
    assert "Subject: test" in body and "hello body" not in body
    big = queue(r, MESSAGE + b"0123456789" * 100 + b"\n")
    log_all(r, big, "bounce", "5.1.1", "nope")
    msg = parse(notice(r, notify(r, big, "failure") or "")[2])
    assert report_parts(msg)[2].get_content_type() == "text/rfc822-headers"


def test_null_sender_bounce_goes_to_postmaster_once(tmp_path: Path) -> None:
    # Default notify_classes: a failed bounce is dropped, as in Postfix.
    r = rig(tmp_path)
    qid = queue(r, MESSAGE, sender="")
    log_all(r, qid, "bounce", "5.1.1", "nope")
    assert notify(r, qid, "failure") is None
    assert list(r.store.scan("incoming")) == [qid]

    r = rig(tmp_path / "2", notify_classes="2bounce")
    qid = queue(r, MESSAGE, sender="")
    log_all(r, qid, "bounce", "5.1.1", "nope")
    new = notify(r, qid, "failure")
    assert new is not None
    sender, rcpts, content = notice(r, new)
    assert sender == f"double-bounce@{HOST}" and rcpts == [f"postmaster@{HOST}"]
    msg = parse(content)
    assert msg["Subject"] == "Postmaster Copy: Undelivered Mail"
    assert msg["Auto-Submitted"] == "auto-generated"
    _text, blocks, returned = report_parts(msg)
    assert blocks[0]["X-Postfix-Sender"] == f"rfc822; MAILER-DAEMON@{HOST}"
    assert returned.get_content_type() == "message/rfc822"
    assert f"{qid}: postmaster non-delivery notification: {new}" in r.log_lines()
    # The postmaster notice itself fails: it is dropped, never returned again.
    log_all(r, new, "bounce", "5.1.1", "nope")
    assert notify(r, new, "failure") is None
    assert f"warning: {new}: undeliverable postmaster notification discarded" in r.log_lines()
    assert sorted(r.store.scan("incoming")) == sorted([qid, new])


def test_bounce_class_sends_postmaster_copy_of_headers(tmp_path: Path) -> None:
    r = rig(tmp_path, notify_classes="bounce", bounce_notice_recipient="hostmaster")
    qid = queue(r, MESSAGE)
    log_all(r, qid, "bounce", "5.1.1", "nope")
    sender_id = notify(r, qid, "failure")
    ids = set(r.store.scan("incoming")) - {qid, sender_id}
    assert len(ids) == 1
    (copy,) = ids
    sender, rcpts, content = notice(r, copy)
    assert sender == f"double-bounce@{HOST}" and rcpts == [f"hostmaster@{HOST}"]
    msg = parse(content)
    text, _blocks, returned = report_parts(msg)
    assert "This is the mail system" not in text.get_content()
    assert "<r1@dest.example>: nope" in text.get_content()
    assert returned.get_content_type() == "text/rfc822-headers"


def test_delay_warning(tmp_path: Path) -> None:
    r = rig(tmp_path, delay_warning_time="4h", maximal_queue_lifetime="5d", notify_classes="delay")
    qid = queue(r, MESSAGE)
    log_all(r, qid, "defer", "4.4.1", "connect to mx.dest.example[192.0.2.1]:25: Connection refused")
    new = notify(r, qid, "delay")
    assert new is not None
    msg = parse(notice(r, new)[2])
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    text, blocks, returned = report_parts(msg)
    assert "Your message could not be delivered for more than 4 hour(s)." in text.get_content()
    assert "It will be retried until it is 5 day(s) old." in text.get_content()
    assert blocks[1]["Action"] == "delayed" and blocks[1]["Status"] == "4.4.1"
    assert blocks[1]["Will-Retry-Until"]
    assert returned.get_content_type() == "text/rfc822-headers"
    lines = r.log_lines()
    assert f"{qid}: sender delay notification: {new}" in lines
    assert any(line.startswith(f"{qid}: postmaster delay notification: ") for line in lines)
    # The defer log stays: the message is still queued.
    assert defer_log.defer_reasons(r.store, qid)

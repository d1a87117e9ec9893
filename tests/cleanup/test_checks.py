"""header_checks / body_checks actions: replies, log lines and effects as Postfix 3.7's.

The expected replies and log lines were taken from the real Postfix 3.7
cleanup (see postfix_oracle.py) for the same tables and messages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.cleanup.request import Outcome, SmtpdActions, Source
from tests.cleanup.util import Rig, headers_of, make_rig

TAIL = "from localhost[127.0.0.1]; from=<a@example.com> to=<b@example.net> proto=ESMTP helo=<client.example>"

HEADER_CHECKS = """\
/^Subject:.*viagra/ REJECT
/^Subject:.*spam2/ REJECT go away
/^Subject:.*defer/ REJECT 4.7.2 later
/^Subject:.*warnme/ WARN watch this
/^Subject:.*holdme/ HOLD held by rule
/^Subject:.*discardme/ DISCARD dropped
/^X-Ignore:/ IGNORE
/^X-Prep:/ PREPEND X-Added: yes
/^X-Repl:/ REPLACE X-Replaced: done
/^Subject:.*redir/ REDIRECT other@example.net
/^Subject:.*filt/ FILTER smtp:[127.0.0.1]:10025
/^Subject:.*infome/ INFO just info
/^Subject:.*bccme/ BCC copy@example.net
/^Subject:.*fold/ WARN folded
/^Subject:.*dunno/ DUNNO
"""

BODY_CHECKS = """\
/badbody/ REJECT body bad
/warnbody/ WARN body warn
/dropline/ IGNORE
"""


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    (tmp_path / "hc").write_text(HEADER_CHECKS)
    (tmp_path / "bc").write_text(BODY_CHECKS)
    return make_rig(tmp_path, header_checks=f"regexp:{tmp_path}/hc", body_checks=f"regexp:{tmp_path}/bc",
                    hopcount_limit="3")


def message(subject: str) -> bytes:
    return f"Subject: {subject}\r\nX-Ignore: x\r\nX-Prep: p\r\nX-Repl: r\r\n\r\nbody\r\n".encode()


def test_reject_default_text(rig: Rig) -> None:
    result = rig.submit(message("buy viagra now"))
    assert result.outcome is Outcome.REJECTED
    assert result.reply is not None and str(result.reply) == "550 5.7.1 message content rejected"
    qid = result.queue_id
    assert rig.log_lines() == [
        f"{qid}: reject: header Subject: buy viagra now {TAIL}: 5.7.1 message content rejected"]
    assert list(rig.store.scan("incoming")) == []


def test_reject_with_text_and_defer(rig: Rig) -> None:
    result = rig.submit(message("spam2"))
    assert result.reply is not None and str(result.reply) == "550 5.7.1 go away"
    result = rig.submit(message("defer"))
    assert result.reply is not None and str(result.reply) == "451 4.7.2 later"
    assert rig.log_lines()[-1].endswith(f"reject: header Subject: defer {TAIL}: 4.7.2 later")


def test_warn_prepend_replace_ignore(rig: Rig) -> None:
    result = rig.submit(message("warnme"))
    assert result.outcome is Outcome.QUEUED and result.queue_id
    qid = result.queue_id
    lines = rig.log_lines()
    assert lines[:3] == [
        f"{qid}: warning: header Subject: warnme {TAIL}: watch this",
        f"{qid}: prepend: header X-Prep: p {TAIL}: X-Added: yes",
        f"{qid}: replace: header X-Repl: r {TAIL}: X-Replaced: done",
    ]
    assert lines[3].startswith(f"{qid}: message-id=<")
    _qf, content = rig.read(qid)
    heads = headers_of(content)
    assert heads[1:5] == ["Subject: warnme", "X-Added: yes", "X-Prep: p", "X-Replaced: done"]
    assert not any(h.startswith("X-Ignore") for h in heads)


def test_hold_moves_to_hold_queue(rig: Rig) -> None:
    result = rig.submit(message("holdme"))
    assert result.outcome is Outcome.QUEUED and result.held and result.queue_id
    assert list(rig.store.scan("hold")) == [result.queue_id]
    assert f"{result.queue_id}: hold: header Subject: holdme {TAIL}: held by rule" in rig.log_lines()


def test_discard(rig: Rig) -> None:
    result = rig.submit(message("discardme"))
    assert result.outcome is Outcome.DISCARDED
    assert rig.log_lines() == [f"{result.queue_id}: discard: header Subject: discardme {TAIL}: dropped"]
    assert list(rig.store.scan("incoming")) == []


def test_redirect_stops_further_checks(rig: Rig) -> None:
    result = rig.submit(message("redir"))
    assert result.queue_id
    qf, content = rig.read(result.queue_id)
    assert [r.address for r in qf.recipients] == ["other@example.net"]
    heads = headers_of(content)
    # Postfix stops header/body checks after REDIRECT: later headers are untouched.
    assert "X-Ignore: x" in heads and "X-Repl: r" in heads
    assert f"{result.queue_id}: redirect: header Subject: redir {TAIL}: other@example.net" in rig.log_lines()


def test_filter_bcc_info(rig: Rig) -> None:
    result = rig.submit(message("filt"))
    assert result.queue_id
    qf, _ = rig.read(result.queue_id)
    assert qf.content_filter == "smtp:[127.0.0.1]:10025"
    result = rig.submit(message("bccme"))
    assert result.queue_id
    qf, _ = rig.read(result.queue_id)
    assert [r.address for r in qf.recipients] == ["b@example.net", "copy@example.net"]
    result = rig.submit(message("infome"))
    assert f"{result.queue_id}: info: header Subject: infome {TAIL}: just info" in rig.log_lines()


def test_folded_header_is_matched_whole_and_logged_with_question_mark(rig: Rig) -> None:
    result = rig.submit(b"Subject: fold\r\n  continued here\r\n\r\nbody\r\n")
    assert f"{result.queue_id}: warning: header Subject: fold?  continued here {TAIL}: folded" in rig.log_lines()
    _qf, content = rig.read(result.queue_id or "")
    assert "Subject: fold\n  continued here" in headers_of(content)


def test_body_checks(rig: Rig) -> None:
    result = rig.submit(b"Subject: b\r\n\r\nline1\r\nbadbody here\r\n")
    assert result.reply is not None and str(result.reply) == "550 5.7.1 body bad"
    lines = rig.log_lines()
    assert lines[0].startswith(f"{result.queue_id}: message-id=<")
    assert lines[1] == f"{result.queue_id}: reject: body badbody here {TAIL}: 5.7.1 body bad"
    result = rig.submit(b"Subject: b\r\n\r\nline1\r\nwarnbody here\r\ndropline\r\nend\r\n")
    assert result.outcome is Outcome.QUEUED and result.queue_id
    assert rig.log_lines()[-1] == f"{result.queue_id}: warning: body warnbody here {TAIL}: body warn"
    _qf, content = rig.read(result.queue_id)
    assert content.endswith(b"\n\nline1\nwarnbody here\nend\n")


def test_seed_002_received_hold_holds_every_message(tmp_path: Path) -> None:
    (tmp_path / "hc").write_text("/^Received:/ HOLD\n")
    rig = make_rig(tmp_path, header_checks=f"regexp:{tmp_path}/hc")
    result = rig.submit(b"Subject: hi\r\n\r\nbody\r\n")
    assert result.held and list(rig.store.scan("hold")) == [result.queue_id]
    first = rig.log_lines()[0]
    assert first.startswith(f"{result.queue_id}: hold: header Received: from client.example "
                            "(localhost [127.0.0.1])??by mail.example.org (Postfix) with ESMTP id ")


def test_hopcount(rig: Rig) -> None:
    # As Postfix 3.7 with hopcount_limit = 3: our own Received: counts, the
    # limit itself is refused, Delivered-To: does not count.
    result = rig.submit(b"Received: a\r\nReceived: b\r\nSubject: b\r\n\r\nx\r\n")
    assert result.reply is not None and str(result.reply) == "554 5.4.0 Error: too many hops"
    assert rig.log_lines() == [f"warning: {result.queue_id}: message rejected: hopcount exceeded"]
    result = rig.submit(b"Received: a\r\nDelivered-To: b\r\nDelivered-To: c\r\nSubject: b\r\n\r\nx\r\n")
    assert result.outcome is Outcome.QUEUED


def test_log_names_the_last_recipient(rig: Rig) -> None:
    result = rig.submit(message("warnme"), recipients=("first@example.net", "second@example.net"))
    assert rig.log_lines()[0] == (f"{result.queue_id}: warning: header Subject: warnme from localhost[127.0.0.1]; "
                                  "from=<a@example.com> to=<second@example.net> proto=ESMTP "
                                  "helo=<client.example>: watch this")


def test_remote_client_gets_no_added_headers(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, local_header_rewrite_clients="")
    result = rig.submit(b"Subject: b\r\n\r\nline1\r\n")
    assert result.queue_id
    assert rig.log_lines() == [f"{result.queue_id}: message-id=<>"]
    _qf, content = rig.read(result.queue_id)
    assert [h.split(":")[0] for h in headers_of(content)] == ["Received", "Subject"]


def test_no_header_body_checks(rig: Rig) -> None:
    result = rig.submit(message("buy viagra now"), receive_override_options=("no_header_body_checks",))
    assert result.outcome is Outcome.QUEUED


def test_smtpd_actions(rig: Rig) -> None:
    result = rig.submit(b"Subject: x\r\n\r\nbody\r\n",
                        actions=SmtpdActions(hold="client", prepend=("X-Policy: checked",)))
    assert result.held and result.queue_id
    _qf, content = rig.read(result.queue_id, "hold")
    heads = headers_of(content)
    assert heads[0] == "X-Policy: checked" and heads[1].startswith("Received: ")
    result = rig.submit(b"Subject: x\r\n\r\nbody\r\n",
                        actions=SmtpdActions(redirect="r@example.com", filter="relay:[10.0.0.1]"))
    assert result.queue_id
    qf, _ = rig.read(result.queue_id)
    assert [r.address for r in qf.recipients] == ["r@example.com"]
    assert qf.content_filter == "relay:[10.0.0.1]"
    result = rig.submit(b"Subject: x\r\n\r\nbody\r\n", actions=SmtpdActions(discard="client"))
    assert result.outcome is Outcome.DISCARDED


def test_local_reject_logs_from_local(rig: Rig) -> None:
    result = rig.submit(b"Subject: viagra\n\nhello\n", sender="joe@example.com", recipients=("x@example.net",),
                        source=Source.PICKUP)
    assert result.outcome is Outcome.REJECTED
    assert rig.log_lines()[0] == (f"{result.queue_id}: reject: header Subject: viagra from local; "
                                  "from=<joe@example.com> to=<x@example.net>: 5.7.1 message content rejected")

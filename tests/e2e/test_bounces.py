"""Non-delivery reports from the running server: an unreachable relay past the queue lifetime.

The relayhost is a loopback port where nothing listens, so every attempt
defers with "Connection refused"; ``maximal_queue_lifetime = 2s`` returns
the message at the first attempt after two seconds. The sender is a local
alias whose target is a Maildir, where its reports are read with Python's
``email`` package.
"""

from __future__ import annotations

import email.message
import pwd
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import MakeServer
from tests.e2e.util import Server, dsn_parts, maildir_messages, parse, private_dir, require_smtp_client, wait_messages
from tests.helpers.ports import reserve_port
from tests.master.util import wait_for

SENDER = "owner@e2e.test"


@pytest.fixture
def inbox(run_user: pwd.struct_passwd) -> Iterator[Path]:
    base = private_dir("mailhorn-e2e-bounces-", run_user)
    try:
        yield base / "Maildir"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def unreachable_server(make_server: MakeServer, inbox: Path) -> Server:
    require_smtp_client()
    closed = reserve_port()
    server = make_server(
        "mydestination = $myhostname, localhost, e2e.test\n"
        "alias_maps = hash:$config_directory/aliases\nalias_database = hash:$config_directory/aliases\n"
        f"relayhost = [127.0.0.1]:{closed}\n"
        "maximal_queue_lifetime = 2s\nbounce_queue_lifetime = 2s\n"
        "minimal_backoff_time = 1s\nmaximal_backoff_time = 1s\nqueue_run_delay = 1s\n")
    server.write_file("aliases", f"postmaster: owner\nowner: {inbox}/\n")
    built = server.tool("postalias", str(server.etc / "aliases"))
    assert built.returncode == 0, built.stderr
    server.start()
    return server


def test_expired_mail_yields_one_rfc3464_report(make_server: MakeServer, inbox: Path) -> None:
    server = unreachable_server(make_server, inbox)
    queue_id = server.send(SENDER, ["one@remote.test", "two@remote.test"],
                           "From: owner@e2e.test\nTo: one@remote.test\nSubject: never arrives\n\nbody\n")
    server.wait_log(rf"{queue_id}: from=<{SENDER}>, status=expired, returned to sender")
    server.wait_log(rf"{queue_id}: sender non-delivery notification: [0-9A-Z]+")
    server.wait_log(rf"{queue_id}: removed")
    [delivered] = wait_messages(inbox, 1)
    server.wait_queue_empty()
    assert len(maildir_messages(inbox)) == 1

    raw = delivered.read_bytes()
    assert b"\nFrom: Mail Delivery System <MAILER-DAEMON@mx.e2e.test>\n" in raw
    report = parse(raw)
    assert report["Subject"] == "Undelivered Mail Returned to Sender"
    assert report["To"] == SENDER
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    per_message, recipients = dsn_parts(report)
    assert per_message["X-Postfix-Queue-ID"] == queue_id
    assert per_message["X-Postfix-Sender"] == f"rfc822; {SENDER}"
    assert sorted(r["Final-Recipient"] for r in recipients) == ["rfc822; one@remote.test", "rfc822; two@remote.test"]
    for rcpt in recipients:
        assert rcpt["Action"] == "failed"
        # The last deferral's status, kept as Postfix keeps it for expired mail.
        assert rcpt["Status"] == "4.4.1"
        diagnostic = " ".join(str(rcpt["Diagnostic-Code"]).split())
        assert re.fullmatch(r"X-Postfix; connect to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: Connection refused", diagnostic)
    parts = list(report.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "message/rfc822"]
    returned = parts[2].get_payload()
    assert isinstance(returned, list)
    first = returned[0]
    assert isinstance(first, email.message.Message) and first["Subject"] == "never arrives"


def test_notify_never_yields_no_report(make_server: MakeServer, inbox: Path) -> None:
    server = unreachable_server(make_server, inbox)
    queue_id = server.send(SENDER, ["silent@remote.test"],
                           "From: owner@e2e.test\nTo: silent@remote.test\nSubject: quiet\n\nbody\n",
                           rcpt_options=["NOTIFY=NEVER"])
    server.wait_log(rf"{queue_id}: from=<{SENDER}>, status=expired, returned to sender")
    server.wait_log(rf"{queue_id}: removed")
    server.wait_queue_empty()
    assert "non-delivery notification" not in server.log()
    assert maildir_messages(inbox) == []
    assert wait_for(lambda: not re.search(r"to=<owner@e2e\.test>", server.log()), 1)

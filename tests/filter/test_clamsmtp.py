"""Seed 002's after-queue chain with real peers: mailhorn -> clamsmtpd -> clamd -> mailhorn.

main.cf says ``content_filter = filter:127.0.0.1:PORT`` and
``receive_override_options = no_address_mappings``; master.cf has the
seed's ``filter unix ... smtp -o smtp_send_xforward_command=yes`` client
and its reinjection ``smtpd`` with ``-o content_filter=`` and friends. A
clean message goes out through the ``filter`` transport, comes back from
clamsmtpd on the reinjection port, is not filtered again, gets its address
mappings there (virtual alias), and is delivered once into a Maildir. A
message with the test signature is refused by the filter as clamsmtpd's
``Action:`` says (drop: accepted and discarded; bounce: refused with a 5xx,
so mailhorn bounces it) and never delivered.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.filter.conftest import MakeClamSmtp, MakeMailhorn
from tests.filter.util import (
    SIGNATURE_TEXT,
    Mailhorn,
    maildir_messages,
    require_clamsmtp,
    send,
    vmail_owner,
)
from tests.helpers.ports import reserve_port
from tests.master.util import wait_for


def seed_002(make_mailhorn: MakeMailhorn, filter_port: int) -> tuple[Mailhorn, int, int, Path]:
    """A mail system configured as seed 002's clamsmtp section, with virtual mailboxes."""
    port, reinject = reserve_port(), reserve_port()
    owner = vmail_owner()
    master_cf = f"""\
127.0.0.1:{port} inet n - n - - smtpd
qmgr      unix  n       -       n       300     1       qmgr
virtual   unix  -       n       n       -       -       virtual
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
smtp      unix  -       -       n       -       -       smtp
# SMTP filter (used by content_filter)
filter   unix  -       -       n       -       16      smtp
        -o smtp_send_xforward_command=yes
# For injecting mail back into postfix from the filter
127.0.0.1:{reinject} inet  n -       n       -       16      smtpd
        -o content_filter=
        -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks
        -o smtpd_helo_restrictions=
        -o smtpd_client_restrictions=
        -o smtpd_sender_restrictions=
        -o smtpd_recipient_restrictions=permit_mynetworks,reject
        -o mynetworks_style=host
        -o smtpd_authorized_xforward_hosts=127.0.0.0/8
"""
    mh = make_mailhorn("", master_cf)
    vmail = mh.base / "vmail"
    vmail.mkdir()
    os.chown(vmail, owner.pw_uid, owner.pw_gid)
    main_cf = f"""\
myhostname = mx.filter.test
mydomain = filter.test
mydestination =
virtual_mailbox_domains = filter.test
virtual_mailbox_base = {vmail}
virtual_mailbox_maps = texthash:{mh.etc}/vmailbox
virtual_alias_maps = texthash:{mh.etc}/virtual
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
content_filter = filter:127.0.0.1:{filter_port}
receive_override_options = no_address_mappings
"""
    with open(mh.etc / "main.cf", "a") as f:
        f.write(main_cf)
    mh.write("vmailbox", "user@filter.test user/\nsender@filter.test sender/\n")
    mh.write("virtual", "alias@filter.test user@filter.test\n")
    return mh, port, reinject, vmail


def message(subject: str, body: str) -> str:
    return (f"From: sender@filter.test\r\nTo: alias@filter.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@filter.test>\r\n\r\n{body}\r\n")


def test_clean_mail_passes_clamsmtpd_and_is_delivered_once(
        make_mailhorn: MakeMailhorn, make_clamsmtp: MakeClamSmtp) -> None:
    require_clamsmtp()
    filter_port = reserve_port()
    mh, port, reinject, vmail = seed_002(make_mailhorn, filter_port)
    clam = make_clamsmtp(filter_port, reinject, "drop")
    clam.start()
    mh.start(port)

    first = send(port, "sender@filter.test", ["alias@filter.test"], message("clean one", "nothing to see"))
    # Out through the filter transport: recipient unmapped (no_address_mappings before the filter).
    out = mh.wait_log(rf"{first}: to=<alias@filter.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{filter_port},"
                      r".* status=sent \(250 ")
    assert len(out) == 1
    # Back in on the reinjection port: XFORWARD names the original client and queue ID.
    # (clamsmtpd passes the XFORWARD command through; peer names are not looked up here.)
    back = mh.wait_log(rf"client=unknown\[127\.0\.0\.1\], orig_queue_id={first}, "
                       r"orig_client=unknown\[127\.0\.0\.1\]$")
    second = back[0].split(": client=")[0].rsplit(" ", 1)[1]
    # Address mapping after the filter, final delivery by virtual, exactly once.
    mh.wait_log(rf"{second}: to=<user@filter.test>, orig_to=<alias@filter.test>, relay=virtual,.* status=sent")
    mh.wait_queue_empty()
    delivered = maildir_messages(vmail / "user")
    assert len(delivered) == 1
    text = delivered[0].read_text()
    assert "X-Virus-Scanned: ClamAV using ClamSMTP" in text
    assert "Subject: clean one" in text
    # Not filtered a second time: one trip through the filter transport only.
    assert len(mh.log_lines(rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{filter_port},")) == 1
    assert len(mh.log_lines(r"relay=virtual,")) == 1


def test_infected_mail_is_dropped_by_the_filter_and_never_delivered(
        make_mailhorn: MakeMailhorn, make_clamsmtp: MakeClamSmtp) -> None:
    require_clamsmtp()
    filter_port = reserve_port()
    mh, port, reinject, vmail = seed_002(make_mailhorn, filter_port)
    clam = make_clamsmtp(filter_port, reinject, "drop")
    clam.start()
    mh.start(port)

    bad = send(port, "sender@filter.test", ["alias@filter.test"],
               message("infected", f"here it comes: {SIGNATURE_TEXT}"))
    good = send(port, "sender@filter.test", ["alias@filter.test"], message("clean after", "fine"))
    # clamsmtpd takes the infected message and discards it (Action: drop).
    mh.wait_log(rf"{bad}: to=<alias@filter.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{filter_port},"
                r".* status=sent \(250 Virus Detected; Discarded Email\)")
    mh.wait_log(rf"orig_queue_id={good}, ")
    assert wait_for(lambda: len(maildir_messages(vmail / "user")) >= 1, 60)
    mh.wait_queue_empty()
    assert wait_for(lambda: "Mailhorn.Test.Signature" in clam.clamd_log(), 30)
    delivered = maildir_messages(vmail / "user")
    assert len(delivered) == 1
    assert "Subject: clean after" in delivered[0].read_text()
    assert not mh.log_lines(rf"orig_queue_id={bad}\b")
    assert not any(SIGNATURE_TEXT in p.read_text() for p in maildir_messages(vmail / "user"))


def test_infected_mail_is_refused_by_the_filter_and_bounced(
        make_mailhorn: MakeMailhorn, make_clamsmtp: MakeClamSmtp) -> None:
    require_clamsmtp()
    filter_port = reserve_port()
    mh, port, reinject, vmail = seed_002(make_mailhorn, filter_port)
    clam = make_clamsmtp(filter_port, reinject, "bounce")
    clam.start()
    mh.start(port)

    bad = send(port, "sender@filter.test", ["alias@filter.test"],
               message("infected bounce", f"payload {SIGNATURE_TEXT}"))
    # Action: bounce: clamsmtpd refuses at the end of data; mailhorn bounces the recipient.
    lines = mh.wait_log(rf"{bad}: to=<alias@filter.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{filter_port},"
                        r".* dsn=5\.\d+\.\d+, status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 5\d\d ")
    assert "(in reply to end of DATA command)" in lines[0]
    mh.wait_log(rf"{bad}: sender non-delivery notification: ")
    mh.wait_queue_empty()
    assert maildir_messages(vmail / "user") == []
    assert not mh.log_lines(rf"orig_queue_id={bad}\b")

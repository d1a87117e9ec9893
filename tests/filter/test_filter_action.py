"""access(5) and header_checks(5) ``FILTER transport:destination`` with a real filter.

No ``content_filter`` in main.cf: the ``FILTER`` action chooses the
filter per message. The transport is seed 003's master.cf entry
(``amavis unix - - n - 2 smtp -o smtp_data_done_timeout=1200
-o smtp_send_xforward_command=yes -o disable_dns_lookups=yes -o max_use=20``),
the destination ``[127.0.0.1]:PORT`` where clamsmtpd listens (standing in
for amavisd-new: the same SMTP-in, SMTP-out contract). The reinjection
service has no client restrictions and ``no_header_body_checks``, so the
filtered message is not sent to the filter a second time.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.filter.conftest import MakeClamSmtp, MakeMailhorn
from tests.filter.util import Mailhorn, maildir_messages, require_clamsmtp, send, vmail_owner
from tests.helpers.ports import reserve_port
from tests.master.util import wait_for


def seed_003(make_mailhorn: MakeMailhorn, main_extra: str) -> tuple[Mailhorn, int, int, Path]:
    """Seed 003's filter transport and reinjection service; ``@ETC@`` in ``main_extra`` is the config dir."""
    port, reinject = reserve_port(), reserve_port()
    owner = vmail_owner()
    master_cf = f"""\
127.0.0.1:{port} inet n - n - - smtpd
qmgr      unix  n       -       n       300     1       qmgr
virtual   unix  -       n       n       -       -       virtual
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
smtp      unix  -       -       n       -       -       smtp
amavis unix - - n - 2 smtp
    -o smtp_data_done_timeout=1200
    -o smtp_send_xforward_command=yes
    -o disable_dns_lookups=yes
    -o max_use=20
127.0.0.1:{reinject} inet n - n - - smtpd
    -o content_filter=
    -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks
    -o smtpd_helo_restrictions=
    -o smtpd_client_restrictions=
    -o smtpd_sender_restrictions=
    -o smtpd_recipient_restrictions=permit_mynetworks,reject
    -o mynetworks=127.0.0.0/8
    -o smtpd_authorized_xforward_hosts=127.0.0.0/8
"""
    mh = make_mailhorn("", master_cf)
    vmail = mh.base / "vmail"
    vmail.mkdir()
    os.chown(vmail, owner.pw_uid, owner.pw_gid)
    with open(mh.etc / "main.cf", "a") as f:
        f.write(f"""\
myhostname = mx.filter.test
mydomain = filter.test
mydestination =
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = filter.test
virtual_mailbox_base = {vmail}
virtual_mailbox_maps = texthash:{mh.etc}/vmailbox
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
{main_extra.replace("@ETC@", str(mh.etc))}""")
    mh.write("vmailbox", "user@filter.test user/\n")
    return mh, port, reinject, vmail


def message(subject: str) -> str:
    return (f"From: sender@filter.test\r\nTo: user@filter.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@filter.test>\r\n\r\nbody\r\n")


def test_check_client_access_filter_routes_through_the_filter(
        make_mailhorn: MakeMailhorn, make_clamsmtp: MakeClamSmtp) -> None:
    require_clamsmtp()
    filter_port = reserve_port()
    mh, port, reinject, vmail = seed_003(
        make_mailhorn, "smtpd_client_restrictions = check_client_access texthash:@ETC@/client_access\n")
    mh.write("client_access", f"127.0.0.1 FILTER amavis:[127.0.0.1]:{filter_port}\n")
    make_clamsmtp(filter_port, reinject, "drop").start()
    mh.start(port)

    first = send(port, "sender@filter.test", ["user@filter.test"], message("from a filtered client"))
    mh.wait_log(rf"{first}: to=<user@filter.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{filter_port},"
                r".* status=sent \(250 ")
    back = mh.wait_log(rf"orig_queue_id={first}, orig_client=")
    second = back[0].split(": client=")[0].rsplit(" ", 1)[1]
    mh.wait_log(rf"{second}: to=<user@filter.test>, relay=virtual,.* status=sent")
    mh.wait_queue_empty()
    delivered = maildir_messages(vmail / "user")
    assert len(delivered) == 1
    assert "X-Virus-Scanned: ClamAV using ClamSMTP" in delivered[0].read_text()
    assert len(mh.log_lines(rf":{filter_port}, ")) == 1


def test_header_checks_filter_routes_only_the_matching_message(
        make_mailhorn: MakeMailhorn, make_clamsmtp: MakeClamSmtp) -> None:
    require_clamsmtp()
    filter_port = reserve_port()
    mh, port, reinject, vmail = seed_003(make_mailhorn, "header_checks = regexp:@ETC@/header_checks\n")
    mh.write("header_checks", f"/^Subject: scan me/ FILTER amavis:[127.0.0.1]:{filter_port}\n")
    make_clamsmtp(filter_port, reinject, "drop").start()
    mh.start(port)

    scanned = send(port, "sender@filter.test", ["user@filter.test"], message("scan me please"))
    plain = send(port, "sender@filter.test", ["user@filter.test"], message("leave me alone"))
    mh.wait_log(rf"{scanned}: to=<user@filter.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{filter_port},"
                r".* status=sent \(250 ")
    mh.wait_log(rf"{plain}: to=<user@filter.test>, relay=virtual,.* status=sent")
    mh.wait_log(rf"orig_queue_id={scanned}, ")
    assert wait_for(lambda: len(maildir_messages(vmail / "user")) >= 2, 60)
    mh.wait_queue_empty()
    texts = [p.read_text() for p in maildir_messages(vmail / "user")]
    assert len(texts) == 2
    by_subject = {("scan me" in t): t for t in texts}
    assert "X-Virus-Scanned: ClamAV" in by_subject[True]
    assert "X-Virus-Scanned: ClamAV" not in by_subject[False]
    assert len(mh.log_lines(rf":{filter_port}, ")) == 1
    assert mh.log_lines(rf"{scanned}: filter: header Subject: scan me please")

"""XFORWARD from the filter transport into mailhorn's own reinjection smtpd.

The content filter here is the reinjection service itself (no program in
between), so what arrives is exactly what the smtp client sent:

* transport ``filter`` has ``-o smtp_send_xforward_command=yes`` and the
  service on port R1 lists 127.0.0.0/8 in ``smtpd_authorized_xforward_hosts``:
  smtpd logs ``orig_queue_id=`` and ``orig_client=`` and the reinjected
  copy's ``Received:`` names the original client's HELO;
* the same transport towards port R2, which authorizes nobody, is not
  offered XFORWARD: nothing is forwarded;
* transport ``plain`` (no ``smtp_send_xforward_command``) towards R1 sends
  no XFORWARD although it is offered.
"""

from __future__ import annotations

import os
import re

from tests.filter.conftest import MakeMailhorn
from tests.filter.util import maildir_messages, send, vmail_owner
from tests.helpers.ports import reserve_port
from tests.master.util import wait_for

REINJECT_OPTIONS = """\
    -o content_filter=
    -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks
    -o smtpd_recipient_restrictions=permit_mynetworks,reject
    -o mynetworks=127.0.0.0/8
"""


def test_xforward_is_sent_when_asked_and_accepted_only_from_authorized_clients(
        make_mailhorn: MakeMailhorn) -> None:
    port, r1, r2 = reserve_port(), reserve_port(), reserve_port()
    owner = vmail_owner()
    master_cf = (f"127.0.0.1:{port} inet n - n - - smtpd\n"
                 "qmgr unix n - n 300 1 qmgr\n"
                 "virtual unix - n n - - virtual\n"
                 "error unix - - n - - error\n"
                 "retry unix - - n - - error\n"
                 "filter unix - - n - 16 smtp\n    -o smtp_send_xforward_command=yes\n"
                 "plain unix - - n - 16 smtp\n"
                 f"127.0.0.1:{r1} inet n - n - 16 smtpd\n{REINJECT_OPTIONS}"
                 "    -o smtpd_authorized_xforward_hosts=127.0.0.0/8\n"
                 f"127.0.0.1:{r2} inet n - n - 16 smtpd\n{REINJECT_OPTIONS}"
                 "    -o smtpd_authorized_xforward_hosts=\n")
    mh = make_mailhorn("", master_cf)
    vmail = mh.base / "vmail"
    vmail.mkdir()
    os.chown(vmail, owner.pw_uid, owner.pw_gid)
    with open(mh.etc / "main.cf", "a") as f:
        f.write(f"""\
myhostname = mx.xf.test
mydomain = xf.test
mydestination =
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = xf.test
virtual_mailbox_base = {vmail}
virtual_mailbox_maps = texthash:{mh.etc}/vmailbox
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
content_filter = filter:127.0.0.1:{r1}
header_checks = regexp:{mh.etc}/header_checks
""")
    mh.write("vmailbox", "user@xf.test user/\n")
    mh.write("header_checks", f"/^Subject: unauthorized/ FILTER filter:127.0.0.1:{r2}\n"
                              f"/^Subject: not asked/ FILTER plain:127.0.0.1:{r1}\n")
    mh.start(port)

    def message(subject: str) -> str:
        return f"From: a@xf.test\r\nTo: user@xf.test\r\nSubject: {subject}\r\n\r\nbody\r\n"

    forwarded = send(port, "a@xf.test", ["user@xf.test"], message("forwarded"), helo="helo.original.test")
    refused = send(port, "a@xf.test", ["user@xf.test"], message("unauthorized"), helo="helo.original.test")
    unasked = send(port, "a@xf.test", ["user@xf.test"], message("not asked"), helo="helo.original.test")
    for queue_id, target in ((forwarded, r1), (refused, r2), (unasked, r1)):
        mh.wait_log(rf"{queue_id}: to=<user@xf\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{target},.* status=sent")
    assert wait_for(lambda: len(maildir_messages(vmail / "user")) >= 3, 60)
    mh.wait_queue_empty()

    lines = mh.log_lines(rf"client=unknown\[127\.0\.0\.1\], orig_queue_id={forwarded}, "
                         r"orig_client=unknown\[127\.0\.0\.1\]$")
    assert len(lines) == 1
    assert len(mh.log_lines(r"orig_queue_id=")) == 1
    received = {}
    for path in maildir_messages(vmail / "user"):
        text = path.read_text()
        subject = re.search(r"^Subject: (.*)$", text, re.M)
        assert subject is not None
        first_received = text.split("Received: ", 2)[1]
        received[subject.group(1)] = first_received
    # The reinjected copy names the original HELO only where XFORWARD was accepted.
    assert received["forwarded"].startswith("from helo.original.test")
    # Elsewhere it names the filter client itself (the smtp client's HELO is myhostname).
    assert received["unauthorized"].startswith("from mx.xf.test")
    assert received["not asked"].startswith("from mx.xf.test")

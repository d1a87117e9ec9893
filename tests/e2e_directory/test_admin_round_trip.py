"""Directory administration against a running server, on SQLite, MariaDB and PostgreSQL.

Each test makes an instance with ``mailhorn quickstart admin@example.test
--db URL`` (SQLite: quickstart's default file), moves its ports to free
loopback ports, starts it with ``mailhorn -c DIR start`` and then changes the
directory with ``mailhorn domain|user|alias|transport`` only, checking each
``list`` on the way. Nothing is reloaded or restarted: the master that
started is the one that stops at the end, and every change is seen by the
next SMTP session, login or delivery.

What each test shows:

``test_mailboxes_and_aliases``
    ``domain add``, ``user add`` (with a password and quota), ``alias add``
    of an address and of a catch-all ``@domain``: mail to the user, the
    alias and any address of the catch-all domain lands in the user's
    Maildir (the files are read); the user logs in over IMAP and POP3 (after
    STARTTLS/STLS) with the password and finds the three messages. Then
    ``alias del``, ``user del`` and ``domain del``: RCPT to the alias, the
    catch-all domain and the user is refused with Postfix's ``550 5.1.1 ...
    User unknown in virtual mailbox table``, the deleted user's login is
    refused, and once the domains are gone a client outside ``mynetworks``
    gets ``554 5.7.1 ... Relay access denied`` for them.
``test_transport``
    ``transport add relay.test smtp:[127.0.0.3]:PORT``: mail to
    ``x@relay.test`` reaches Postfix's smtp-sink there; after ``transport
    del`` the same mail takes ``default_transport`` (here an ``error:``
    transport, so nothing leaves the machine) and is bounced.
"""

from __future__ import annotations

import email
import email.policy

from tests.delivery.smtp_helpers import SmtpSink
from tests.e2e_directory.conftest import Database
from tests.e2e_directory.util import Site

ADMIN = "admin@example.test"
ADMIN_PASSWORD = "Admin-pass-0ne"
BOB = "bob@other.test"
BOB_PASSWORD = "B0b's pass-word"
#: Nothing leaves the machine: mail without a transport entry is bounced by this.
DEFAULT_TRANSPORT = "error:5.7.1 nothing leaves this test"
UNKNOWN = "Recipient address rejected: User unknown in virtual mailbox table"


def start_site(site: Site, database: Database) -> None:
    """quickstart (``--db`` unless SQLite), remapped ports, 127.0.0.2 outside mynetworks; started."""
    db = [] if database.url is None else ["--db", database.url]
    output = site.quickstart(ADMIN, "--password", ADMIN_PASSWORD, "--hostname", "mail.example.test", *db)
    assert f"User:     {ADMIN}\nPassword: {ADMIN_PASSWORD}\n" in output
    engine = database.engine
    assert f"virtual_mailbox_domains = {engine}:{site.etc}/{engine}-virtual_domains.cf\n" in \
        (site.etc / "main.cf").read_text()
    site.remap_ports(mynetworks="127.0.0.1/32", default_transport=DEFAULT_TRANSPORT, auth_failure_delay="0s")
    site.start()


def subject(message: bytes) -> str:
    return str(email.message_from_bytes(message, policy=email.policy.default)["Subject"])


def test_mailboxes_and_aliases(site: Site, database: Database) -> None:
    start_site(site, database)
    assert site.admin("domain", "list") == "example.test\n"
    assert site.admin("user", "list") == f"{ADMIN}\t10485760\n"
    assert site.admin("alias", "list") == (f"abuse@example.test\t{ADMIN}\n"
                                           f"postmaster@example.test\t{ADMIN}\n")
    assert site.rcpt_reply(BOB, source="127.0.0.2") == (554, f"5.7.1 <{BOB}>: Relay access denied")

    assert site.admin("domain", "add", "other.test") == ""
    assert site.admin("domain", "add", "catch.test") == ""
    assert site.admin("user", "add", BOB, "--password", BOB_PASSWORD, "--quota", "20971520") == ""
    assert site.admin("alias", "add", "info@other.test", BOB) == ""
    assert site.admin("alias", "add", "@catch.test", BOB) == ""
    assert site.admin("domain", "list") == "catch.test\nexample.test\nother.test\n"
    assert site.admin("user", "list") == f"{ADMIN}\t10485760\n{BOB}\t20971520\n"
    assert site.admin("user", "list", "other.test") == f"{BOB}\t20971520\n"
    assert site.admin("alias", "list") == (f"@catch.test\t{BOB}\n"
                                           f"abuse@example.test\t{ADMIN}\n"
                                           f"info@other.test\t{BOB}\n"
                                           f"postmaster@example.test\t{ADMIN}\n")
    assert site.admin("alias", "list", "other.test") == f"info@other.test\t{BOB}\n"
    assert site.admin_fails("alias", "add", "@catch.test", ADMIN) == "alias @catch.test already exists"

    # Mail to the user, its alias and the catch-all domain: three files in bob's Maildir.
    site.send(BOB, "to bob")
    site.send("info@other.test", "to info")
    site.send("anything@catch.test", "to the catch-all")
    messages = site.maildir_messages("other.test", "bob", 3)
    wanted = ["to bob", "to info", "to the catch-all"]
    assert sorted(subject(m) for m in messages) == wanted
    for rcpt, orig in ((BOB, None), (BOB, "info@other.test"), (BOB, "anything@catch.test")):
        line = site.wait_log(f"to=<{rcpt}>" + (f", orig_to=<{orig}>" if orig else ", relay=virtual"))
        assert "status=sent (delivered to maildir)" in line, line
    assert sorted(m.decode().split("Delivered-To: ", 1)[1].split("\n", 1)[0] for m in messages) == [BOB] * 3

    # bob reads them over IMAP and POP3 with the password given to `user add`.
    assert site.imap_subjects(BOB, BOB_PASSWORD) == [f"Subject: {s}" for s in wanted]
    assert sorted(subject(m) for m in site.pop3_messages(BOB, BOB_PASSWORD)) == wanted

    # Deleting: each change is refused at RCPT by the next session.
    assert site.admin("alias", "del", "info@other.test") == ""
    assert site.admin("alias", "list", "other.test") == ""
    assert site.rcpt_reply("info@other.test") == (550, f"5.1.1 <info@other.test>: {UNKNOWN}")
    assert site.rcpt_reply(BOB)[0] == 250
    assert site.admin("alias", "del", "@catch.test") == ""
    assert site.rcpt_reply("anything@catch.test") == (550, f"5.1.1 <anything@catch.test>: {UNKNOWN}")
    assert site.admin("alias", "list") == (f"abuse@example.test\t{ADMIN}\n"
                                           f"postmaster@example.test\t{ADMIN}\n")
    assert site.admin("user", "del", BOB) == ""
    assert site.admin("user", "list") == f"{ADMIN}\t10485760\n"
    assert site.rcpt_reply(BOB) == (550, f"5.1.1 <{BOB}>: {UNKNOWN}")
    assert "AUTHENTICATIONFAILED" in site.imap_login_refused(BOB, BOB_PASSWORD)
    assert site.admin("domain", "del", "other.test") == ""
    assert site.admin("domain", "del", "catch.test") == ""
    assert site.admin("domain", "list") == "example.test\n"
    for rcpt in (BOB, "anything@catch.test"):
        assert site.rcpt_reply(rcpt, source="127.0.0.2") == (554, f"5.7.1 <{rcpt}>: Relay access denied")
    # The first user is untouched by all of it.
    assert site.rcpt_reply(ADMIN, source="127.0.0.2")[0] == 250
    assert site.same_master()


def test_transport(site: Site, database: Database, sink: SmtpSink) -> None:
    start_site(site, database)
    assert site.admin("transport", "list") == ""
    assert site.admin("transport", "add", "relay.test", f"smtp:{sink.nexthop}") == ""
    assert site.admin("transport", "list") == f"relay.test\tsmtp:{sink.nexthop}\n"
    assert site.admin("transport", "list", "relay.test") == f"relay.test\tsmtp:{sink.nexthop}\n"
    queue_id = site.send("x@relay.test", "to the sink")
    line = site.wait_log(f"{queue_id}: to=<x@relay.test>")
    dumps = sink.wait_messages(1)
    assert len(dumps) == 1, (line, site.log())
    assert b"Subject: to the sink" in dumps[0]
    assert f"relay=127.0.0.3[127.0.0.3]:{sink.nexthop.rsplit(':', 1)[1]}" in line and "status=sent" in line, line

    assert site.admin("transport", "del", "relay.test") == ""
    assert site.admin("transport", "list") == ""
    queue_id = site.send("y@relay.test", "after the transport is gone")
    line = site.wait_log(f"{queue_id}: to=<y@relay.test>")
    assert "relay=none" in line and "status=bounced (nothing leaves this test)" in line, line
    assert len(sink.messages()) == 1
    assert site.same_master()

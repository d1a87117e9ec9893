"""A directory database made by hand as the Postfix + MySQL guide (seed 003) makes it, read unchanged.

The tables are created with the guide's own ``CREATE TABLE`` statements,
changed only where today's MariaDB refuses them (``TYPE=MyISAM`` is now
``ENGINE=MyISAM``; the guide's ``NOT NULL default ,`` lost its quotes and is
``default ''``), and filled with ``INSERT``\\ s written the guide's way, the
password with MariaDB's ``ENCRYPT('parolamail')`` (a DES crypt(3) hash with
no ``{SCHEME}`` prefix). main.cf holds the guide's main.cf lines, the six
``mysql-virtual_*.cf`` files are the guide's (``tests/golden/sql/seed003``)
pointed at the test database, with the guide's ``chmod o=``/``chgrp
postfix``; the only addition is ``passdb_maps``, the job the guide gave
Courier's authmysqlrc (``MYSQL_CRYPT_PWFIELD password``). The certificate is
made with the guide's ``openssl req`` command.

``test_guide_database_serves_mail`` shows: mail to the guide's user lands
in ``/home/vmail/d3xt3r01.tk/dexter/`` (here under the test's directory) as
uid 5000, with the user's quota in ``maildirsize``; the guide's forwarding
``proba@`` and a forwarding to two addresses written as the guide's table
shows it (``a, b``) arrive too; the user logs in over POP3 and IMAP with
``parolamail``; the administration commands list the guide's rows; and a
dump of the four tables (definitions and rows) is the same after all of it.
"""

from __future__ import annotations

import grp
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.services import DEFAULT_MASTER_CF
from tests.e2e_directory.conftest import mysql_connection, mysql_database
from tests.e2e_directory.util import Site

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "sql" / "seed003"

#: The guide's CREATE TABLEs, as printed, with its two MariaDB-refused spellings.
GUIDE_CREATE_TABLES = """\
 CREATE TABLE domains (
   domain varchar(50) NOT NULL,
   PRIMARY KEY (domain)
 ) TYPE=MyISAM;
 CREATE TABLE forwardings (
   source varchar(80) NOT NULL,
   destination TEXT NOT NULL,
   PRIMARY KEY (source)
 ) TYPE=MyISAM;
 CREATE TABLE users (
   email varchar(80) NOT NULL,
   password varchar(20) NOT NULL,
   quota INT(10) DEFAULT '10485760',
   PRIMARY KEY (email)
 ) TYPE=MyISAM;
 CREATE TABLE transport (
   domain varchar(128) NOT NULL default ,
   transport varchar(128) NOT NULL default ,
   UNIQUE KEY domain (domain)
  ) TYPE=MyISAM;
"""

#: The guide's INSERTs ("TEST FINAL"), and two more in its style.
INSERTS = """\
INSERT INTO `domains` (`domain`) VALUES ('d3xt3r01.tk');
INSERT INTO `users` (`email`, `password`, `quota`) VALUES ('dexter@d3xt3r01.tk', ENCRYPT('parolamail'), 10485760);
INSERT INTO `forwardings` (`source`, `destination`) VALUES ('proba@d3xt3r01.tk', 'dexter@d3xt3r01.tk');
INSERT INTO `users` (`email`, `password`, `quota`) VALUES ('ana@d3xt3r01.tk', ENCRYPT('parolamail'), 20971520);
INSERT INTO `forwardings` (`source`, `destination`) VALUES ('info@d3xt3r01.tk', 'dexter@d3xt3r01.tk, ana@d3xt3r01.tk');
"""

#: The guide's main.cf, less the lines about its own machine: the Fedora package's
#: paths (sendmail_path ... readme_directory), smtp_bind_address (its LAN address),
#: and receive_override_options = no_address_mappings, which belongs to the amavis
#: content filter the guide adds later (without it, forwardings would not expand).
GUIDE_MAIN_CF = """\
smtpd_helo_required = yes
disable_vrfy_command = yes
inet_protocols = ipv4
myhostname = mail.d3xt3r01.tk
mynetworks = 127.0.0.0/8, 10.3.0.0/24
mailbox_size_limit = 1048576000
virtual_mailbox_limit = 1050576000
message_size_limit = 1048576000
virtual_alias_domains =
virtual_alias_maps = proxy:mysql:/etc/postfix/mysql-virtual_forwardings.cf, mysql:/etc/postfix/mysql-virtual_email2email.cf
virtual_mailbox_domains = proxy:mysql:/etc/postfix/mysql-virtual_domains.cf
virtual_mailbox_maps = proxy:mysql:/etc/postfix/mysql-virtual_mailboxes.cf
virtual_mailbox_base = /home/vmail
virtual_uid_maps = static:5000
virtual_gid_maps = static:5000
smtpd_sasl_auth_enable = yes
broken_sasl_auth_clients = yes
smtpd_recipient_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_data_restrictions = reject_unauth_pipelining, permit
smtpd_use_tls = yes
smtpd_tls_cert_file = /etc/postfix/smtpd.cert
smtpd_tls_key_file = /etc/postfix/smtpd.key
transport_maps = proxy:mysql:/etc/postfix/mysql-virtual_transports.cf
virtual_create_maildirsize = yes
virtual_mailbox_extended = yes
virtual_mailbox_limit_maps = proxy:mysql:/etc/postfix/mysql-virtual_mailbox_limit_maps.cf
virtual_mailbox_limit_override = yes
virtual_maildir_limit_message = "The user you are trying to reach is over quota."
virtual_overquota_bounce = yes
proxy_read_maps = $local_recipient_maps $mydestination $virtual_alias_maps $virtual_alias_domains $virtual_mailbox_maps $virtual_mailbox_domains $relay_recipient_maps $relay_domains $canonical_maps $sender_canonical_maps $recipient_canonical_maps $relocated_maps $transport_maps $mynetworks $virtual_mailbox_limit_maps
"""

MAPS = ("domains", "forwardings", "mailboxes", "email2email", "transports", "mailbox_limit_maps")
TABLES = ("domains", "forwardings", "users", "transport")


def mariadb_create_tables() -> list[str]:
    """The guide's statements with only the changes MariaDB requires."""
    text = GUIDE_CREATE_TABLES.replace("TYPE=MyISAM", "ENGINE=MyISAM").replace("default ,", "default '',")
    return [s.strip() for s in text.split(";") if s.strip()]


def run_sql(server: dict[str, object], database: str, statements: list[str]) -> None:
    conn = mysql_connection(server, database)
    try:
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()  # type: ignore[attr-defined]


def dump(server: dict[str, object], database: str) -> dict[str, object]:
    """Every table's name, definition and rows (sorted)."""
    conn = mysql_connection(server, database)
    out: dict[str, object] = {}
    try:
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute("SHOW TABLES")
            out["tables"] = sorted(row[0] for row in cur.fetchall())
            for table in TABLES:
                cur.execute(f"SHOW CREATE TABLE {table}")
                out[f"{table} definition"] = cur.fetchone()[1]
                cur.execute(f"SELECT * FROM {table}")
                out[f"{table} rows"] = sorted(cur.fetchall())
    finally:
        conn.close()  # type: ignore[attr-defined]
    return out


@pytest.fixture
def guide_db(mysql_server: dict[str, object]) -> Iterator[str]:
    yield from mysql_database(mysql_server)


def write_guide_files(site: Site, server: dict[str, object], database: str) -> None:
    """main.cf, master.cf, the six map files, passdb and the certificate, as the guide lays them out."""
    site.etc.mkdir()
    etc = f"{site.etc}/"
    postfix_gid = grp.getgrnam("postfix").gr_gid
    for name in MAPS:
        text = (GOLDEN / f"mysql-virtual_{name}.cf").read_text()
        text = text.replace("user = mail_admin", f"user = {server['user']}")
        text = text.replace("password = P4r0la", f"password = {server['password']}")
        text = text.replace("dbname = vmail", f"dbname = {database}")
        assert text.count(f"dbname = {database}\n") == 1 and "hosts = 127.0.0.1\n" in text
        (site.etc / f"mysql-virtual_{name}.cf").write_text(text)
    (site.etc / "mysql-virtual_passwords.cf").write_text(
        f"user = {server['user']}\npassword = {server['password']}\ndbname = {database}\n"
        "query = SELECT password FROM users WHERE email='%s'\nhosts = 127.0.0.1\n")
    for path in site.etc.glob("mysql-virtual_*.cf"):      # chmod o= ; chgrp postfix
        os.chown(path, -1, postfix_gid)
        os.chmod(path, 0o640)
    subprocess.run(["openssl", "req", "-new", "-outform", "PEM", "-out", f"{etc}smtpd.cert", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", f"{etc}smtpd.key", "-keyform", "PEM", "-days", "365", "-x509", "-subj",
                    "/C=RO/ST=Dolj/L=Craiova/O=D3xt3r01/OU=IT/CN=mail.d3xt3r01.tk/emailAddress=dexter@d3xt3r01.tk"],
                   check=True, capture_output=True)
    # chmod o= smtpd.key; and group postfix: under a root master the POP3 and IMAP
    # services load the key as mail_owner (Postfix's daemons read it as root).
    os.chmod(site.etc / "smtpd.key", 0o640)
    os.chown(site.etc / "smtpd.key", -1, postfix_gid)
    guide = GUIDE_MAIN_CF.replace("/etc/postfix/", etc).replace("/home/vmail", str(site.vmail))
    # The guide edits a distribution's main.cf, which sets alias_maps to its local aliases
    # file; this server has no local mailboxes, so none.
    (site.etc / "main.cf").write_text(
        f"queue_directory = {site.queue}\nalias_maps =\nalias_database =\n" + guide +
        f"passdb_maps = proxy:mysql:{etc}mysql-virtual_passwords.cf\n")
    (site.etc / "master.cf").write_text(DEFAULT_MASTER_CF + "pop3      inet  n       -       n       -       -       pop3d\n"
                                        "imap      inet  n       -       n       -       -       imapd\n")
    site.vmail.mkdir(mode=0o700)
    os.chown(site.vmail, 5000, 5000)


@pytest.mark.mysql
def test_guide_database_serves_mail(site: Site, mysql_server: dict[str, object], guide_db: str) -> None:
    run_sql(mysql_server, guide_db, mariadb_create_tables())
    run_sql(mysql_server, guide_db, [s for s in INSERTS.splitlines() if s])
    before = dump(mysql_server, guide_db)
    rows = before["users rows"]
    assert isinstance(rows, list) and len(rows) == 2
    for _email, password, _quota in rows:    # ENCRYPT(): DES crypt(3), no {SCHEME}
        assert re.fullmatch(r"[./0-9A-Za-z]{13}", password), password
    write_guide_files(site, mysql_server, guide_db)
    site.remap_ports(("smtp", "pop3", "imap"))
    site.start()

    # One at a time: a delivery that sees another one land while it counts
    # the Maildir drops maildirsize for the next reader to rebuild
    # (README.maildirquota), so after concurrent deliveries the file may
    # rightly be missing, and the assertions below read it.
    for number, (address, subject) in enumerate((("dexter@d3xt3r01.tk", "to dexter"),
                                                 ("proba@d3xt3r01.tk", "to proba"),
                                                 ("info@d3xt3r01.tk", "to info")), 1):
        site.send(address, subject)
        site.maildir_messages("d3xt3r01.tk", "dexter", number)
    dexter = site.maildir_messages("d3xt3r01.tk", "dexter", 3)
    assert sorted(m.split(b"Subject: ", 1)[1].split(b"\n", 1)[0] for m in dexter) == \
        [b"to dexter", b"to info", b"to proba"]
    ana = site.maildir_messages("d3xt3r01.tk", "ana", 1)
    assert b"Subject: to info\n" in ana[0]
    for line in ("to=<dexter@d3xt3r01.tk>, orig_to=<proba@d3xt3r01.tk>, relay=virtual",
                 "to=<dexter@d3xt3r01.tk>, orig_to=<info@d3xt3r01.tk>, relay=virtual",
                 "to=<ana@d3xt3r01.tk>, orig_to=<info@d3xt3r01.tk>, relay=virtual"):
        assert "status=sent (delivered to maildir)" in site.wait_log(line)
    mailbox = site.vmail / "d3xt3r01.tk" / "dexter"
    assert (os.stat(mailbox).st_uid, os.stat(mailbox).st_gid) == (5000, 5000)
    assert (mailbox / "maildirsize").read_text().splitlines()[0] == "10485760S"
    assert (site.vmail / "d3xt3r01.tk" / "ana" / "maildirsize").read_text().splitlines()[0] == "20971520S"

    assert site.imap_subjects("dexter@d3xt3r01.tk", "parolamail") == \
        ["Subject: to dexter", "Subject: to info", "Subject: to proba"]
    assert len(site.pop3_messages("ana@d3xt3r01.tk", "parolamail")) == 1
    assert len(site.pop3_messages("dexter@d3xt3r01.tk", "parolamail")) == 3

    # The administration commands read the hand-made tables through the guide's .cf files.
    assert site.admin("domain", "list") == "d3xt3r01.tk\n"
    assert site.admin("user", "list") == "ana@d3xt3r01.tk\t20971520\ndexter@d3xt3r01.tk\t10485760\n"
    assert site.admin("alias", "list") == ("info@d3xt3r01.tk\tdexter@d3xt3r01.tk, ana@d3xt3r01.tk\n"
                                           "proba@d3xt3r01.tk\tdexter@d3xt3r01.tk\n")
    assert site.admin("transport", "list") == ""
    assert site.same_master()
    site.stop()
    assert dump(mysql_server, guide_db) == before

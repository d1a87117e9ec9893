"""IMAP logins of the guides' users: seed 003's MariaDB ENCRYPT() user and seed 004's system user."""

from __future__ import annotations

import imaplib
from pathlib import Path

import pytest

from mailhorn.mailstore import deliver
from tests.auth.test_passdb_seeds import cf, seed003_db, system_user  # noqa: F401 - fixtures
from tests.imap.server_util import ImapServer


@pytest.mark.mysql
def test_seed003_user_logs_in_and_reads(tmp_path: Path, seed003_db: str) -> None:  # noqa: F811
    base = tmp_path / "vmail"
    base.mkdir()
    params = {
        "passdb_maps": cf(tmp_path / "mysql-virtual_passwords.cf", seed003_db,
                          "SELECT password FROM users WHERE email='%s'"),
        "userdb_maps": "",
        "virtual_mailbox_domains": cf(tmp_path / "mysql-virtual_domains.cf", seed003_db,
                                      "SELECT domain AS virtual FROM domains WHERE domain='%s'"),
        "virtual_mailbox_maps": cf(tmp_path / "mysql-virtual_mailboxes.cf", seed003_db,
                                   "SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',"
                                   "SUBSTRING_INDEX(email,'@',1),'/') FROM users WHERE email='%s'"),
        "virtual_mailbox_limit_maps": cf(tmp_path / "mysql-virtual_mailbox_limit_maps.cf", seed003_db,
                                         "SELECT quota FROM users WHERE email='%s'"),
        "virtual_mailbox_base": str(base),
        "virtual_uid_maps": "static:5000",
        "virtual_gid_maps": "static:5000",
    }
    srv = ImapServer(tmp_path, params)
    try:
        c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=15)
        with pytest.raises(imaplib.IMAP4.error):
            c.login("dexter@d3xt3r01.tk", "Parolamail")
        assert c.login("dexter@d3xt3r01.tk", "parolamail")[0] == "OK"
        maildir = base / "d3xt3r01.tk" / "dexter"
        assert (maildir / "cur").is_dir()
        deliver(maildir, [b"Subject: ola\r\n\r\nbody\r\n"])
        assert c.select("INBOX") == ("OK", [b"1"])
        # The users table's quota (10485760 bytes) is the QUOTA limit.
        typ, data = c.getquotaroot("INBOX")
        assert typ == "OK"
        c.logout()
        srv.wait_log(r"Login: user=<dexter@d3xt3r01\.tk>, method=PLAIN")
    finally:
        srv.stop()


def test_system_user_logs_in_through_shadow(tmp_path: Path,
                                            system_user: tuple[str, Path]) -> None:  # noqa: F811
    name, home = system_user
    srv = ImapServer(tmp_path, {"passdb_maps": "unix:shadow.byname", "userdb_maps": "",
                                "home_mailbox": "Maildir/", "myorigin": "example.com",
                                "mydestination": "example.com"})
    try:
        c = imaplib.IMAP4("127.0.0.1", srv.port, timeout=15)
        with pytest.raises(imaplib.IMAP4.error):
            c.login(name, "wrong")
        assert c.login(name, "suporte")[0] == "OK"
        assert c.select("INBOX")[0] == "OK"
        assert (home / "Maildir" / "cur").is_dir()
        assert (home / "Maildir").stat().st_uid == (home.stat().st_uid)
        c.logout()
    finally:
        srv.stop()

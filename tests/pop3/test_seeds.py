"""The seeds' users log in over POP3: seed 003's MariaDB row made with ENCRYPT('parolamail'),
and seed 004's system account made with useradd and chpasswd (``user suporte / pass suporte / retr 1``)."""

from __future__ import annotations

import poplib
from pathlib import Path

import pytest

from mailhorn.mailstore import deliver
from tests.auth.test_passdb_seeds import cf, seed003_db, system_user  # noqa: F401  (fixtures)
from tests.pop3.harness import Pop3Server, mail_ids

__all__ = ["seed003_db", "system_user"]


@pytest.mark.mysql
def test_seed003_encrypt_user_reads_mail(seed003_db: str, tmp_path: Path) -> None:  # noqa: F811
    base = tmp_path / "vmail"
    uid, gid = mail_ids()
    main_cf = {
        "passdb_maps": cf(tmp_path / "mysql-virtual_passwords.cf", seed003_db,
                          "SELECT password FROM users WHERE email='%s'"),
        "virtual_mailbox_domains": cf(tmp_path / "mysql-virtual_domains.cf", seed003_db,
                                      "SELECT domain AS virtual FROM domains WHERE domain='%s'"),
        "virtual_mailbox_maps": cf(tmp_path / "mysql-virtual_mailboxes.cf", seed003_db,
                                   "SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',"
                                   "SUBSTRING_INDEX(email,'@',1),'/') FROM users WHERE email='%s'"),
        "virtual_mailbox_base": str(base),
        "virtual_uid_maps": f"static:{uid}",
        "virtual_gid_maps": f"static:{gid}",
        "virtual_minimum_uid": "1",
    }
    srv = Pop3Server(tmp_path, main_cf=main_cf, raw_main_cf=True)
    try:
        deliver(base / "d3xt3r01.tk" / "dexter", [b"From: a@example.test\nSubject: seed 003\n\nciao\n"])
        pop = poplib.POP3("127.0.0.1", srv.port, timeout=15)
        pop.user("dexter@d3xt3r01.tk")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] Authentication failed\."):
            pop.pass_("Parolamail")
        pop.user("dexter@d3xt3r01.tk")
        assert pop.pass_("parolamail") == b"+OK Logged in."
        assert pop.retr(1)[1][-1] == b"ciao"
        pop.quit()
        srv.wait_log(r"^pop3-login: Login: user=<dexter@d3xt3r01\.tk>, method=PLAIN, ")
    finally:
        srv.stop()


def test_seed004_system_user_reads_mail(system_user: tuple[str, Path], tmp_path: Path) -> None:  # noqa: F811
    name, home = system_user
    srv = Pop3Server(tmp_path, main_cf={"passdb_maps": "unix:shadow.byname", "home_mailbox": "Maildir/",
                                        "myorigin": "example.com"}, raw_main_cf=True)
    try:
        deliver(home / "Maildir", [b"From: a@example.test\nSubject: seed 004\n\nola\n"])
        # The guide's test: user suporte / pass suporte / retr 1.
        pop = poplib.POP3("127.0.0.1", srv.port, timeout=15)
        assert pop.user(name) == b"+OK"
        assert pop.pass_("suporte") == b"+OK Logged in."
        assert pop.retr(1)[1][-1] == b"ola"
        pop.quit()
        srv.wait_log(rf"^pop3-login: Login: user=<{name}>, method=PLAIN, ")
    finally:
        srv.stop()

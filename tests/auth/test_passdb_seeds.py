"""The seeds' user databases for real: seed 003's MariaDB ``users`` table with ENCRYPT()
passwords, and seed 001/004's system accounts made with useradd and chpasswd.

Each MariaDB test makes its own database and drops it; the system-account test
needs root, creates one uniquely named account and removes it afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.auth.passdb import AUTH_FAILED, Authenticator
from mailhorn.auth.sasl import Credentials, Plain, check
from mailhorn.auth.userdb import UserDB, UserInfo
from mailhorn.config.load import Config, load
from tests.conftest import port_open, require

ADDR = "127.0.0.2"


def mysql(sql: str, database: str | None = None) -> str:
    args = ["mysql", "-h127.0.0.1", "-P3306", "-uroot", "--batch", "--skip-column-names"]
    if database:
        args.append(database)
    done = subprocess.run(args, input=sql, text=True, check=True, capture_output=True, timeout=60)
    return done.stdout


@pytest.fixture
def seed003_db() -> Iterator[str]:
    """The guide's vmail tables (MariaDB spelling) with dexter's ENCRYPT('parolamail') row."""
    require(port_open(3306), "MariaDB is not listening on 127.0.0.1:3306")
    require(shutil.which("mysql") is not None, "the mysql client is not installed")
    name = f"mailhorn_auth_{os.getpid()}_{secrets.token_hex(4)}"
    mysql(f"CREATE DATABASE `{name}`;")
    try:
        mysql("CREATE TABLE domains (domain varchar(50) NOT NULL, PRIMARY KEY (domain)) ENGINE=MyISAM;\n"
              "CREATE TABLE users (email varchar(80) NOT NULL, password varchar(20) NOT NULL,"
              " quota INT(10) DEFAULT '10485760', PRIMARY KEY (email)) ENGINE=MyISAM;\n"
              "INSERT INTO domains (domain) VALUES ('d3xt3r01.tk');\n"
              "INSERT INTO `users` (`email`, `password`, `quota`) VALUES"
              " ('dexter@d3xt3r01.tk', ENCRYPT('parolamail'), 10485760);\n", name)
        stored = mysql("SELECT password FROM users WHERE email='dexter@d3xt3r01.tk';", name).strip()
        require(stored not in ("", "NULL"), "this MariaDB has no ENCRYPT()")
        yield name
    finally:
        mysql(f"DROP DATABASE IF EXISTS `{name}`;")


def cf(path: Path, database: str, query: str) -> str:
    path.write_text(f"user = root\npassword =\ndbname = {database}\nhosts = 127.0.0.1\nquery = {query}\n")
    past = os.path.getmtime(path) - 60  # Postfix lets a just-written *.cf settle; no need to wait here
    os.utime(path, (past, past))
    return f"proxy:mysql:{path}"


def seed003_config(confdir: Path, tmp_path: Path, database: str) -> Config:
    params = {
        "passdb_maps": cf(tmp_path / "mysql-virtual_passwords.cf", database,
                          "SELECT password FROM users WHERE email='%s'"),
        "virtual_mailbox_domains": cf(tmp_path / "mysql-virtual_domains.cf", database,
                                      "SELECT domain AS virtual FROM domains WHERE domain='%s'"),
        "virtual_mailbox_maps": cf(tmp_path / "mysql-virtual_mailboxes.cf", database,
                                   "SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',SUBSTRING_INDEX(email,'@',1),'/')"
                                   " FROM users WHERE email='%s'"),
        "virtual_mailbox_limit_maps": cf(tmp_path / "mysql-virtual_mailbox_limit_maps.cf", database,
                                         "SELECT quota FROM users WHERE email='%s'"),
        "virtual_mailbox_base": "/home/vmail",
        "virtual_uid_maps": "static:5000",
        "virtual_gid_maps": "static:5000",
        "virtual_mailbox_limit": "1050576000",
        "auth_failure_delay": "0",
    }
    (confdir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in params.items()))
    return load(str(confdir))


@pytest.mark.mysql
def test_seed003_encrypt_user_logs_in(seed003_db: str, confdir: Path, tmp_path: Path) -> None:
    config = seed003_config(confdir, tmp_path, seed003_db)
    auth = Authenticator(config)
    # As the guide's client sends it: AUTH PLAIN with an initial response.
    credentials = Plain().start("AGRleHRlckBkM3h0M3IwMS50awBwYXJvbGFtYWls")  # \0dexter@d3xt3r01.tk\0parolamail
    assert isinstance(credentials, Credentials)
    result = asyncio.run(check(auth, credentials, ADDR, "smtp"))
    assert result.ok and result.user == "dexter@d3xt3r01.tk"
    assert asyncio.run(auth.authenticate("dexter@d3xt3r01.tk", "Parolamail", ADDR, "pop3")) is AUTH_FAILED
    assert asyncio.run(auth.authenticate("nobody@d3xt3r01.tk", "parolamail", ADDR, "pop3")) is AUTH_FAILED
    info = UserDB(config).lookup("dexter@d3xt3r01.tk")
    assert info == UserInfo("dexter@d3xt3r01.tk", "dexter@d3xt3r01.tk", 5000, 5000,
                            "/home/vmail/d3xt3r01.tk/dexter", "/home/vmail/d3xt3r01.tk/dexter", 10485760)


@pytest.mark.mysql
def test_seed003_database_down_is_a_temporary_failure(confdir: Path, tmp_path: Path) -> None:
    path = tmp_path / "down.cf"
    path.write_text("user = root\npassword =\ndbname = vmail\nhosts = 127.0.0.1:1\n"
                    "query = SELECT password FROM users WHERE email='%s'\n")
    (confdir / "main.cf").write_text(f"passdb_maps = mysql:{path}\nauth_failure_delay = 0\n")
    auth = Authenticator(load(str(confdir)))
    result = asyncio.run(auth.authenticate("dexter@d3xt3r01.tk", "parolamail", ADDR, "imap"))
    assert result.text == "Temporary authentication failure." and not result.ok


@pytest.fixture
def system_user(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A throw-away account made as seed 004 makes its users (useradd, chpasswd)."""
    require(os.geteuid() == 0, "creating a system account needs root")
    require(shutil.which("useradd") is not None and shutil.which("chpasswd") is not None,
            "useradd/chpasswd are not installed")
    name = f"mh{secrets.token_hex(4)}"
    home = tmp_path / "home" / name
    home.parent.mkdir()
    subprocess.run(["useradd", "-m", "-d", str(home), "-s", "/usr/sbin/nologin", name], check=True,
                   capture_output=True, timeout=60)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:suporte\n", text=True, check=True, capture_output=True, timeout=60)
        yield name, home
    finally:
        subprocess.run(["userdel", "-r", name], capture_output=True, timeout=60)


def test_system_user_logs_in_through_shadow(system_user: tuple[str, Path], confdir: Path) -> None:
    name, home = system_user
    (confdir / "main.cf").write_text("passdb_maps = unix:shadow.byname\nhome_mailbox = Maildir/\n"
                                     "auth_failure_delay = 0\nmyorigin = example.com\n")
    config = load(str(confdir))
    auth = Authenticator(config)
    ok = asyncio.run(auth.authenticate(name, "suporte", ADDR, "pop3"))
    assert ok.ok and ok.user == name
    assert asyncio.run(auth.authenticate(name, "Suporte", ADDR, "pop3")) is AUTH_FAILED
    info = UserDB(config).lookup(name)
    assert info is not None
    assert (info.home, info.maildir, info.address) == (str(home), f"{home}/Maildir", f"{name}@example.com")
    assert info.uid == os.stat(home).st_uid and info.gid == os.stat(home).st_gid
    # passwd -l locks the account: the same password no longer logs in.
    subprocess.run(["passwd", "-l", name], check=True, capture_output=True, timeout=60)
    assert asyncio.run(auth.authenticate(name, "suporte", ADDR, "pop3")) is AUTH_FAILED

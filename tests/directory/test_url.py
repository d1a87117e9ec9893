"""Which database: URLs, ``directory_database``, and the ``*.cf`` file behind
``virtual_mailbox_domains`` when that parameter is unset."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.config.load import load
from mailhorn.directory.url import DatabaseURL, URLError, from_config, parse_url


@pytest.mark.parametrize("text, expected", [
    ("sqlite:///var/lib/mailhorn/dir.db", DatabaseURL("sqlite", path="/var/lib/mailhorn/dir.db")),
    ("sqlite:/var/lib/dir.db", DatabaseURL("sqlite", path="/var/lib/dir.db")),
    ("sqlite://localhost/var/dir.db", DatabaseURL("sqlite", path="/var/dir.db")),
    ("sqlite:dir.db", DatabaseURL("sqlite", path="/etc/mh/dir.db")),
    ("mysql://mail_admin:P4r0la@127.0.0.1/vmail",
     DatabaseURL("mysql", database="vmail", host="127.0.0.1", port=3306, user="mail_admin", password="P4r0la")),
    ("mariadb://u:p%40ss%2Fw@db.example:3307/mail",
     DatabaseURL("mysql", database="mail", host="db.example", port=3307, user="u", password="p@ss/w")),
    ("mysql://root@/vmail?unix_socket=/run/mysqld/mysqld.sock",
     DatabaseURL("mysql", database="vmail", user="root", socket="/run/mysqld/mysqld.sock")),
    ("mysql://[::1]:3306/vmail", DatabaseURL("mysql", database="vmail", host="::1", port=3306)),
    ("postgresql://postgres@127.0.0.1/vmail",
     DatabaseURL("pgsql", database="vmail", host="127.0.0.1", port=5432, user="postgres")),
    ("postgres://u:p@pg:6432/mail", DatabaseURL("pgsql", database="mail", host="pg", port=6432, user="u",
                                                password="p")),
    ("pgsql://u@/mail?host=/run/postgresql", DatabaseURL("pgsql", database="mail", user="u",
                                                         socket="/run/postgresql")),
    ("mysql://localhost/vmail", DatabaseURL("mysql", database="vmail", host="localhost", port=3306)),
])
def test_parse(text: str, expected: DatabaseURL) -> None:
    assert parse_url(text, "/etc/mh") == expected


@pytest.mark.parametrize("text, message", [
    ("oracle://x/y", "unsupported database URL 'oracle://x/y'"),
    ("/var/dir.db", "unsupported database URL"),
    ("mysql://host", "names no database"),
    ("mysql://host/", "names no database"),
    ("mysql:vmail", "expected mysql://"),
    ("mysql://host:99999/db", "bad port '99999'"),
    ("mysql://host:x/db", "bad port 'x'"),
    ("mysql://host/db?sslmode=require", "unknown option 'sslmode'"),
    ("sqlite://otherhost/x.db", "an SQLite file cannot be on host 'otherhost'"),
    ("sqlite:", "names no SQLite file"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(URLError) as info:
        parse_url(text)
    assert message in str(info.value)


def test_display_hides_password() -> None:
    url = parse_url("mysql://mail_admin:P4r0la@127.0.0.1/vmail")
    assert url.display() == "mysql://mail_admin:***@127.0.0.1:3306/vmail"
    assert "P4r0la" not in url.display()
    assert parse_url("pgsql://u@/m?host=/run/pg").display() == "postgresql://u@/m?host=/run/pg"
    assert parse_url("sqlite:///x/y.db").display() == "sqlite:///x/y.db"


def test_directory_database_wins(confdir: Path, tmp_path: Path) -> None:
    cf = tmp_path / "mysql-virtual_domains.cf"
    cf.write_text("user = a\npassword = b\ndbname = c\nhosts = 127.0.0.1\nquery = SELECT 1\n")
    (confdir / "main.cf").write_text(
        f"db_dir = {tmp_path}\ndirectory_database = sqlite://$db_dir/dir.db\n"
        f"virtual_mailbox_domains = proxy:mysql:{cf}\n")
    config = load(str(confdir))
    assert from_config(config) == DatabaseURL("sqlite", path=f"{tmp_path}/dir.db")
    assert from_config(config, "postgresql://x@h/d").engine == "pgsql"


def test_derived_from_mysql_cf(confdir: Path) -> None:
    cf = confdir / "mysql-virtual_domains.cf"
    cf.write_text("user = mail_admin\npassword = P4r0la\ndbname = vmail\n"
                  "query = SELECT domain AS virtual FROM domains WHERE domain='%s'\nhosts = 127.0.0.1\n")
    (confdir / "main.cf").write_text(f"virtual_mailbox_domains = example.net, proxy:mysql:{cf}\n")
    assert from_config(load(str(confdir))) == DatabaseURL(
        "mysql", database="vmail", host="127.0.0.1", port=3306, user="mail_admin", password="P4r0la")
    cf.write_text("user = u\npassword = p\ndbname = vmail\nhosts = db1.example:3307 db2.example\n")
    assert from_config(load(str(confdir))).host == "db1.example"
    assert from_config(load(str(confdir))).port == 3307
    cf.write_text("user = u\npassword = p\ndbname = vmail\nhosts = unix:/run/mysqld/mysqld.sock\n")
    assert from_config(load(str(confdir))).socket == "/run/mysqld/mysqld.sock"
    cf.write_text("user = u\npassword = p\ndbname = vmail\n")  # hosts defaults to localhost: the socket
    assert from_config(load(str(confdir))).socket.endswith(".sock")


def test_derived_from_pgsql_and_sqlite_cf(confdir: Path) -> None:
    cf = confdir / "pgsql-domains.cf"
    cf.write_text("user = pf\npassword = pw\ndbname = mail\nhosts = postgresql://pg.example:6432\n")
    (confdir / "main.cf").write_text(f"virtual_mailbox_domains = pgsql:{cf}\n")
    assert from_config(load(str(confdir))) == DatabaseURL(
        "pgsql", database="mail", host="pg.example", port=6432, user="pf", password="pw")
    cf.write_text("user = pf\npassword = pw\ndbname = mail\nhosts = unix:/run/postgresql\n")
    assert from_config(load(str(confdir))).socket == "/run/postgresql"
    sq = confdir / "sqlite-domains.cf"
    sq.write_text("dbpath = /var/lib/mail/vmail.sqlite\nquery = SELECT 1\n")
    (confdir / "main.cf").write_text(f"virtual_mailbox_domains = proxy:sqlite:{sq}\n")
    assert from_config(load(str(confdir))) == DatabaseURL("sqlite", path="/var/lib/mail/vmail.sqlite")


def test_default_and_unusable(confdir: Path) -> None:
    (confdir / "main.cf").write_text("")
    assert from_config(load(str(confdir))) == DatabaseURL("sqlite", path=f"{confdir}/directory.sqlite")
    (confdir / "main.cf").write_text("directory_database =\n")
    assert from_config(load(str(confdir))).path == f"{confdir}/directory.sqlite"
    (confdir / "main.cf").write_text("virtual_mailbox_domains = hash:/etc/postfix/vdomains\n")
    with pytest.raises(URLError, match="is not an SQL table: set directory_database"):
        from_config(load(str(confdir)))
    (confdir / "main.cf").write_text(f"virtual_mailbox_domains = mysql:{confdir}/missing.cf\n")
    with pytest.raises(URLError, match="missing.cf"):
        from_config(load(str(confdir)))

"""The directory's tables: created once, per engine, and the guide's own narrower ones.

A database made by hand from the guide (seed 003) keeps working: values fit
for the guide's columns go in, and a value a column is too narrow for (a
modern password hash in ``password varchar(20)``, a quota past 2 GiB in
``INT(10)``) is refused, nothing written, with the ``ALTER TABLE`` to run.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from mailhorn.auth import passwords
from mailhorn.directory import schema
from mailhorn.directory.store import Directory, connect
from mailhorn.directory.url import Engine, parse_url
from tests.directory.conftest import Backend, admin_sql
from tests.directory.util import Admin

#: The guide's CREATE TABLEs, as MariaDB takes them (``ENGINE=`` for the old
#: ``TYPE=``; the transport columns' empty ``default ,`` read as ``default ''``).
GUIDE_MYSQL = [
    "CREATE TABLE domains (domain varchar(50) NOT NULL, PRIMARY KEY (domain)) ENGINE=MyISAM",
    "CREATE TABLE forwardings (source varchar(80) NOT NULL, destination TEXT NOT NULL, PRIMARY KEY (source))"
    " ENGINE=MyISAM",
    "CREATE TABLE users (email varchar(80) NOT NULL, password varchar(20) NOT NULL, quota INT(10) DEFAULT "
    "'10485760', PRIMARY KEY (email)) ENGINE=MyISAM",
    "CREATE TABLE transport (domain varchar(128) NOT NULL default '', transport varchar(128) NOT NULL default '',"
    " UNIQUE KEY domain (domain)) ENGINE=MyISAM",
]
#: The same in PostgreSQL's words.
GUIDE_PGSQL = [
    "CREATE TABLE domains (domain varchar(50) NOT NULL PRIMARY KEY)",
    "CREATE TABLE forwardings (source varchar(80) NOT NULL PRIMARY KEY, destination text NOT NULL)",
    "CREATE TABLE users (email varchar(80) NOT NULL PRIMARY KEY, password varchar(20) NOT NULL, "
    "quota integer DEFAULT 10485760)",
    "CREATE TABLE transport (domain varchar(128) NOT NULL DEFAULT '' UNIQUE, transport varchar(128) NOT NULL "
    "DEFAULT '')",
]


def open_backend(backend: Backend) -> Directory:
    url = parse_url(backend.url)
    return Directory(connect(url), url.engine, url.display())


def test_create_schema_is_idempotent(backend: Backend) -> None:
    engine: Engine = parse_url(backend.url).engine
    directory = open_backend(backend)
    try:
        assert directory.create_schema() == ["domains", "forwardings", "users", "transport"]
        assert directory.create_schema() == []
        assert schema.existing_tables(directory.conn, engine) >= set(schema.TABLES)
        limits = schema.column_limits(directory.conn, engine)
        assert set(limits) == {("domains", "domain"), ("forwardings", "source"), ("forwardings", "destination"),
                               ("users", "email"), ("users", "password"), ("users", "quota"),
                               ("transport", "domain"), ("transport", "transport")}
        if engine != "sqlite":
            assert limits[("users", "password")].max_chars == 255
            assert limits[("users", "quota")].int_range == (-(2**63), 2**63 - 1)
        assert limits[("users", "password")].text_fits("x" * 255)
    finally:
        directory.close()
    # The column default of the guide (10 MiB) applies when no quota is given.
    directory = open_backend(backend)
    try:
        directory.add_domain("example.com")
        directory.add_user("a@example.com", "{PLAIN}x")
        assert directory.users() == [directory.user("a@example.com")]
        assert directory.users()[0].quota == 10485760
    finally:
        directory.close()


def test_ddl_texts() -> None:
    mysql = schema.schema_ddl("mysql")
    assert mysql[2] == ("CREATE TABLE IF NOT EXISTS users (\n  email varchar(255) NOT NULL,\n"
                        "  password varchar(255) NOT NULL,\n  quota BIGINT DEFAULT 10485760,\n"
                        "  PRIMARY KEY (email)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    assert mysql[3].endswith("  UNIQUE KEY domain (domain)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    assert "CONSTRAINT transport_domain_key UNIQUE (domain)" in schema.schema_ddl("pgsql")[3]
    assert schema.schema_ddl("sqlite")[1] == ("CREATE TABLE IF NOT EXISTS forwardings (\n"
                                              "  source varchar(255) NOT NULL,\n  destination TEXT NOT NULL,\n"
                                              "  PRIMARY KEY (source)\n)")


def test_mysql_tables_are_innodb_utf8mb4(mysql_database: str) -> None:
    backend = Backend("mysql", f"mysql://root@127.0.0.1:3306/{mysql_database}", mysql_database)
    backend.drop_tables()
    try:
        open_backend(backend).create_schema()
        rows = backend.sql("SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
                           f"WHERE TABLE_SCHEMA = '{mysql_database}' ORDER BY TABLE_NAME")
        assert [r[0] for r in rows] == ["domains", "forwardings", "transport", "users"]
        assert all(r[1] == "InnoDB" and str(r[2]).startswith("utf8mb4") for r in rows), rows
    finally:
        backend.drop_tables()


@pytest.mark.parametrize("engine", ["mysql", "pgsql"])
def test_guide_schema_too_narrow(engine: str, request: pytest.FixtureRequest, confdir: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    name = request.getfixturevalue(f"{engine}_database")
    url = (f"mysql://root@127.0.0.1:3306/{name}" if engine == "mysql"
           else f"postgresql://postgres@127.0.0.1:5432/{name}")
    backend = Backend(engine, url, name)
    backend.drop_tables()
    try:
        for ddl in GUIDE_MYSQL if engine == "mysql" else GUIDE_PGSQL:
            backend.sql(ddl)
        (confdir / "main.cf").write_text(f"directory_database = {url}\n")
        admin = Admin(confdir, capsys)
        admin.ok("domain", "add", "d3xt3r01.tk")
        message = admin.fails("user", "add", "dexter@d3xt3r01.tk", "--password", "parolamail")
        alter = ("ALTER TABLE users MODIFY password varchar(255) NOT NULL;" if engine == "mysql"
                 else "ALTER TABLE users ALTER COLUMN password TYPE varchar(255);")
        assert message.startswith("the value for users.password is ")
        assert message.endswith(" characters long but the column is "
                                + ("varchar(20)" if engine == "mysql" else "character varying(20)")
                                + f"; nothing was changed. Widen the column first: {alter}")
        assert backend.sql("SELECT email FROM users") == []
        # A short hash still fits the guide's column: {PLAIN}… or a DES crypt.
        admin.ok("user", "add", "dexter@d3xt3r01.tk", "--password", "parola", "--scheme", "PLAIN")
        # A quota past a 32-bit INT is refused the same way.
        quota_alter = ("ALTER TABLE users MODIFY quota BIGINT DEFAULT 10485760;" if engine == "mysql"
                       else "ALTER TABLE users ALTER COLUMN quota TYPE bigint;")
        message = admin.fails("user", "quota", "dexter@d3xt3r01.tk", "5368709120")
        assert message.startswith("5368709120 does not fit in column users.quota (")
        assert message.endswith(f"); widen it first: {quota_alter}")
        admin.ok("user", "quota", "dexter@d3xt3r01.tk", "2147483647")
        # After the administrator runs the statements given, everything fits.
        backend.sql(alter)
        backend.sql(quota_alter)
        admin.ok("user", "passwd", "dexter@d3xt3r01.tk", "--password", "parolamail")
        admin.ok("user", "quota", "dexter@d3xt3r01.tk", "5368709120")
        stored = backend.sql("SELECT password, quota FROM users")
        assert str(stored[0][0]).startswith("{ARGON2ID}")
        assert passwords.verify("parolamail", str(stored[0][0]))
        assert int(str(stored[0][1])) == 5368709120
        # Names longer than the guide's varchar(50) domains column are refused too.
        long_domain = ("a" * 60) + ".example"
        message = admin.fails("domain", "add", long_domain)
        assert "domains.domain" in message and "Widen the column first: ALTER TABLE domains" in message
    finally:
        backend.drop_tables()


def test_guide_grants_suffice(mysql_database: str, confdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The guide's mail_admin has SELECT, INSERT, UPDATE, DELETE only: no DDL is attempted."""
    backend = Backend("mysql", "", mysql_database)
    backend.drop_tables()
    login = f"mh_admin_{secrets.token_hex(4)}"
    secret = secrets.token_hex(8)
    try:
        open_backend(Backend("mysql", f"mysql://root@127.0.0.1:3306/{mysql_database}", mysql_database)).create_schema()
        admin_sql("mysql", "", f"CREATE USER '{login}'@'%' IDENTIFIED BY '{secret}'")
        admin_sql("mysql", "", f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{mysql_database}`.* TO '{login}'@'%'")
        (confdir / "main.cf").write_text(f"directory_database = mysql://{login}:{secret}@127.0.0.1/{mysql_database}\n")
        admin = Admin(confdir, capsys)
        admin.ok("domain", "add", "example.com")
        admin.ok("user", "add", "a@example.com", "--password", "x")
        assert admin.ok("user", "list") == "a@example.com\t10485760\n"
        # Without the tables, the same login cannot create them: a clear error, not a crash.
        backend.drop_tables()
        message = admin.fails("domain", "list")
        assert message.startswith(f"mysql://{login}:***@127.0.0.1:3306/{mysql_database}: ")
        assert "CREATE command denied" in message
    finally:
        admin_sql("mysql", "", f"DROP USER IF EXISTS '{login}'@'%'")
        backend.drop_tables()

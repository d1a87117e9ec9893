"""Shared helpers for the SQL table tests: scratch databases and ``*.cf`` files.

Each test session creates uniquely named databases on the MariaDB and
PostgreSQL servers of the machine (design.md §7) and drops them at the end;
no other database is touched. The fixtures skip (or fail under CI=true) when
a server is absent.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions
from mailhorn.tables.registry import open_table
from tests.conftest import port_open, require, run_postfix



def db_name() -> str:
    """A fresh database name (the fixtures are imported by several modules)."""
    return f"mailhorn_t{os.getpid()}_{secrets.token_hex(4)}"

#: The generic test table: keys, values, a second column and NULLs.
ROWS: list[tuple[str, str | None, str | None]] = [
    ("alice@example.com", "alice@mail.example.com", None),
    ("bob@example.com", "bob@one.example", "bob@two.example"),
    ("list@example.com", "a@x.org", None),
    ("list@example.com", "b@y.org", "c@z.org"),
    ("list@example.com", None, None),
    ("example.com", "smtp:[relay.example.com]", None),
    ("plain", "no-at-sign", None),
    ("Mixed@Example.COM", "mixed-case-row", None),
    ("nullonly@example.com", None, None),
    ("empty@example.com", "", None),
    ("quote'key@example.com", "has-quote", None),
    ("back\\slash@example.com", "has-backslash", None),
]


def mysql_cli(sql: str, database: str | None = None) -> None:
    """Run SQL through the ``mysql`` client as root over TCP."""
    args = ["mysql", "-h127.0.0.1", "-P3306", "-uroot", "--batch"]
    if database:
        args.append(database)
    subprocess.run(args, input=sql, text=True, check=True, capture_output=True, timeout=60)


def psql_cli(sql: str, database: str = "postgres") -> None:
    """Run SQL through ``psql`` as postgres over TCP."""
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
                    "-q"], input=sql, text=True, check=True, capture_output=True, timeout=60)


def sql_literal(value: str | None, backslash: bool) -> str:
    """A literal for the fixture rows (MySQL escapes backslashes, PostgreSQL does not)."""
    if value is None:
        return "NULL"
    text = value.replace("\\", "\\\\") if backslash else value
    return "'" + text.replace("'", "''") + "'"


def insert_rows(backslash: bool) -> str:
    """INSERTs for :data:`ROWS`."""
    return "".join(
        f"INSERT INTO t (k, v, v2) VALUES ({sql_literal(k, backslash)}, {sql_literal(v, backslash)}, "
        f"{sql_literal(v2, backslash)});\n"
        for k, v, v2 in ROWS
    )


@pytest.fixture(scope="session")
def mysql_db() -> Iterator[str]:
    """A scratch MariaDB database holding table ``t`` and the seed-003 schema."""
    require(port_open(3306), "MariaDB is not listening on 127.0.0.1:3306")
    name = db_name()
    mysql_cli(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;")
    try:
        mysql_cli("CREATE TABLE t (k VARCHAR(128) NOT NULL, v VARCHAR(128) NULL, v2 VARCHAR(128) NULL);\n"
                  + insert_rows(True), name)
        mysql_cli(seed003_mysql_schema() + seed003_rows(), name)
        yield name
    finally:
        mysql_cli(f"DROP DATABASE IF EXISTS `{name}`;")


@pytest.fixture(scope="session")
def pgsql_db() -> Iterator[str]:
    """A scratch PostgreSQL database holding table ``t`` and the seed-003 schema."""
    require(port_open(5432), "PostgreSQL is not listening on 127.0.0.1:5432")
    name = db_name()
    psql_cli(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0;')
    try:
        psql_cli("CREATE TABLE t (k VARCHAR(128) NOT NULL, v VARCHAR(128) NULL, v2 VARCHAR(128) NULL);\n"
                 + insert_rows(False), name)
        psql_cli(seed003_pgsql_schema() + seed003_rows(), name)
        yield name
    finally:
        psql_cli(f'DROP DATABASE IF EXISTS "{name}";')


# -- the seed guide 003 (Postfix + MySQL virtual domains) -------------------

SEED003_DIR = Path(__file__).resolve().parent.parent / "golden" / "sql" / "seed003"
SEED003_MAPS = ["domains", "forwardings", "mailboxes", "email2email", "transports", "mailbox_limit_maps"]


def seed003_mysql_schema() -> str:
    """The guide's tables, with ``TYPE=MyISAM`` spelled ``ENGINE=MyISAM`` as MariaDB wants
    and the lost ``default ''`` of the transport table restored."""
    return """
CREATE TABLE domains (
  domain varchar(50) NOT NULL,
  PRIMARY KEY (domain)
) ENGINE=MyISAM;
CREATE TABLE forwardings (
  source varchar(80) NOT NULL,
  destination TEXT NOT NULL,
  PRIMARY KEY (source)
) ENGINE=MyISAM;
CREATE TABLE users (
  email varchar(80) NOT NULL,
  password varchar(20) NOT NULL,
  quota INT(10) DEFAULT '10485760',
  PRIMARY KEY (email)
) ENGINE=MyISAM;
CREATE TABLE transport (
  domain varchar(128) NOT NULL default '',
  transport varchar(128) NOT NULL default '',
  UNIQUE KEY domain (domain)
) ENGINE=MyISAM;
"""


def seed003_pgsql_schema() -> str:
    """The same tables for PostgreSQL."""
    return """
CREATE TABLE domains (domain varchar(50) NOT NULL PRIMARY KEY);
CREATE TABLE forwardings (source varchar(80) NOT NULL PRIMARY KEY, destination TEXT NOT NULL);
CREATE TABLE users (email varchar(80) NOT NULL PRIMARY KEY, password varchar(20) NOT NULL,
                    quota INT DEFAULT 10485760);
CREATE TABLE transport (domain varchar(128) NOT NULL DEFAULT '' UNIQUE,
                        transport varchar(128) NOT NULL DEFAULT '');
"""


def seed003_rows() -> str:
    """Rows as the guide's administrator would insert them."""
    return """
INSERT INTO domains (domain) VALUES ('d3xt3r01.tk'), ('example.org');
INSERT INTO users (email, password) VALUES ('dexter@d3xt3r01.tk', 'x');
INSERT INTO users (email, password, quota) VALUES ('ana@example.org', 'x', 20971520);
INSERT INTO forwardings (source, destination) VALUES ('postmaster@d3xt3r01.tk', 'dexter@d3xt3r01.tk'),
  ('@example.org', 'ana@example.org'), ('team@d3xt3r01.tk', 'dexter@d3xt3r01.tk,ana@example.org');
INSERT INTO transport (domain, transport) VALUES ('example.org', 'smtp:[mx.example.org]');
"""


def seed003_cf(name: str, engine: str, database: str, tmp_path: Path) -> Path:
    """The guide's ``mysql-virtual_NAME.cf`` pointed at the scratch database.

    For MySQL only host/user/password/dbname change; for PostgreSQL the query
    is the equivalent one from ``pgsql-virtual_NAME.cf``.
    """
    prefix = "mysql" if engine == "mysql" else "pgsql"
    text = (SEED003_DIR / f"{prefix}-virtual_{name}.cf").read_text()
    user = "root" if engine == "mysql" else "postgres"
    out: list[str] = []
    for line in text.splitlines():
        param = line.split("=", 1)[0].strip()
        if param == "user":
            line = f"user = {user}"
        elif param == "password":
            line = "password ="
        elif param == "dbname":
            line = f"dbname = {database}"
        elif param == "hosts":
            line = "hosts = 127.0.0.1"
        out.append(line)
    path = tmp_path / f"{prefix}-virtual_{name}.cf"
    path.write_text("\n".join(out) + "\n")
    age(path)
    return path


# -- comparing with the real postmap ---------------------------------------


@pytest.fixture(scope="session")
def oracle_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One empty configuration directory for every real postmap run.

    Shared by the session so the real postmap reads the same, settled main.cf.
    """
    d = tmp_path_factory.mktemp("oracle") / "etc"
    d.mkdir()
    (d / "main.cf").write_text("")
    (d / "master.cf").write_text("")
    age(d / "main.cf")
    return d


def write_cf(tmp_path: Path, name: str, text: str) -> Path:
    """A ``*.cf`` file in the test's directory."""
    path = tmp_path / name
    path.write_text(text)
    age(path)
    return path


def age(path: Path) -> None:
    """Date a new file a minute back: Postfix waits for a file modified in the last
    seconds to settle before reading it, which would only slow the tests."""
    past = time.time() - 60
    os.utime(path, (past, past))


def mailhorn_query(spec: str, keys: Iterable[str], fold_case: bool = True) -> str:
    """What ``postmap -q - SPEC`` prints for ``keys``, computed in-process."""
    table = open_table(spec, Config(), OpenOptions(fold_case=fold_case), cached=False)
    lines = []
    for key in keys:
        value = table.lookup(key)
        if value is not None:
            lines.append(f"{key}\t{value}\n")
    close = getattr(table, "close", None)
    if close is not None:
        close()
    return "".join(lines)


def postfix_query(confdir: Path, spec: str, keys: Iterable[str], *flags: str) -> subprocess.CompletedProcess[str]:
    """The real ``postmap -q - SPEC`` over ``keys``."""
    return run_postfix("postmap", *flags, "-c", str(confdir), "-q", "-", spec,
                       stdin="".join(k + "\n" for k in keys))

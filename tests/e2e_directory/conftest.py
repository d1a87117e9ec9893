"""Fixtures: a running site, a scratch database per engine, smtp-sink.

``database`` is parametrised over SQLite, MariaDB and PostgreSQL: a URL for
``mailhorn quickstart --db``. MariaDB and PostgreSQL databases get a unique
name, are created for the test and dropped after it (``mysql_server`` and
``pgsql_server`` skip the test when the server is not there). The SQLite URL
is None: quickstart's default, ``DIR/directory.sqlite``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.delivery.smtp_helpers import SmtpSink
from tests.e2e_directory.util import Site


@dataclass(frozen=True)
class Database:
    """One engine's scratch database: ``--db`` URL (None: quickstart's SQLite) and name."""

    engine: str
    url: str | None
    name: str


def unique_name() -> str:
    return f"mh_e2edir_{uuid.uuid4().hex[:12]}"


def mysql_connection(server: dict[str, object], database: str | None = None) -> object:
    """A PyMySQL connection to the test server (autocommit)."""
    import pymysql  # type: ignore[import-untyped]

    kwargs: dict[str, object] = {"database": database} if database else {}
    return pymysql.connect(host=str(server["host"]), port=int(str(server["port"])), user=str(server["user"]),
                           password=str(server["password"]), autocommit=True, charset="utf8mb4", **kwargs)


def mysql_database(server: dict[str, object]) -> Iterator[str]:
    """A fresh MariaDB database, dropped afterwards."""
    name = unique_name()
    conn = mysql_connection(server)
    try:
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        yield name
    finally:
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()  # type: ignore[attr-defined]


def pgsql_database(server: dict[str, object]) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards (its sessions with it)."""
    import psycopg

    name = unique_name()
    conn = psycopg.connect(host=str(server["host"]), port=int(str(server["port"])), user=str(server["user"]),
                           dbname="postgres", autocommit=True)
    try:
        conn.execute(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0")
        yield name
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql),
                        pytest.param("pgsql", marks=pytest.mark.pgsql)])
def database(request: pytest.FixtureRequest) -> Iterator[Database]:
    engine: str = request.param
    if engine == "sqlite":
        yield Database("sqlite", None, "directory.sqlite")
    elif engine == "mysql":
        server = request.getfixturevalue("mysql_server")
        for name in mysql_database(server):
            yield Database("mysql", f"mysql://{server['user']}@{server['host']}:{server['port']}/{name}", name)
    else:
        server = request.getfixturevalue("pgsql_server")
        for name in pgsql_database(server):
            yield Database("pgsql", f"postgresql://{server['user']}@{server['host']}:{server['port']}/{name}",
                           name)


@pytest.fixture
def site() -> Iterator[Site]:
    made = Site()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    """Postfix's smtp-sink on 127.0.0.3, an ephemeral port."""
    peer = SmtpSink(tmp_path)
    try:
        yield peer
    finally:
        peer.stop()

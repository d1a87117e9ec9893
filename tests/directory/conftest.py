"""Fixtures for the directory tests: one scratch database per engine and session.

MariaDB and PostgreSQL each get a uniquely named database, created at first
use and dropped at the end of the session; no other database is touched.
Before each test the directory's four tables are dropped, so every test
starts from an empty database (and exercises ``create_schema``).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.directory.schema import TABLES

DB_NAME = f"mailhorn_dir{os.getpid()}_{secrets.token_hex(3)}"
ENGINES = ["sqlite", "mysql", "pgsql"]


def mysql_root(database: str | None = None) -> object:
    """A PyMySQL connection as root over TCP (autocommit)."""
    import pymysql  # type: ignore[import-untyped]

    kwargs: dict[str, object] = {"database": database} if database else {}
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True,
                           charset="utf8mb4", **kwargs)


def pgsql_root(database: str = "postgres") -> object:
    """A psycopg connection as postgres over TCP (autocommit)."""
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname=database, autocommit=True)


def admin_sql(engine: str, target: str, sql: str) -> list[tuple[object, ...]]:
    """Run SQL as the administrator on the test database (``target``: name or SQLite path)."""
    if engine == "sqlite":
        conn = sqlite3.connect(target)
        try:
            rows = conn.execute(sql).fetchall()
            conn.commit()
            return [tuple(r) for r in rows]
        finally:
            conn.close()
    conn2 = mysql_root(target) if engine == "mysql" else pgsql_root(target)
    try:
        cur = conn2.cursor()  # type: ignore[attr-defined]
        cur.execute(sql)
        rows2 = cur.fetchall() if cur.description is not None else []
        return [tuple(r) for r in rows2]
    finally:
        conn2.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def mysql_database() -> Iterator[str]:
    from tests.conftest import port_open, require

    require(port_open(3306), "MariaDB is not listening on 127.0.0.1:3306")
    admin_sql("mysql", "", f"CREATE DATABASE `{DB_NAME}` CHARACTER SET utf8mb4")
    try:
        yield DB_NAME
    finally:
        admin_sql("mysql", "", f"DROP DATABASE IF EXISTS `{DB_NAME}`")


@pytest.fixture(scope="session")
def pgsql_database() -> Iterator[str]:
    from tests.conftest import port_open, require

    require(port_open(5432), "PostgreSQL is not listening on 127.0.0.1:5432")
    admin_sql("pgsql", "postgres", f"CREATE DATABASE \"{DB_NAME}\" ENCODING 'UTF8' TEMPLATE template0")
    try:
        yield DB_NAME
    finally:
        admin_sql("pgsql", "postgres", f'DROP DATABASE IF EXISTS "{DB_NAME}"')


class Backend:
    """One engine's empty test database: its URL and an administrator's SQL access."""

    def __init__(self, engine: str, url: str, target: str) -> None:
        self.engine = engine
        self.url = url
        self.target = target

    def sql(self, text: str) -> list[tuple[object, ...]]:
        return admin_sql(self.engine, self.target, text)

    def drop_tables(self) -> None:
        for table in TABLES:
            self.sql(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture(params=ENGINES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty directory database on each engine in turn."""
    engine: str = request.param
    if engine == "sqlite":
        path = tmp_path / "directory.sqlite"
        result = Backend("sqlite", f"sqlite://{path}", str(path))
    elif engine == "mysql":
        name = request.getfixturevalue("mysql_database")
        result = Backend("mysql", f"mysql://root@127.0.0.1:3306/{name}", name)
    else:
        name = request.getfixturevalue("pgsql_database")
        result = Backend("pgsql", f"postgresql://postgres@127.0.0.1:5432/{name}", name)
    if engine != "sqlite":
        result.drop_tables()
    yield result
    if engine != "sqlite":
        result.drop_tables()

"""The directory's tables, per database engine, and what their columns hold.

The schema is the one of the Romanian Postfix + MySQL guide (seed 003), so a
database made by hand from that guide works unchanged, and the guide's
``mysql-virtual_*.cf`` queries read what mailhorn writes::

    domains(domain)                      hosted (virtual mailbox) domains
    forwardings(source, destination)     virtual aliases, catch-alls, domain→domain
    users(email, password, quota)        mailboxes: address, stored password, bytes
    transport(domain, transport)         transport(5) entries

New tables differ from the guide only where it would break things today:
InnoDB and utf8mb4 instead of MyISAM (MySQL), a ``password`` column of 255
characters instead of 20 (modern hashes are 100+ characters), 255-character
names (RFC 5321 §4.5.3.1 limits), and a 64-bit ``quota`` (a 32-bit ``INT``
ends at 2 GiB). PostgreSQL and SQLite get the same columns and keys.

:func:`create_schema` creates the tables that are missing and nothing else:
an existing table is never altered, and a database whose tables all exist is
not asked to run DDL at all, so the guide's ``mail_admin`` login (SELECT,
INSERT, UPDATE, DELETE only) is enough to administer it.

:func:`column_limits` reads what the existing columns can hold, so that a
value that does not fit is refused with the ``ALTER TABLE`` that would make it
fit (:func:`widen_statement`) instead of being truncated by a lenient server.

Errors: the driver's own exceptions pass through; callers turn them into
messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from mailhorn.directory.url import Engine

#: The tables, in creation order.
TABLES: tuple[str, ...] = ("domains", "forwardings", "users", "transport")

#: Width of the name and password columns of new tables.
WIDTH = 255
#: The guide's default mailbox size (10 MiB), kept as the column default.
DEFAULT_QUOTA = 10485760

_MYSQL_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"

_ENGINES: tuple[Engine, ...] = ("mysql", "pgsql", "sqlite")


def _same(definition: str) -> dict[Engine, str]:
    """One definition for every engine."""
    return {engine: definition for engine in _ENGINES}


#: Column definitions of new tables: (table, column) → engine → SQL type and constraints.
COLUMNS: dict[tuple[str, str], dict[Engine, str]] = {
    ("domains", "domain"): _same(f"varchar({WIDTH}) NOT NULL"),
    ("forwardings", "source"): _same(f"varchar({WIDTH}) NOT NULL"),
    ("forwardings", "destination"): {"mysql": "TEXT NOT NULL", "pgsql": "text NOT NULL", "sqlite": "TEXT NOT NULL"},
    ("users", "email"): _same(f"varchar({WIDTH}) NOT NULL"),
    ("users", "password"): _same(f"varchar({WIDTH}) NOT NULL"),
    ("users", "quota"): {
        "mysql": f"BIGINT DEFAULT {DEFAULT_QUOTA}",
        "pgsql": f"bigint DEFAULT {DEFAULT_QUOTA}",
        "sqlite": f"INTEGER DEFAULT {DEFAULT_QUOTA}",
    },
    ("transport", "domain"): _same(f"varchar({WIDTH}) NOT NULL DEFAULT ''"),
    ("transport", "transport"): _same(f"varchar({WIDTH}) NOT NULL DEFAULT ''"),
}

#: Keys, as the guide declares them (``UNIQUE KEY domain (domain)`` for transport).
_KEYS: dict[str, dict[Engine, str]] = {
    "domains": _same("PRIMARY KEY (domain)"),
    "forwardings": _same("PRIMARY KEY (source)"),
    "users": _same("PRIMARY KEY (email)"),
    "transport": {
        "mysql": "UNIQUE KEY domain (domain)",
        "pgsql": "CONSTRAINT transport_domain_key UNIQUE (domain)",
        "sqlite": "UNIQUE (domain)",
    },
}


class Connection(Protocol):
    """The part of a DB-API 2.0 connection (PEP 249) the directory uses."""

    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


def table_ddl(table: str, engine: Engine) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one table on one engine."""
    lines = [f"  {column} {defs[engine]}" for (name, column), defs in COLUMNS.items() if name == table]
    lines.append(f"  {_KEYS[table][engine]}")
    tail = f" {_MYSQL_OPTIONS}" if engine == "mysql" else ""
    return f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(lines) + f"\n){tail}"


def schema_ddl(engine: Engine) -> list[str]:
    """Every table's DDL, in creation order."""
    return [table_ddl(table, engine) for table in TABLES]


def execute(conn: Connection, engine: Engine, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement with ``%s`` placeholders; the rows it returns, if any."""
    if engine == "sqlite":
        sql = sql.replace("%s", "?")
    cur = conn.cursor()
    try:
        if params:
            cur.execute(sql, params)
        else:
            cur.execute(sql)
        if cur.description is None:
            return []
        return [tuple(row) for row in cur.fetchall()]
    finally:
        cur.close()


def existing_tables(conn: Connection, engine: Engine) -> set[str]:
    """Names (lower case) of the tables in the connection's database or schema."""
    if engine == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    elif engine == "mysql":
        sql = "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    return {str(row[0]).lower() for row in execute(conn, engine, sql)}


def create_schema(conn: Connection, engine: Engine) -> list[str]:
    """Create the missing tables; return their names (empty when none was missing).

    Idempotent: running it again changes nothing. Existing tables are left as
    they are, even when their columns are narrower than new ones would be.
    """
    have = existing_tables(conn, engine)
    created: list[str] = []
    for table in TABLES:
        if table not in have:
            execute(conn, engine, table_ddl(table, engine))
            created.append(table)
    conn.commit()
    return created


@dataclass(frozen=True)
class ColumnLimit:
    """What one existing column can hold.

    ``max_chars``/``max_bytes`` bound text (None: unbounded or not enforced,
    as in SQLite); ``int_range`` bounds whole numbers (None: not an integer
    column, or no bound known).
    """

    table: str
    column: str
    sql_type: str
    max_chars: int | None = None
    max_bytes: int | None = None
    int_range: tuple[int, int] | None = None

    def text_fits(self, value: str) -> bool:
        """Whether ``value`` is stored whole."""
        if self.max_chars is not None and len(value) > self.max_chars:
            return False
        if self.max_bytes is not None and len(value.encode("utf-8")) > self.max_bytes:
            return False
        return True

    def int_fits(self, value: int) -> bool:
        """Whether ``value`` is stored unchanged."""
        return self.int_range is None or self.int_range[0] <= value <= self.int_range[1]


_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}


def _int_range(data_type: str, column_type: str) -> tuple[int, int] | None:
    bits = _INT_BITS.get(data_type.lower())
    if bits is None:
        return None
    if "unsigned" in column_type.lower():
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _number(value: object) -> int | None:
    return None if value is None else int(str(value))


def column_limits(conn: Connection, engine: Engine) -> dict[tuple[str, str], ColumnLimit]:
    """The limits of the directory's columns as the database declares them."""
    limits: dict[tuple[str, str], ColumnLimit] = {}
    if engine == "sqlite":
        # SQLite stores any length; INTEGER affinity holds 64-bit values.
        for table in TABLES:
            for row in execute(conn, engine, f"PRAGMA table_info({table})"):
                name, sql_type = str(row[1]).lower(), str(row[2])
                is_int = "int" in sql_type.lower()
                limits[(table, name)] = ColumnLimit(
                    table, name, sql_type, int_range=(-(2**63), 2**63 - 1) if is_int else None
                )
        return limits
    if engine == "mysql":
        sql = ("SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH, "
               "COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()")
    else:
        sql = ("SELECT table_name, column_name, data_type, character_maximum_length, character_octet_length, "
               "data_type FROM information_schema.columns WHERE table_schema = current_schema()")
    for table, column, data_type, max_chars, max_bytes, column_type in execute(conn, engine, sql):
        key = (str(table).lower(), str(column).lower())
        if key[0] not in TABLES:
            continue
        text_type = _number(max_chars) is not None
        sql_type = str(column_type)
        if engine == "pgsql" and text_type:
            sql_type = f"{sql_type}({max_chars})"  # information_schema gives the width apart
        limits[key] = ColumnLimit(
            key[0], key[1], sql_type,
            max_chars=_number(max_chars),
            # PostgreSQL's octet length is the 1 GiB field limit, not the column's.
            max_bytes=_number(max_bytes) if engine == "mysql" and text_type else None,
            int_range=_int_range(str(data_type), str(column_type)),
        )
    return limits


def widen_statement(engine: Engine, limit: ColumnLimit, needed: int) -> str:
    """The ``ALTER TABLE`` that lets ``limit``'s column hold ``needed`` characters
    (or, for an integer column, 64-bit numbers)."""
    definition = COLUMNS.get((limit.table, limit.column), {}).get(engine, "")
    if limit.int_range is None and f"varchar({WIDTH})" in definition and needed > WIDTH:
        definition = definition.replace(f"varchar({WIDTH})", f"varchar({needed})")
    if limit.int_range is None and definition.upper().startswith("TEXT") and engine == "mysql" and needed > 65535:
        definition = "MEDIUMTEXT NOT NULL"
    if engine == "mysql":
        return f"ALTER TABLE {limit.table} MODIFY {limit.column} {definition};"
    sql_type = definition.split(" ", 1)[0]
    return f"ALTER TABLE {limit.table} ALTER COLUMN {limit.column} TYPE {sql_type};"

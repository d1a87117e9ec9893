"""The Romanian guide (seed 003): Postfix + MySQL virtual domains, its six ``*.cf`` files.

The guide's schema (translated to what MariaDB accepts) and its six
``mysql-virtual_*.cf`` files, kept verbatim in tests/golden/sql/seed003/ apart
from the login and database, answer as their queries define; the same lookups
hold against PostgreSQL with equivalent queries (``split_part`` for
``SUBSTRING_INDEX``). The real Postfix postmap gives the same answers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.tables.registry import open_table
from tests.tables.test_sql_support import (  # noqa: F401 - fixtures
    SEED003_DIR,
    SEED003_MAPS,
    mysql_db,
    oracle_confdir,
    pgsql_db,
    postfix_query,
    seed003_cf,
)


def expected() -> list[tuple[str, str, str | None]]:
    rows = []
    for line in (SEED003_DIR / "lookups.ref").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, key, value = line.split("\t")
        rows.append((name, key, None if value == "-" else value))
    return rows


def test_seed_files_are_the_guides() -> None:
    """The six files keep the guide's queries, e.g. the Maildir path expression."""
    names = sorted(p.name for p in SEED003_DIR.glob("mysql-virtual_*.cf"))
    assert names == sorted(f"mysql-virtual_{n}.cf" for n in SEED003_MAPS)
    text = (SEED003_DIR / "mysql-virtual_mailboxes.cf").read_text()
    assert ("query = SELECT CONCAT(SUBSTRING_INDEX(email,'@',-1),'/',SUBSTRING_INDEX(email,'@',1),'/') "
            "FROM users WHERE email='%s'") in text


@pytest.mark.parametrize("engine", ["mysql", "pgsql"])
def test_seed003_lookups(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    database = request.getfixturevalue(f"{engine}_db")
    request.getfixturevalue(f"{engine}_server")
    for name, key, value in expected():
        cf = seed003_cf(name, engine, database, tmp_path)
        table = open_table(f"proxy:{engine}:{cf}", Config())
        assert table.lookup(key) == value, (name, key)


@pytest.mark.parametrize("engine", ["mysql", "pgsql"])
def test_seed003_same_as_postfix(engine: str, request: pytest.FixtureRequest, tmp_path: Path,
                                 oracle_confdir: Path) -> None:
    database = request.getfixturevalue(f"{engine}_db")
    for name in SEED003_MAPS:
        cf = seed003_cf(name, engine, database, tmp_path)
        keys = [key for n, key, _ in expected() if n == name]
        ours = "".join(f"{k}\t{v}\n" for n, k, v in expected() if n == name and v is not None)
        real = postfix_query(oracle_confdir, f"{engine}:{cf}", keys)
        assert (real.stdout, real.returncode) == (ours, 0), real.stderr

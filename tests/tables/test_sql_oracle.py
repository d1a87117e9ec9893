"""mysql:, pgsql: and sqlite: tables answer as the real Postfix 3.7 postmap does.

Each case is a ``*.cf`` body run over the same keys (mixed case, no ``@``,
empty local part or domain, quotes and backslashes, several ``@``) by the
real ``postmap -q -`` and by mailhorn's table; stdout and exit status must be
the same byte for byte.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.tables.test_sql_support import (  # noqa: F401 - fixtures
    ROWS,
    age,
    mailhorn_query,
    mysql_db,
    oracle_confdir,
    pgsql_db,
    postfix_query,
    write_cf,
)

KEYS = [
    "alice@example.com", "ALICE@Example.COM", "bob@example.com", "list@example.com", "example.com",
    "plain", "PLAIN", "Mixed@Example.COM", "mixed@example.com", "nullonly@example.com", "nobody@example.com",
    "quote'key@example.com", "back\\slash@example.com", "@example.com", "user@", "a@b@example.com",
    "alice@sub.example.com", "x' OR '1'='1", "x\\' OR 1=1 -- ", "%s", 'x" OR ""="',
]

#: name -> (cf body after the connection lines, postmap flags)
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "key": ("query = SELECT v FROM t WHERE k='%s'\n", ()),
    "key-nofold": ("query = SELECT v FROM t WHERE k='%s'\n", ("-f",)),
    "columns": ("query = SELECT v, v2 FROM t WHERE k='%s'\n", ()),
    "domain-only": ("query = SELECT v FROM t WHERE k='%d'\n", ()),
    "user-at-domain": ("query = SELECT v FROM t WHERE k='%u@%d'\n", ()),
    "user-only": ("query = SELECT v FROM t WHERE k='%u'\n", ()),
    "labels": ("query = SELECT v FROM t WHERE k='%u@%2.%1'\n", ()),
    "upper": ("query = SELECT v FROM t WHERE k='%U@%D' OR k='%S'\n", ()),
    "result-format": ("query = SELECT v, v2 FROM t WHERE k='%s'\n"
                      "result_format = [%s|%u|%d|%S|%U|%D|%1|%%]\n", ()),
    "result-user": ("query = SELECT v, v2 FROM t WHERE k='%s'\nresult_format = <%u>\n", ()),
    "result-domain": ("query = SELECT v, v2 FROM t WHERE k='%s'\nresult_format = smtp:[%d]\n", ()),
    "result-keydomain": ("query = SELECT v FROM t WHERE k='%s'\nresult_format = %s via %D\n", ()),
    "domain-filter": ("query = SELECT v FROM t WHERE k='%s'\ndomain = example.com, !other.com\n", ()),
    "legacy": ("table = t\nselect_field = v\nwhere_field = k\nadditional_conditions = AND v IS NOT NULL\n", ()),
    "limit-ok": ("query = SELECT v FROM t WHERE k='%s'\nexpansion_limit = 2\n", ()),
}

ENGINES = ["mysql", "pgsql", "sqlite"]


def connection_lines(engine: str, database: str) -> str:
    if engine == "mysql":
        return f"hosts = 127.0.0.1\nuser = root\npassword =\ndbname = {database}\n"
    if engine == "pgsql":
        return f"hosts = inet:127.0.0.1:5432\nuser = postgres\ndbname = {database}\n"
    return f"dbpath = {database}\n"


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "t.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (k TEXT NOT NULL, v TEXT, v2 TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", ROWS)
    conn.commit()
    conn.close()
    age(path)
    return str(path)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("engine", ENGINES)
def test_same_as_postfix(engine: str, case: str, request: pytest.FixtureRequest, tmp_path: Path,
                         oracle_confdir: Path) -> None:
    database = request.getfixturevalue(f"{engine}_db")
    body, flags = CASES[case]
    cf = write_cf(tmp_path, f"{case}.cf", connection_lines(engine, database) + body)
    spec = f"{engine}:{cf}"
    real = postfix_query(oracle_confdir, spec, KEYS, *flags)
    assert real.returncode in (0, 1), real.stderr
    ours = mailhorn_query(spec, KEYS, fold_case="-f" not in flags)
    assert ours == real.stdout
    assert (0 if ours else 1) == real.returncode


@pytest.mark.parametrize("engine", ENGINES)
def test_found_values(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The comparison above is not vacuous: known rows come back as Postfix joins them."""
    database = request.getfixturevalue(f"{engine}_db")
    cf = write_cf(tmp_path, "c.cf", connection_lines(engine, database) + CASES["columns"][0])
    got = mailhorn_query(f"{engine}:{cf}", ["ALICE@example.com", "list@example.com", "nobody@example.com"])
    if engine == "sqlite":
        # dict_sqlite reads the first column only.
        assert got == "ALICE@example.com\talice@mail.example.com\nlist@example.com\ta@x.org,b@y.org\n"
    else:
        assert got == ("ALICE@example.com\talice@mail.example.com\n"
                       "list@example.com\ta@x.org,b@y.org,c@z.org\n")

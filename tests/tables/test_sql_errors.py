"""SQL tables fail safe: temporary errors are TableRetry, never "not found".

A closed port, a server that accepts but never answers, a failing query and
an exceeded expansion_limit are temporary errors (the real postmap also fails
there); a bad ``*.cf`` file is a configuration error naming file, line and
parameter; hostile keys are quoted and find nothing; a connection the server
dropped is replaced transparently.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from mailhorn.config.load import Config
from mailhorn.tables.base import TableConfigError, TableRetry
from mailhorn.tables.mysql import escape
from mailhorn.tables.registry import open_table
from tests.tables.test_sql_support import (  # noqa: F401 - fixtures
    mysql_cli,
    mysql_db,
    oracle_confdir,
    pgsql_db,
    psql_cli,
    write_cf,
)
from tests.conftest import run_postfix
from tests.helpers.ports import listening_socket, reserve_port


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A listening socket that never accepts or answers."""
    with listening_socket(backlog=5) as s:
        yield s.getsockname()[1]


LOGIN = {
    "mysql": "user = root\ndbname = {db}\n",
    "pgsql": "user = postgres\ndbname = {db}\n",
}


@pytest.mark.parametrize("engine", ["mysql", "pgsql"])
def test_closed_port_is_temporary_like_postfix(engine: str, tmp_path: Path, oracle_confdir: Path) -> None:
    port = reserve_port()
    cf = write_cf(tmp_path, "c.cf", f"hosts = 127.0.0.1:{port}\n" + LOGIN[engine].format(db="x")
                  + "query = SELECT v FROM t WHERE k='%s'\n")
    table = open_table(f"{engine}:{cf}", Config())
    with pytest.raises(TableRetry):
        table.lookup("alice@example.com")
    with pytest.raises(TableRetry):  # the dead host is skipped for a while: still an error
        table.lookup("alice@example.com")
    real = run_postfix("postmap", "-c", str(oracle_confdir), "-q", "alice@example.com", f"{engine}:{cf}")
    assert real.returncode == 1 and real.stdout == ""
    assert f"connect to {engine} server 127.0.0.1:{port}" in real.stderr
    assert "query error" in real.stderr


@pytest.mark.parametrize("engine", ["mysql", "pgsql"])
def test_silent_server_times_out(engine: str, tmp_path: Path, silent_server: int) -> None:
    # (The real postmap waits indefinitely here; mailhorn gives up after `timeout`.)
    cf = write_cf(tmp_path, "s.cf", f"hosts = 127.0.0.1:{silent_server}\ntimeout = 1\n"
                  + LOGIN[engine].format(db="x") + "query = SELECT v FROM t WHERE k='%s'\n")
    with pytest.raises(TableRetry):
        open_table(f"{engine}:{cf}", Config()).lookup("alice@example.com")


@pytest.mark.parametrize("engine", ["mysql", "pgsql"])
def test_failover_to_a_live_host(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    db = request.getfixturevalue(f"{engine}_db")
    port = 3306 if engine == "mysql" else 5432
    cf = write_cf(tmp_path, "f.cf", f"hosts = 127.0.0.1:{reserve_port()} inet:127.0.0.1:{port}\n"
                  + LOGIN[engine].format(db=db) + "query = SELECT v FROM t WHERE k='%s'\n")
    table = open_table(f"{engine}:{cf}", Config())
    for _ in range(4):
        assert table.lookup("alice@example.com") == "alice@mail.example.com"


@pytest.mark.parametrize("engine", ["mysql", "pgsql"])
def test_query_errors_are_temporary(engine: str, request: pytest.FixtureRequest, tmp_path: Path,
                                    oracle_confdir: Path) -> None:
    db = request.getfixturevalue(f"{engine}_db")
    cases = ["query = SELECT v FROM nosuchtable WHERE k='%s'\n",
             "query = SELECT v FROM t WHERE k='%s'\nexpansion_limit = 1\n"]
    for i, body in enumerate(cases):
        cf = write_cf(tmp_path, f"q{i}.cf", "hosts = 127.0.0.1\n" + LOGIN[engine].format(db=db)
                      + body.replace("FROM t WHERE", "FROM t WHERE k = 'list@example.com' OR"))
        with pytest.raises(TableRetry):
            open_table(f"{engine}:{cf}", Config(), cached=False).lookup("list@example.com")
        real = run_postfix("postmap", "-c", str(oracle_confdir), "-q", "list@example.com", f"{engine}:{cf}")
        assert (real.returncode, real.stdout) == (1, ""), real.stderr
        assert "query error" in real.stderr


def test_mysql_statement_without_result_set(mysql_db: str, tmp_path: Path) -> None:
    base = f"hosts = 127.0.0.1\nuser = root\ndbname = {mysql_db}\nquery = DO '%s'\n"
    with pytest.raises(TableRetry):
        open_table(f"mysql:{write_cf(tmp_path, 'a.cf', base)}", Config()).lookup("k")
    relaxed = write_cf(tmp_path, "b.cf", base + "require_result_set = no\n")
    assert open_table(f"mysql:{relaxed}", Config()).lookup("k") is None


HOSTILE = ["x' OR '1'='1", "x\\' OR 1=1 -- ", "x'; DROP TABLE t; --", 'x" OR ""="', "\\", "'", "%s%%",
           "x\\\\' OR 'a'='a", "alice@example.com' OR k LIKE '%", "a\0b", "x\x1a' OR '1'='1"]


@pytest.mark.parametrize("engine", ["mysql", "pgsql"])
def test_injection_finds_nothing(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    db = request.getfixturevalue(f"{engine}_db")
    for template in ("k='%s'", "k=\"%s\"" if engine == "mysql" else "k='%u@%d'"):
        cf = write_cf(tmp_path, "i.cf", "hosts = 127.0.0.1\n" + LOGIN[engine].format(db=db)
                      + f"query = SELECT v FROM t WHERE {template}\n")
        table = open_table(f"{engine}:{cf}", Config(), cached=False)
        for key in HOSTILE + [k + "@example.com" for k in HOSTILE]:
            assert table.lookup(key) is None, key
        assert table.lookup("quote'key@example.com") == "has-quote"
        assert table.lookup("back\\slash@example.com") == "has-backslash"


def test_mysql_escape_follows_no_backslash_escapes(mysql_db: str) -> None:
    conn = pymysql.connect(host="127.0.0.1", user="root", password="", database=mysql_db, conv={},
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            for mode in ("", "NO_BACKSLASH_ESCAPES"):
                cur.execute(f"SET SESSION sql_mode = '{mode}'")
                for text in ["a'b", "back\\slash", "q\"d", "nl\nx", "z\x1az", "\\'"]:
                    cur.execute(f"SELECT '{escape(conn, text)}'")
                    assert cur.fetchone()[0] == text, (mode, text)
    finally:
        conn.close()


@pytest.mark.parametrize("engine", ["mysql", "pgsql"])
def test_reconnects_after_the_server_drops_the_connection(engine: str, request: pytest.FixtureRequest,
                                                          tmp_path: Path) -> None:
    db = request.getfixturevalue(f"{engine}_db")
    ident = "CONNECTION_ID()" if engine == "mysql" else "pg_backend_pid()"
    cf = write_cf(tmp_path, "r.cf", "hosts = 127.0.0.1\n" + LOGIN[engine].format(db=db)
                  + f"query = SELECT {ident} FROM t WHERE k='%s'\n")
    table = open_table(f"{engine}:{cf}", Config())
    first = table.lookup("alice@example.com")
    assert first is not None and first.isdigit()
    if engine == "mysql":
        mysql_cli(f"KILL {first};")
    else:
        psql_cli(f"SELECT pg_terminate_backend({first});")
    second = table.lookup("alice@example.com")
    assert second is not None and second.isdigit() and second != first


def test_sqlite_errors(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    cf = write_cf(tmp_path, "s.cf", f"dbpath = {db}\nquery = SELECT v FROM missing WHERE k='%s'\n")
    with pytest.raises(TableConfigError, match="SQL prepare failed: no such table: missing"):
        open_table(f"sqlite:{cf}", Config()).lookup("k")
    nodir = write_cf(tmp_path, "n.cf", f"dbpath = {tmp_path}/no/such/dir.db\nquery = SELECT 1\n")
    with pytest.raises(TableConfigError, match="Can't open database"):
        open_table(f"sqlite:{nodir}", Config())


CONFIG_ERRORS = [
    ("mysql", "hosts = 127.0.0.1\nuser = root\nquery = SELECT 1\n", "bad string length 0 < 1: dbname = "),
    ("pgsql", "hosts = 127.0.0.1\nquery = SELECT 1\n", "bad string length 0 < 1: dbname = "),
    ("sqlite", "query = SELECT 1\n", "bad string length 0 < 1: dbpath = "),
    ("mysql", "dbname = x\n", "bad string length 0 < 1: table = "),
    ("mysql", "dbname = x\nquery = SELECT '%x'\n", "Invalid query template: SELECT '%x'"),
    ("pgsql", "dbname = x\nquery = SELECT 1\nresult_format = %q\n", "Invalid result template: %q"),
    ("mysql", "dbname = x\nquery = SELECT 1\nexpansion_limit = many\n",
     "bad numerical configuration: expansion_limit = many"),
    ("mysql", "dbname = x\nquery = SELECT 1\nresult_format =\n", "bad string length 0 < 1: result_format = "),
    ("mysql", "dbname = x\nbogus line\n", "line 2: missing '=' after attribute name: \"bogus line\""),
]


@pytest.mark.parametrize(("engine", "body", "message"), CONFIG_ERRORS)
def test_config_errors_like_postfix(engine: str, body: str, message: str, tmp_path: Path,
                                    oracle_confdir: Path) -> None:
    cf = write_cf(tmp_path, "bad.cf", body)
    with pytest.raises(TableConfigError) as info:
        open_table(f"{engine}:{cf}", Config())
    assert message in str(info.value)
    assert str(cf) in str(info.value)
    real = run_postfix("postmap", "-c", str(oracle_confdir), "-q", "k", f"{engine}:{cf}")
    assert real.returncode == 1 and message in real.stderr


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TableConfigError, match="open .*/none.cf: No such file or directory"):
        open_table(f"mysql:{tmp_path}/none.cf", Config())


def test_main_cf_form(mysql_db: str) -> None:
    """mysql_table(5) OBSOLETE MAIN.CF PARAMETERS: ``mysql:NAME`` reads NAME_* from main.cf."""
    from mailhorn.config.maincf import parse_main_cf

    text = (f"vm_hosts = 127.0.0.1\nvm_user = root\nvm_dbname = {mysql_db}\n"
            "vm_query = SELECT v FROM t WHERE k='%s'\n")
    config = Config(parse_main_cf(text, "main.cf"))
    assert open_table("mysql:vm", config).lookup("alice@example.com") == "alice@mail.example.com"
    with pytest.raises(TableConfigError, match="vm2_dbname"):
        open_table("mysql:vm2", config)


def test_pgsql_lookup_with_a_socket_above_fd_setsize(pgsql_db: str, tmp_path: Path) -> None:
    """A busy worker's descriptors run past 1024, where select() refuses them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard descriptor limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    filler: list[int] = []
    try:
        while not filler or filler[-1] < 1100:
            filler.append(os.open(os.devnull, os.O_RDONLY))
        cf = write_cf(tmp_path, "h.cf", "hosts = 127.0.0.1\n" + LOGIN["pgsql"].format(db=pgsql_db)
                      + "query = SELECT v FROM t WHERE k='%s'\n")
        assert open_table(f"pgsql:{cf}", Config(), cached=False).lookup("alice@example.com") \
            == "alice@mail.example.com"
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

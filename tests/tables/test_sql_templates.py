"""The %-templates, the domain filter and the host list of SQL tables, without a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.tables.base import TableConfigError
from mailhorn.tables.sql import DomainFilter, Template, parse_host
from tests.conftest import run_mailhorn
from tests.tables.test_sql_support import mysql_db, write_cf  # noqa: F401 - fixture


def q(template: str, key: str) -> str | None:
    return Template.parse(template, "query", "t.cf", True).expand_query(key, lambda s: s.replace("'", "''"))


@pytest.mark.parametrize(("template", "key", "expected"), [
    ("%s", "a'b@c.com", "a''b@c.com"),
    ("%u|%d", "a@b@c.com", "a@b|c.com"),
    ("%u", "user", "user"),
    ("%u", "user@", "user"),
    ("%u", "@c.com", None),
    ("%d", "user", None),
    ("%d", "user@", None),
    ("%1|%2|%3", "u@a.b.com", "com|b|a"),
    ("%4", "u@a.b.com", None),
    ("%2", "u@a..com", "a"),
    ("%3", "u@a..com", None),
    ("%S|%U|%D", "u@d.com", "u@d.com|u|d.com"),
    ("100%%", "k", "100%"),
    ("%s", "", None),
])
def test_query_expansion(template: str, key: str, expected: str | None) -> None:
    assert q(template, key) == expected


def test_result_format() -> None:
    fmt = Template.parse("[%u|%d|%U|%D|%1]", "result", "t.cf", False)
    assert fmt.format_value("r@s.org", "u@d.com") == "[r|s.org|u|d.com|com]"
    assert fmt.format_value("plain", "u@d.com") is None  # %d needs a qualified value
    assert Template.parse("%u", "result", "t.cf", False).format_value("plain", "k") == "plain"
    assert Template.parse("%u", "result", "t.cf", False).format_value("@e.org", "k") is None
    assert not fmt.key_ok("nodomain")  # %D: the query is not even run


@pytest.mark.parametrize("bad", ["%x", "%", "a%0"])
def test_bad_template(bad: str) -> None:
    with pytest.raises(TableConfigError, match="Invalid query template"):
        Template.parse(bad, "query", "t.cf", True)


def test_domain_filter(tmp_path: Path) -> None:
    listed = tmp_path / "domains"
    listed.write_text("# eligible\nfile.org other.org\n")
    f = DomainFilter(f"example.com, !bad.example.com, {listed}", Config(), "t.cf")
    assert f.allows("u@Example.COM")
    assert f.allows("u@file.org")
    assert not f.allows("u@sub.example.com")  # no subdomain matching
    assert not f.allows("u@bad.example.com")
    assert not f.allows("@example.com")
    assert not f.allows("example.com")
    assert not f.allows("u@other.net")
    assert DomainFilter("", Config(), "t.cf").allows("anything")
    with pytest.raises(TableConfigError, match="No such file"):
        DomainFilter(f"{tmp_path}/none", Config(), "t.cf")


def test_domain_filter_table() -> None:
    f = DomainFilter("inline:{a.org=1}", Config(), "t.cf")
    assert f.allows("u@a.org") and not f.allows("u@b.org")


@pytest.mark.parametrize(("text", "unix", "address", "port"), [
    ("unix:/run/mysqld/mysqld.sock", True, "/run/mysqld/mysqld.sock", None),
    ("/tmp/sock", True, "/tmp/sock", None),
    ("inet:db.example:3307", False, "db.example", 3307),
    ("db.example", False, "db.example", None),
    ("[::1]:5432", False, "::1", 5432),
])
def test_hosts(text: str, unix: bool, address: str, port: int | None) -> None:
    host = parse_host(text)
    assert (host.unix, host.address, host.port) == (unix, address, port)


def test_postmap_command(mysql_db: str, tmp_path: Path) -> None:  # noqa: F811
    """``mailhorn postmap -q KEY mysql:FILE`` prints the value, exit 0; not found, exit 1."""
    pytest.importorskip("mailhorn.cli.postmap")
    (tmp_path / "main.cf").write_text("")
    cf = write_cf(tmp_path, "m.cf", f"hosts = 127.0.0.1\nuser = root\ndbname = {mysql_db}\n"
                  "query = SELECT v FROM t WHERE k='%s'\n")
    found = run_mailhorn("postmap", "-c", str(tmp_path), "-q", "Alice@Example.com", f"mysql:{cf}")
    assert (found.stdout, found.returncode) == ("alice@mail.example.com\n", 0), found.stderr
    missing = run_mailhorn("postmap", "-c", str(tmp_path), "-q", "nobody@example.com", f"mysql:{cf}")
    assert (missing.stdout, missing.returncode) == ("", 1)

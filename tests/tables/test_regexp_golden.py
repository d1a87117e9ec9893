"""Golden tests for pattern tables: mailhorn against Postfix's ``postmap -q -``.

Each ``tests/golden/tables/TYPE_NAME.in`` is a table source and
``TYPE_NAME.keys`` the keys looked up in it. ``TYPE_NAME.ref`` holds what the
real Postfix 3.7 prints for ``postmap -q - TYPE:FILE < keys``: one
``key<TAB>value`` line per found key, then ``-- stderr --`` and the warnings,
with the table's path written ``@TABLE@``. The tests check that mailhorn's
tables give the same text in-process, and that the ``.ref`` still agrees with
the installed Postfix. To rewrite the references from the oracle::

    .venv/bin/python -m tests.tables.test_regexp_golden
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.tables.registry import clear_cache, open_table
from tests.conftest import run_postfix

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "tables"
PLACEHOLDER = "@TABLE@"
SEPARATOR = "-- stderr --\n"


def golden_names(kind: str) -> list[str]:
    """The golden cases of one table type (file stems)."""
    return sorted(p.stem for p in GOLDEN.glob(f"{kind}_*.in"))


def case_files(name: str, directory: Path) -> tuple[Path, list[str]]:
    """Copy case ``name`` into ``directory``; return its table path and keys."""
    table = directory / f"{name}.in"
    shutil.copyfile(GOLDEN / f"{name}.in", table)
    keys = (GOLDEN / f"{name}.keys").read_text().splitlines()
    return table, keys


def render(found: list[tuple[str, str]], stderr: str, table: Path) -> str:
    """The reference text: found keys, separator, warnings (path replaced)."""
    out = "".join(f"{key}\t{value}\n" for key, value in found)
    return out + SEPARATOR + stderr.replace(str(table), PLACEHOLDER)


def oracle_render(kind: str, table: Path, keys: list[str], confdir: Path) -> tuple[str, int]:
    """What Postfix's ``postmap -q -`` prints for the keys, and its exit status."""
    proc = run_postfix("postmap", "-c", str(confdir), "-q", "-", f"{kind}:{table}", stdin="".join(k + "\n" for k in keys))
    found = []
    for line in proc.stdout.splitlines():
        key = max((k for k in keys if line.startswith(k + "\t")), key=len)
        found.append((key, line[len(key) + 1 :]))
    return render(found, proc.stderr, table), proc.returncode


def mailhorn_render(kind: str, table: Path, keys: list[str]) -> tuple[str, int]:
    """The same text from mailhorn's table, opened and searched in-process."""
    err = io.StringIO()
    with redirect_stderr(err):
        log.setup("postmap", stderr=True, syslog_path=None)
        try:
            clear_cache()
            opened = open_table(f"{kind}:{table}", Config())
            found = []
            for key in keys:
                value = opened.lookup(key)
                if value == "":
                    # Postfix's generic lookup layer (postmap's in mailhorn)
                    # warns about an empty result and still prints it.
                    log.warning(f"table {kind}:{table}: key {key}: empty string result is not allowed")
                    log.warning(f"table {kind}:{table} should return NO RESULT in case of NOT FOUND")
                if value is not None:
                    found.append((key, value))
        finally:
            log.setup("mailhorn", syslog_path=None)
    return render(found, err.getvalue(), table), 0 if found else 1


@pytest.fixture
def oracle_confdir(tmp_path: Path) -> Iterator[Path]:
    """A configuration directory for the real postmap (never /etc/postfix)."""
    d = tmp_path / "postfix"
    d.mkdir()
    (d / "main.cf").write_text("")
    yield d


def check_case(kind: str, name: str, tmp_path: Path) -> None:
    """mailhorn agrees with the stored reference for one golden case."""
    table, keys = case_files(name, tmp_path)
    expected = (GOLDEN / f"{name}.ref").read_text()
    got, _ = mailhorn_render(kind, table, keys)
    assert got == expected


def check_oracle(kind: str, name: str, tmp_path: Path, confdir: Path) -> None:
    """The stored reference (and so mailhorn) agrees with the installed Postfix."""
    table, keys = case_files(name, tmp_path)
    oracle, oracle_status = oracle_render(kind, table, keys, confdir)
    assert oracle == (GOLDEN / f"{name}.ref").read_text()
    mine, status = mailhorn_render(kind, table, keys)
    assert (mine, status) == (oracle, oracle_status)


@pytest.mark.parametrize("name", golden_names("regexp"))
def test_regexp_golden(name: str, tmp_path: Path) -> None:
    check_case("regexp", name, tmp_path)


@pytest.mark.parametrize("name", golden_names("regexp"))
def test_regexp_golden_oracle(name: str, tmp_path: Path, oracle_confdir: Path) -> None:
    check_oracle("regexp", name, tmp_path, oracle_confdir)


def regenerate() -> None:
    """Rewrite every pattern-table ``.ref`` from the installed Postfix."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        confdir = directory / "postfix"
        confdir.mkdir()
        (confdir / "main.cf").write_text("")
        for kind in ("regexp", "pcre", "cidr"):
            for name in golden_names(kind):
                table, keys = case_files(name, directory)
                text, _ = oracle_render(kind, table, keys, confdir)
                (GOLDEN / f"{name}.ref").write_text(text)
                print(f"wrote {name}.ref", file=sys.stderr)


if __name__ == "__main__":
    regenerate()

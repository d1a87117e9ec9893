"""``passwd-file:`` tables: Dovecot passwd-file lines, htpasswd lines, per-domain files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, TableConfigError, TableRetry
from mailhorn.tables.passwdfile import PasswdEntry, open_passwd_file, parse_line
from mailhorn.tables.registry import TABLE_TYPES, open_table


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(TABLE_TYPES, "passwd-file", "mailhorn.tables.passwdfile:open_passwd_file")
    yield


def test_parse_line_fields() -> None:
    entry = parse_line("ana@example.org:{SHA512-CRYPT}$6$x$y:5000:5000:Ana B:/home/vmail/ana::"
                       "userdb_quota_rule=*:storage=100M nopassword")
    assert entry == PasswdEntry("ana@example.org", "{SHA512-CRYPT}$6$x$y", "5000", "5000", "Ana B",
                                "/home/vmail/ana", "", {"userdb_quota_rule": "*:storage=100M", "nopassword": ""})
    assert parse_line("tex:abJnggxhB/yWI") == PasswdEntry("tex", "abJnggxhB/yWI")
    assert parse_line("no-colon") is None
    assert parse_line(":pw") is None


def test_lookup_returns_password_field(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("# users\n\nana@example.org:{PLAIN}one:5000:5000::/h::\n"
                    "Tex:abJnggxhB/yWI\nana@example.org:second-ignored\nbroken\n")
    table = open_table(f"passwd-file:{path}", Config())
    assert table.type == "passwd-file"
    assert table.lookup("ana@example.org") == "{PLAIN}one"
    assert table.lookup("TEX") == "abJnggxhB/yWI"  # keys and names folded
    assert table.lookup("nobody") is None


def test_no_folding(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("Tex:pw\n")
    table = open_passwd_file(str(path), Config(), OpenOptions(fold_case=False))
    assert table.lookup("Tex") == "pw" and table.lookup("tex") is None


def test_file_changes_are_seen(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("tex:old\n")
    table = open_table(f"passwd-file:{path}", Config())
    assert table.lookup("tex") == "old"
    path.write_text("tex:newer-value\n")
    os.utime(path, ns=(1, 1))  # a different mtime whatever the clock resolution
    assert table.lookup("tex") == "newer-value"
    path.unlink()
    with pytest.raises(TableRetry):
        table.lookup("tex")


def test_missing_file_and_bad_name(tmp_path: Path) -> None:
    with pytest.raises(TableConfigError, match="No such file or directory"):
        open_table(f"passwd-file:{tmp_path / 'none'}", Config())
    with pytest.raises(TableConfigError, match="absolute"):
        open_table("passwd-file:relative/passwd", Config())


def test_per_domain_files_as_vm_pop3d(tmp_path: Path) -> None:
    # Seed 002: one htpasswd file per domain under /var/spool/virtual/DOMAIN/passwd.
    for domain, line in (("pippo.it", "tex:AAAAAAAAAAAAA"), ("pluto.it", "tex:BBBBBBBBBBBBB")):
        (tmp_path / domain).mkdir()
        (tmp_path / domain / "passwd").write_text(line + "\n")
    table = open_table(f"passwd-file:{tmp_path}/%d/passwd", Config())
    assert table.lookup("tex@pippo.it") == "AAAAAAAAAAAAA"
    assert table.lookup("tex@PLUTO.IT") == "BBBBBBBBBBBBB"
    assert table.lookup("tex@paperino.it") is None  # no such file: not found
    assert table.lookup("tex") is None
    assert table.lookup("tex@../pippo.it") is None
    assert table.lookup("tex@a/b") is None

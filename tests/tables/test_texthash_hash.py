"""texthash: and the SQLite-indexed hash:/btree: tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, TableConfigError
from mailhorn.tables.indexed import IndexBuilder, IndexedTable
from mailhorn.tables.registry import open_table
from tests.conftest import run_mailhorn


def build(confdir: Path, source: Path, text: str) -> None:
    source.write_text(text, encoding="utf-8")
    result = run_mailhorn("postmap", "-c", str(confdir), f"hash:{source}")
    assert result.returncode == 0, result.stderr


def test_lookup_reads_only_the_index(confdir: Path, tmp_path: Path) -> None:
    src = tmp_path / "map"
    build(confdir, src, "Key value\n")
    src.write_text("key changed\n")
    assert open_table(f"hash:{src}", Config(), cached=False).lookup("KEY") == "value"
    src.unlink()
    assert open_table(f"btree:{src}", Config(), cached=False).lookup("key") == "value"


def test_open_table_sees_rebuild(confdir: Path, tmp_path: Path) -> None:
    src = tmp_path / "map"
    build(confdir, src, "k old\n")
    table = open_table(f"hash:{src}", Config())
    assert table.lookup("k") == "old"
    build(confdir, src, "k new\nother 1\n")
    assert table.lookup("k") == "new" and table.lookup("other") == "1"
    assert run_mailhorn("postmap", "-c", str(confdir), "-d", "other", f"hash:{src}").returncode == 0
    assert table.lookup("other") is None


def test_build_is_atomic(tmp_path: Path) -> None:
    name = str(tmp_path / "map")
    with IndexBuilder(name, fresh=True, fold=True, utf8=False) as first:
        first.put("k", "old")
    table = IndexedTable("hash", name, True, False)
    builder = IndexBuilder(name, fresh=True, fold=True, utf8=False)
    builder.put("k", "new")
    assert table.lookup("k") == "old"
    builder.commit()
    assert table.lookup("k") == "new"
    failed = IndexBuilder(name, fresh=True, fold=True, utf8=False)
    failed.put("k", "never")
    failed.abort()
    assert table.lookup("k") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.sqlite"]


def test_missing_index(tmp_path: Path) -> None:
    with pytest.raises(TableConfigError) as info:
        open_table(f"hash:{tmp_path}/none", Config())
    assert str(info.value) == f"open database {tmp_path}/none.sqlite: No such file or directory"


def test_fold_and_utf8(tmp_path: Path) -> None:
    name = str(tmp_path / "map")
    with IndexBuilder(name, fresh=True, fold=True, utf8=True) as builder:
        builder.put("BÜCHER.example", "1")
    utf8 = Config(overrides={"smtputf8_enable": "yes"})
    assert open_table(f"hash:{name}", utf8, cached=False).lookup("Bücher.EXAMPLE") == "1"
    plain = Config(overrides={"smtputf8_enable": "no"})
    assert open_table(f"hash:{name}", plain, cached=False).lookup("BÜCHER.EXAMPLE") is None
    exact = open_table(f"hash:{name}", utf8, OpenOptions(fold_case=False), cached=False)
    assert exact.lookup("bücher.example") == "1" and exact.lookup("BÜCHER.example") is None


def test_texthash_reads_at_open(tmp_path: Path) -> None:
    src = tmp_path / "map"
    src.write_text("a 1\nA 2\nbad\n")
    table = open_table(f"texthash:{src}", Config(), cached=False)
    src.write_text("a 3\n")
    assert table.lookup("A") == "1"
    with pytest.raises(TableConfigError, match="open database .*/none: No such file or directory"):
        open_table(f"texthash:{tmp_path}/none", Config())

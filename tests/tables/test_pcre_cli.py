"""``mailhorn postmap`` on pattern tables, byte for byte against Postfix's postmap.

Runs only when ``mailhorn.cli.postmap`` can be imported; compares standard
output, standard error and the exit status (0 found, 1 not found) of
``postmap -q KEY TYPE:FILE``, ``postmap -q - TYPE:FILE`` and the refusal to
build a pattern table.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import run_mailhorn, run_postfix
from tests.tables.test_regexp_golden import GOLDEN, golden_names

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mailhorn.cli.postmap") is None, reason="mailhorn.cli.postmap is not available"
)

SINGLE_KEYS = {
    "pcre": ("pcre_features", ["joe@example.com", "aaax", "nobody@nowhere.example", "q.u*ote"]),
    "regexp": ("regexp_features", ["sub7xy", "long-tail", "Exact@host", "wholesale.x"]),
    "cidr": ("cidr_features", ["2001:db8:1:2::3", "172.16.5.9", "mail.example.com", "[192.168.1.1]"]),
}


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    d = tmp_path / "etc"
    d.mkdir()
    (d / "main.cf").write_text("")
    return d


def same(mine_args: list[str], stdin: str | None = None) -> None:
    oracle = run_postfix("postmap", *mine_args, stdin=stdin)
    mine = run_mailhorn("postmap", *mine_args, stdin=stdin)
    assert (mine.stdout, mine.stderr, mine.returncode) == (oracle.stdout, oracle.stderr, oracle.returncode)


@pytest.mark.parametrize("kind", sorted(SINGLE_KEYS))
def test_query_one_key(kind: str, tmp_path: Path, config_dir: Path) -> None:
    name, keys = SINGLE_KEYS[kind]
    table = tmp_path / f"{name}.in"
    table.write_bytes((GOLDEN / f"{name}.in").read_bytes())
    for key in keys:
        same(["-c", str(config_dir), "-q", key, f"{kind}:{table}"])


@pytest.mark.parametrize("name", golden_names("pcre") + golden_names("regexp") + golden_names("cidr"))
def test_query_stdin(name: str, tmp_path: Path, config_dir: Path) -> None:
    kind = name.split("_", 1)[0]
    table = tmp_path / f"{name}.in"
    table.write_bytes((GOLDEN / f"{name}.in").read_bytes())
    keys = (GOLDEN / f"{name}.keys").read_text()
    same(["-c", str(config_dir), "-q", "-", f"{kind}:{table}"], stdin=keys)


@pytest.mark.parametrize("kind", ["pcre", "regexp", "cidr"])
def test_pattern_tables_are_not_built(kind: str, tmp_path: Path, config_dir: Path) -> None:
    table = tmp_path / "t.in"
    table.write_text("/a/ b\n" if kind != "cidr" else "1.2.3.4 b\n")
    same(["-c", str(config_dir), f"{kind}:{table}"])


def test_missing_table_file(tmp_path: Path, config_dir: Path) -> None:
    same(["-c", str(config_dir), "-q", "a", f"pcre:{tmp_path}/nonexistent"])

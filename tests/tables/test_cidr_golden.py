"""Golden tests for cidr: tables against Postfix's ``postmap -q -`` (see test_regexp_golden)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tables.test_regexp_golden import check_case, check_oracle, golden_names, oracle_confdir

__all__ = ["oracle_confdir"]


@pytest.mark.parametrize("name", golden_names("cidr"))
def test_cidr_golden(name: str, tmp_path: Path) -> None:
    check_case("cidr", name, tmp_path)


@pytest.mark.parametrize("name", golden_names("cidr"))
def test_cidr_golden_oracle(name: str, tmp_path: Path, oracle_confdir: Path) -> None:
    check_oracle("cidr", name, tmp_path, oracle_confdir)

"""static: and inline: tables opened through the registry."""

from __future__ import annotations

import pytest

from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, TableConfigError
from mailhorn.tables.inline import parse_inline
from mailhorn.tables.registry import open_table


def test_static_values() -> None:
    assert open_table("static:OK", Config()).lookup("anything") == "OK"
    assert open_table("static:{ with  spaces }", Config()).lookup("x") == "with  spaces"
    assert open_table("static:{}", Config()).lookup("x") == ""


@pytest.mark.parametrize(("spec", "text"), [
    ("static:{a", "bad static:name syntax: missing '}' in \"{a\""),
    ("static:{ a }x", "bad static:name syntax: syntax error after '}' in \"{ a }x\""),
    ("static:", 'open dictionary: expecting "type:name" form instead of "static:"'),
])
def test_static_errors(spec: str, text: str) -> None:
    with pytest.raises(TableConfigError) as info:
        open_table(spec, Config())
    assert str(info.value) == text


def test_inline_lookup_and_fold() -> None:
    spec = "inline:{ Key=v1, { other = with, commas }, key=last }"
    table = open_table(spec, Config())
    assert table.lookup("KEY") == "last"
    assert table.lookup("other") == "with, commas"
    assert table.lookup("none") is None
    exact = open_table(spec, Config(), OpenOptions(fold_case=False))
    assert exact.lookup("Key") == "v1" and exact.lookup("key") == "last"


@pytest.mark.parametrize(("name", "text"), [
    ("{a}", "missing '=' after attribute name"),
    ("a=1", "bad syntax"),
    ("{}", "bad syntax"),
    ("{ {a=1}x }", "syntax error after '}' in \"{a=1}x\""),
    ("{ {} }", "no key found; expected format: key = value"),
])
def test_inline_errors(name: str, text: str) -> None:
    with pytest.raises(TableConfigError) as info:
        parse_inline(name)
    assert str(info.value) == f'{text}: "inline:{name}"; need "inline:{{name=value...}}"'

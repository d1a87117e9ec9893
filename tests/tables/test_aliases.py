"""aliases(5) parsing: names, canonical values, and delivery targets."""

from __future__ import annotations

import pytest

from mailhorn.tables.aliases import AliasTarget, alias_entries, externalize, parse_targets, tokenize


@pytest.mark.parametrize(("value", "canonical"), [
    ("a  ,  b  ", "a, b"),
    ("Joe <y @ z . com>", "Joe <y@z.com>"),
    ("a(comment)b", "a (comment) b"),
    ("a\\b c\\,d", 'ab "c,d"'),
    ('"unterminated', '"unterminated"'),
    ("(unterm", "(unterm"),
    ("<a><b>", "<a> <b>"),
    ("a,,b,", "a, , b, "),
    ('|"quoted"prog', '|"quoted" prog'),
])
def test_canonical_values(value: str, canonical: str) -> None:
    assert externalize(tokenize(value)) == canonical


def test_entries_and_warnings() -> None:
    text = 'Root: a,\n  b\n"x y": z\nbad\nr@e.com: q\nc,d: e\nempty:\n'
    warnings: list[str] = []
    entries = list(alias_entries(text, "aliases", warnings.append))
    assert [(e.line, e.name, e.value) for e in entries] == [(1, "Root", "a, b"), (3, "x y", "z")]
    assert warnings == [
        "aliases, line 4: need name:value pair",
        "aliases, line 5: name must be local",
        "aliases, line 6: need name:value pair",
        "aliases, line 7: need name:value pair",
    ]


def test_targets() -> None:
    value = 'joe, "|/usr/bin/prog arg", /var/log/file, :include:/etc/list, Joe <x@y> (c), "a b"@c, |cmd'
    assert parse_targets(value) == [
        AliasTarget("address", "joe"),
        AliasTarget("command", "/usr/bin/prog arg"),
        AliasTarget("file", "/var/log/file"),
        AliasTarget("include", "/etc/list"),
        AliasTarget("address", "x@y"),
        AliasTarget("address", "a b@c"),
        AliasTarget("command", "cmd"),
    ]

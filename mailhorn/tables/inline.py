"""``inline:{ key = value, { key = value with, commas } }`` (Postfix 3.0).

The table is written in the table name itself. Items are separated by commas
and/or whitespace; an item in braces may hold commas and spaces. Each item is
``key=value``, whitespace around both trimmed; the last setting of a key wins.
Keys are folded to lower case (unless ``postmap -f``) when the table is made
and when it is searched.

Errors (TableConfigError), each followed by ``: "inline:NAME"; need
"inline:{name=value...}"`` as Postfix prints them: ``bad syntax`` (no outer
braces, unbalanced braces, an empty table), ``missing '=' after attribute
name``, ``syntax error after '}' in "ITEM"``, ``no key found; expected format:
key = value``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
from mailhorn.tables.base import OpenOptions, TableConfigError, in_memory
from mailhorn.tables.source import check_name, fold_key, utf8_enabled


@in_memory
@dataclass
class InlineTable:
    """An in-memory table from an ``inline:{...}`` name."""

    name: str
    fold: bool
    utf8: bool
    entries: dict[str, str] = field(default_factory=dict)
    type: str = "inline"

    def lookup(self, key: str) -> str | None:
        """The value of ``key`` or None."""
        return self.entries.get(fold_key(key, self.utf8) if self.fold else key)

    def items(self) -> Iterator[tuple[str, str]]:
        """Entries in the order they were written."""
        yield from self.entries.items()


def _balanced(text: str) -> bool:
    level = 0
    for ch in text:
        if ch == "{":
            level += 1
        elif ch == "}":
            level -= 1
            if level < 0:
                return False
    return level == 0


def parse_inline(name: str) -> list[tuple[str, str]]:
    """The (key, value) pairs of an inline table name, in order."""

    def fail(what: str) -> TableConfigError:
        return TableConfigError(f'{what}: "inline:{name}"; need "inline:{{name=value...}}"')

    text = name.strip()
    if not (text.startswith("{") and text.endswith("}")) or not _balanced(text):
        raise fail("bad syntax")
    inner = text[1:-1]
    if not _balanced(inner):
        raise fail("bad syntax")
    items = split_list(inner, ", \t\r\n")
    if not items:
        raise fail("bad syntax")
    pairs: list[tuple[str, str]] = []
    for item in items:
        if item.startswith("{"):
            close = _closing(item)
            if close != len(item) - 1:
                raise fail(f"syntax error after '}}' in \"{item}\"")
            item = item[1:-1].strip()
            if not item:
                raise fail("no key found; expected format: key = value")
        key, sep, value = item.partition("=")
        if not sep:
            raise fail("missing '=' after attribute name")
        pairs.append((key.strip(), value.strip()))
    return pairs


def _closing(item: str) -> int:
    level = 0
    for i, ch in enumerate(item):
        if ch == "{":
            level += 1
        elif ch == "}":
            level -= 1
            if level == 0:
                return i
    return -1


def open_inline(name: str, config: Config, options: OpenOptions) -> InlineTable:
    """Open ``inline:{...}``."""
    check_name("inline", name)
    table = InlineTable(name, options.fold_case, utf8_enabled(config))
    for key, value in parse_inline(name):
        table.entries[fold_key(key, table.utf8) if table.fold else key] = value
    return table

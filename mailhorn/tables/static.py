"""``static:value``: a table that returns the same value for every key.

Postfix 3.0 syntax ``static:{ value with spaces }`` is accepted: the braces
and the whitespace just inside them are removed. The value may be empty
(``static:{}``); postmap(1) then warns as Postfix does.

Errors (TableConfigError, Postfix's texts): ``bad static:name syntax: missing
'}' in "{a"`` and ``bad static:name syntax: syntax error after '}' in "{ a }x"``.
The table cannot be listed (``postmap -s``) or built.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, TableConfigError, in_memory
from mailhorn.tables.source import check_name


def brace_value(text: str) -> tuple[str | None, str]:
    """Remove one ``{ ... }`` group: (inner text, error text or "")."""
    if not text.startswith("{"):
        return text, ""
    level = 0
    for i, ch in enumerate(text):
        if ch == "{":
            level += 1
        elif ch == "}":
            level -= 1
            if level == 0:
                if text[i + 1 :].strip():
                    return None, f"syntax error after '}}' in \"{text}\""
                return text[1:i].strip(), ""
    return None, f"missing '}}' in \"{text}\""


@in_memory
@dataclass(frozen=True)
class StaticTable:
    """Every lookup answers ``value``."""

    name: str
    value: str
    type: str = "static"

    def lookup(self, key: str) -> str | None:
        """The fixed value, whatever the key."""
        return self.value


def open_static(name: str, config: Config, options: OpenOptions) -> StaticTable:
    """Open ``static:name``."""
    check_name("static", name)
    value, error = brace_value(name)
    if value is None:
        raise TableConfigError(f"bad static:name syntax: {error}")
    return StaticTable(name, value)

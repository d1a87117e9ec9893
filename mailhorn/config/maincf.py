"""main.cf: reading the file and expanding ``$name`` references (postconf(5)).

Syntax, as Postfix reads it:

* a logical line starts with non-whitespace text ``name = value``; whitespace
  around ``=`` and at the end of the line is ignored;
* a line that starts with whitespace continues the logical line before it (the
  newline goes, the leading whitespace stays);
* empty lines, whitespace-only lines and lines whose first non-whitespace
  character is ``#`` are ignored, also between continuation lines; ``#``
  anywhere else is part of the value;
* the last setting of a name wins.

Values are expanded lazily, when they are used: ``$name``, ``${name}`` and
``$(name)`` insert another parameter's (expanded) value; ``${name?text}`` inserts
text when ``$name`` is non-empty, ``${name:text}`` when it is empty,
``${name?{text1}:{text2}}`` chooses (Postfix 3.0); ``$$`` is a literal ``$``.
An undefined name expands to nothing (reported through a callback, as postconf
warns). Nesting deeper than 100 calls is an error, as in Postfix's mac_expand.

Errors: :class:`ConfigError` with the file, line and parameter when the file
has a line without ``=``; :class:`MacroError` for malformed references.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from mailhorn.config.errors import ConfigError

#: Postfix's limit on nested macro expansion (mac_expand.c).
MAX_NESTING: Final = 100

_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True)
class Entry:
    """One ``name = value`` setting and where it was read."""

    name: str
    value: str
    file: str
    line: int


def parse_logical_lines(text: str) -> list[tuple[int, str]]:
    """Join physical lines into logical lines, dropping comments and blank lines.

    Returns ``(first line number, text)`` pairs. This is the ``readlline``
    convention shared by main.cf, master.cf and Postfix's table sources.
    """
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r").rstrip()
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t" and out:
            first, sofar = out[-1]
            out[-1] = (first, sofar + line)
        else:
            out.append((number, line.lstrip()))
    return out


def parse_main_cf(text: str, path: str) -> list[Entry]:
    """Parse main.cf text into entries, in file order."""
    entries: list[Entry] = []
    for number, line in parse_logical_lines(text):
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f'missing \'=\' after attribute name: "{line}"', file=path, line=number)
        if any(c.isspace() for c in name):
            raise ConfigError(f'missing \'=\' after attribute name: "{name}"', file=path, line=number)
        entries.append(Entry(name, value.strip(), path, number))
    return entries


def read_main_cf(path: str) -> list[Entry]:
    """Read and parse a main.cf file; a missing file is a configuration error."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"open {path}: {os.strerror(exc.errno or 0)}") from exc
    return parse_main_cf(text, path)


class MacroError(ConfigError):
    """A malformed ``$`` reference (truncated, empty name, nesting too deep)."""


class Expander:
    """Expands ``$name`` references against a lookup of raw (unexpanded) values.

    ``lookup(name)`` returns the raw value or ``None`` when the name is not
    defined; ``on_undefined(name)`` is told of each undefined reference.
    """

    def __init__(
        self,
        lookup: Callable[[str], str | None],
        on_undefined: Callable[[str], None] | None = None,
    ) -> None:
        self._lookup = lookup
        self._on_undefined = on_undefined

    def expand(self, text: str, depth: int = 0) -> str:
        """Return ``text`` with every reference replaced by its expanded value."""
        out: list[str] = []
        i = 0
        n = len(text)
        while i < n:
            c = text[i]
            if c != "$":
                j = text.find("$", i)
                j = n if j < 0 else j
                out.append(text[i:j])
                i = j
                continue
            i += 1
            if i >= n:
                raise MacroError(f'empty macro name: "{text}"')
            c = text[i]
            if c == "$":
                out.append("$")
                i += 1
            elif c in "{(":
                close = "}" if c == "{" else ")"
                end = _matching(text, i, c, close)
                if end < 0:
                    raise MacroError(f'truncated macro reference: "{text}"')
                out.append(self._braced(text[i + 1 : end], depth))
                i = end + 1
            elif c in _NAME_CHARS:
                j = i
                while j < n and text[j] in _NAME_CHARS:
                    j += 1
                out.append(self._value(text[i:j], depth))
                i = j
            else:
                raise MacroError(f'empty macro name: "{text}"')
        return "".join(out)

    def _value(self, name: str, depth: int) -> str:
        if depth >= MAX_NESTING:
            raise MacroError(f'unreasonable macro call nesting: "{name}"')
        raw = self._lookup(name)
        if raw is None:
            if self._on_undefined is not None:
                self._on_undefined(name)
            return ""
        return self.expand(raw, depth + 1)

    def _braced(self, inner: str, depth: int) -> str:
        """Expand the inside of ``${...}``: a name, maybe with ``?`` or ``:``."""
        if inner.startswith("{"):
            return self._compare(inner, depth)
        j = 0
        while j < len(inner) and inner[j] in _NAME_CHARS:
            j += 1
        name = inner[:j]
        rest = inner[j:].lstrip()
        if not name:
            raise MacroError(f'empty macro name: "{inner}"')
        if not rest:
            return self._value(name, depth)
        if rest[0] not in "?:":
            # Postfix takes a name with odd characters as an undefined name.
            if self._on_undefined is not None:
                self._on_undefined(inner)
            return ""
        nonempty = self._value(name, depth) != ""
        if rest[0] == ":":
            text, _ = _branches(rest[1:], allow_else=False)
            return "" if nonempty else self.expand(text, depth + 1)
        true_text, false_text = _branches(rest[1:], allow_else=True)
        return self.expand(true_text if nonempty else false_text, depth + 1)

    def _compare(self, inner: str, depth: int) -> str:
        """``${{text} OP {text} ? {true} : {false}}`` (postconf(5), Postfix 3.7 defaults).

        ``==`` and ``!=`` compare text; ``<`` ``<=`` ``>`` ``>=`` compare
        decimal numbers (text when either side is not a number); the ``level``
        forms (``<level``) compare compatibility levels such as ``3.6``. Without
        ``?`` the result is ``true`` or nothing.
        """
        left_end = _matching(inner, 0, "{", "}")
        if left_end < 0:
            raise MacroError(f'truncated macro reference: "{inner}"')
        left = self.expand(inner[1:left_end], depth + 1)
        rest = inner[left_end + 1 :].lstrip()
        op = ""
        while rest and rest[0] in "=!<>":
            op, rest = op + rest[0], rest[1:]
        if rest.startswith("level"):
            op, rest = op + "level", rest[len("level") :]
        rest = rest.lstrip()
        if op.removesuffix("level") not in _COMPARISONS or not rest.startswith("{"):
            raise MacroError(f'unknown operator at: "...{inner[:left_end + 1]}>>>{inner[left_end + 1:]}"')
        right_end = _matching(rest, 0, "{", "}")
        if right_end < 0:
            raise MacroError(f'truncated macro reference: "{inner}"')
        right = self.expand(rest[1:right_end], depth + 1)
        outcome = _compare_values(left, op, right)
        rest = rest[right_end + 1 :].lstrip()
        if not rest.strip():
            return "true" if outcome else ""
        if not rest.startswith("?"):
            raise MacroError(f'"?" expected at: "...{rest}"')
        true_text, false_text = _branches(rest[1:], allow_else=True)
        return self.expand(true_text if outcome else false_text, depth + 1)


def _branches(text: str, allow_else: bool) -> tuple[str, str]:
    """Split what follows ``?`` (or ``:``) into the texts to use when true and false.

    ``{a}`` or ``{a}:{b}`` or ``{a}:b`` or plain ``a``; the text inside the
    braces is used as it is (postconf collapses whitespace only when printing).
    """
    body = text.lstrip()
    if not body.startswith("{"):
        return text, ""
    first_end = _matching(body, 0, "{", "}")
    if first_end < 0:
        raise MacroError(f'truncated macro reference: "{text}"')
    first = body[1:first_end]
    after = body[first_end + 1 :].lstrip()
    if not after:
        return first, ""
    if not allow_else or not after.startswith(":"):
        kind = "unexpected input" if not allow_else else '":" expected'
        raise MacroError(f'{kind} at: "...{body[:first_end + 1]}>>>{after}"')
    second = after[1:]
    if not second.lstrip().startswith("{"):
        return first, second
    second = second.lstrip()
    second_end = _matching(second, 0, "{", "}")
    if second_end < 0:
        raise MacroError(f'truncated macro reference: "{text}"')
    if second[second_end + 1 :].strip():
        raise MacroError(f'unexpected input at: "...{second[:second_end + 1]}>>>{second[second_end + 1:].strip()}"')
    return first, second[1:second_end]


_COMPARISONS: Final = frozenset({"==", "!=", "<", "<=", ">", ">="})


def _level(text: str) -> tuple[int, ...]:
    """A compatibility level (``3.6``, ``2``) as a tuple of three numbers."""
    parts = [int(p) if p.isdigit() else 0 for p in text.strip().split(".")]
    return tuple((parts + [0, 0, 0])[:3])


def _compare_values(left: str, op: str, right: str) -> bool:
    """Apply a comparison operator of a ``${{a} OP {b}...}`` expression."""
    base = op.removesuffix("level")
    a: tuple[int, ...] | int | str
    b: tuple[int, ...] | int | str
    if op.endswith("level"):
        a, b = _level(left), _level(right)
    elif base in ("==", "!="):
        a, b = left, right
    elif left.strip().isdigit() and right.strip().isdigit():
        a, b = int(left), int(right)
    else:
        a, b = left, right
    if base == "==":
        return a == b
    if base == "!=":
        return a != b
    if base == "<":
        return a < b  # type: ignore[operator]
    if base == "<=":
        return a <= b  # type: ignore[operator]
    if base == ">":
        return a > b  # type: ignore[operator]
    return a >= b  # type: ignore[operator]


def _matching(text: str, start: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at ``start``, or -1."""
    level = 0
    for k in range(start, len(text)):
        ch = text[k]
        if ch == open_:
            level += 1
        elif ch == close:
            level -= 1
            if level == 0:
                return k
    return -1


def split_list(value: str, separators: str = ", \t\r\n") -> list[str]:
    """Split a list value on commas and/or whitespace, keeping ``{ ... }`` groups whole.

    Postfix 3.0 lets a list element be grouped in braces (``{ inet:host:port,
    timeout=10s }``); the group is one element with its braces kept.
    """
    items: list[str] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] in separators:
            i += 1
            continue
        j = i
        level = 0
        while j < n:
            ch = value[j]
            if ch == "{":
                level += 1
            elif ch == "}":
                level = max(0, level - 1)
            elif level == 0 and ch in separators:
                break
            j += 1
        items.append(value[i:j])
        i = j
    return items


def strip_braces(item: str) -> str:
    """Remove one pair of grouping braces and the whitespace inside them."""
    if item.startswith("{") and item.endswith("}"):
        return item[1:-1].strip()
    return item


def last_wins(entries: Iterable[Entry]) -> dict[str, Entry]:
    """Map each name to its last setting, keeping first-seen order of names."""
    result: dict[str, Entry] = {}
    for entry in entries:
        result[entry.name] = entry
    return result

"""Reading Postfix table source files, and lookup-key case folding.

A table source (the input of postmap(1), texthash:, and the files behind
hash:/btree:) is read as Postfix's readllines() reads it:

* a line that starts with whitespace continues the logical line before it;
  the newline goes, the leading whitespace stays;
* empty lines, whitespace-only lines and lines whose first non-whitespace
  character is ``#`` are ignored, also between continuation lines;
* a continuation line with no logical line to continue is dropped with the
  warning ``FILE: logical line must not start with whitespace: "TEXT"``.

A logical line of a postmap source is ``key whitespace value``: the key ends
at the first whitespace, the value is the rest with surrounding whitespace
removed. A line without a value is skipped with ``FILE, line N: expected
format: key whitespace value``; the line number is that of the first physical
line. Double quotes in a key protect whitespace (``"a b" value``); an
unbalanced quote skips the line with ``unbalanced '"' in 'LINE' -- ignoring
this line``.

Bytes that are not UTF-8 survive as surrogate escapes so that keys and values
go out exactly as they came in.

Folding (postmap(1) ``-f``, Postfix's DICT_FLAG_FOLD_FIX): fixed-string tables
lower-case keys when they are built and when they are searched. With
``smtputf8_enable = yes`` a non-ASCII key is case-folded as Unicode
(Postfix's UTF-8 casefold); otherwise only ASCII letters change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.tables.base import TableConfigError

Warn = Callable[[str], None]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class LogicalLine:
    """One logical line of a source file and the number of its first line."""

    line: int
    text: str


@dataclass(frozen=True)
class SourceEntry:
    """One ``key value`` pair of a postmap source."""

    line: int
    key: str
    value: str


def read_text(path: str) -> str:
    """The text of a source file; raises OSError as ``open`` does."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return f.read()


def open_error(path: str, exc: OSError) -> str:
    """Postfix's text for a file that cannot be opened: ``open PATH: REASON``."""
    return f"open {path}: {os.strerror(exc.errno or 0)}"


def logical_lines(text: str, path: str, warn: Warn) -> Iterator[LogicalLine]:
    """Join physical lines into logical lines (Postfix's readllines)."""
    first = 0
    parts: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            if parts:
                parts.append(line.rstrip())
                continue
            shown = line if len(line) <= 30 else line[:30] + "..."
            warn(f'{path}: logical line must not start with whitespace: "{shown}"')
            continue
        if parts:
            yield LogicalLine(first, "".join(parts))
        first, parts = number, [line.rstrip()]
    if parts:
        yield LogicalLine(first, "".join(parts))


def split_entry(line: LogicalLine) -> SourceEntry | str:
    """Split ``key whitespace value``, or say what is wrong with the line.

    Whitespace inside double quotes does not end the key (the quotes stay part
    of it; a backslash inside quotes protects the next character), as in
    Postfix 3.x postmap.
    """
    text = line.text
    end, quoted = 0, False
    while end < len(text):
        ch = text[end]
        if quoted and ch == "\\" and end + 1 < len(text):
            end += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in " \t\r\n":
            break
        end += 1
    if quoted:
        return f"unbalanced '\"' in '{text}'"
    value = text[end:].strip(" \t\r\n")
    if not value:
        return "expected format: key whitespace value"
    return SourceEntry(line.line, text[:end], value)


def source_entries(text: str, path: str, warn: Warn, ignoring: bool = False) -> Iterator[SourceEntry]:
    """The ``key value`` entries of postmap source text, warning about bad lines.

    ``ignoring`` adds texthash's `` -- ignoring this line`` to the format warning.
    """
    for line in logical_lines(text, path, warn):
        entry = split_entry(line)
        if isinstance(entry, str):
            suffix = " -- ignoring this line" if ignoring or entry.startswith("unbalanced") else ""
            warn(f"{path}, line {line.line}: {entry}{suffix}")
            continue
        yield entry


def fold_key(key: str, utf8: bool) -> str:
    """Lower-case a lookup key as Postfix folds fixed-string keys."""
    if utf8 and not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return key.translate(_ASCII_LOWER)
        return key.casefold()
    return key.translate(_ASCII_LOWER)


def utf8_enabled(config: Config) -> bool:
    """Whether ``smtputf8_enable`` is on (its default follows compatibility_level)."""
    return config.bool("smtputf8_enable")


def check_name(kind: str, name: str) -> None:
    """Reject an empty table name as Postfix's dict_open does."""
    if not name:
        raise TableConfigError(f'open dictionary: expecting "type:name" form instead of "{kind}:"')

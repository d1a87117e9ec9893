"""Reading the source text of pattern tables (regexp:, pcre:, cidr:).

Pattern tables are read once, when they are opened, from either a file or an
inline specification (Postfix 3.7, regexp_table(5) INLINE SPECIFICATION):

* a file is split into logical lines the way Postfix's readlline() does: empty
  and whitespace-only lines and lines whose first non-whitespace character is
  ``#`` are ignored (also between continuation lines); a line that starts with
  whitespace continues the logical line before it (the newline goes, the
  leading whitespace stays); trailing whitespace, including a CR, is dropped.
  A logical line that would start with whitespace (the first line of the file)
  is reported and ignored:
  ``FILE: logical line must not start with whitespace: "TEXT..."``.
* a name of the form ``{ {rule-1}, {rule-2} ... }`` is the table itself: each
  rule, with whitespace after ``{`` and before ``}`` dropped, is one line.

Text is decoded as UTF-8 with surrogate escapes so that any byte survives and
can be matched as a byte (Postfix matches bytes in the C locale).

Errors: :class:`TableConfigError` ``open FILE: REASON`` when the file cannot be
read; ``TYPE map: missing '}' in "NAME"``, ``TYPE map: no '{' at start of text
in "TOKEN"`` and ``TYPE map: syntax error after '}' in "TOKEN"`` for a
malformed inline specification (Postfix stops with a fatal error on each).
"""

from __future__ import annotations

import os

from mailhorn import log
from mailhorn.tables.base import TableConfigError

#: How many characters of an offending line Postfix quotes (``%.30s...``).
QUOTE_LIMIT = 30

_SPACE = " \t\r\n\v\f"


def is_inline(name: str) -> bool:
    """Whether a table name is an inline ``{ {rule} ... }`` specification."""
    return name.startswith("{")


def logical_lines(text: str, source: str) -> list[tuple[int, str]]:
    """Join ``text`` into (first line number, logical line) pairs as readlline() does.

    ``source`` names the file in the warning about a leading-whitespace line.
    """
    out: list[tuple[int, str]] = []
    current: list[str] | None = None
    start = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip(_SPACE)
        stripped = line.lstrip(_SPACE)
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in _SPACE:
            if current is not None:
                current.append(line)
                continue
            quoted = line if len(line) <= QUOTE_LIMIT else line[:QUOTE_LIMIT] + "..."
            log.warning(f'{source}: logical line must not start with whitespace: "{quoted}"')
            continue
        if current is not None:
            out.append((start, "".join(current)))
        current = [line]
        start = number
    if current is not None:
        out.append((start, "".join(current)))
    return out


def inline_rules(name: str, kind: str) -> list[tuple[int, str]]:
    """The rules of an inline ``{ {rule-1}, {rule-2} }`` table, numbered from 1."""
    inner = _strip_braces(name, kind)
    rules: list[tuple[int, str]] = []
    for token in _tokens(inner):
        if not token.startswith("{"):
            raise TableConfigError(f"{kind} map: no '{{' at start of text in \"{token}\"")
        end = _matching_brace(token, 0)
        if end is None:
            raise TableConfigError(f"{kind} map: missing '}}' in \"{token}\"")
        if end != len(token) - 1:
            raise TableConfigError(f"{kind} map: syntax error after '}}' in \"{token}\"")
        rules.append((len(rules) + 1, token[1:-1].strip(_SPACE)))
    return rules


def read_source(name: str, kind: str) -> list[tuple[int, str]]:
    """The numbered logical lines of table ``kind:name`` (file or inline)."""
    if is_inline(name):
        return inline_rules(name, kind)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise TableConfigError(f"open {name}: {os.strerror(exc.errno or 0)}") from exc
    return logical_lines(data.decode("utf-8", "surrogateescape"), name)


def _strip_braces(name: str, kind: str) -> str:
    end = _matching_brace(name, 0)
    if end is None or name[end + 1 :].strip(_SPACE):
        raise TableConfigError(f"{kind} map: missing '}}' in \"{name}\"")
    return name[1:end]


def _matching_brace(text: str, start: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``start``, or None."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _tokens(text: str) -> list[str]:
    """Split at top-level commas and whitespace; braces group text."""
    tokens: list[str] = []
    buf: list[str] = []
    depth = 0
    for c in text:
        if depth == 0 and (c in _SPACE or c == ","):
            if buf:
                tokens.append("".join(buf))
                buf = []
            continue
        if c == "{":
            depth += 1
        elif c == "}" and depth > 0:
            depth -= 1
        buf.append(c)
    if buf:
        tokens.append("".join(buf))
    return tokens

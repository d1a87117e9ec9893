"""aliases(5): parsing alias source files for postalias(1) and newaliases.

Syntax: ``name: value, value, ...`` with the source conventions of
:mod:`mailhorn.tables.source` (continuation lines, ``#`` comments). Both sides
are read as RFC 822 tokens (atoms, ``"quoted strings"``, ``(comments)``,
``[domain literals]`` and the operators ``()<>@,;:\\".[]!%|``), as Postfix's
postalias does:

* the name is everything before the first ``:`` operator, unquoted
  (``"a b": x`` names ``a b``); a name with ``,`` or without a value gives
  ``FILE, line N: need name:value pair``, a name with an ``@`` or ``%``
  operator gives ``FILE, line N: name must be local``; such lines are skipped;
* the value is stored re-written in a canonical form: one space after each
  comma, one space between adjacent words and before ``<``, no space around
  other operators, atoms quoted when escapes put specials in them
  (``a  ,  b`` is stored as ``a, b``).

:func:`parse_targets` turns a stored value into :class:`AliasTarget` values
(address, ``/file``, ``|command``, ``:include:/file``) for local delivery.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from mailhorn.tables.source import Warn, logical_lines

#: RFC 822 operators as Postfix's tokenizer splits them (it adds ``!%|``).
OPERATORS = frozenset('()<>@,;:\\".[]!%|')

#: Token kinds; operators are their own character.
ATOM, QSTRING, COMMENT, DOMLIT = "atom", "qstring", "comment", "domlit"
_WORDS = frozenset({ATOM, QSTRING, COMMENT, DOMLIT})


@dataclass(frozen=True)
class Token:
    """One RFC 822 token: ``kind`` is a word kind or the operator character."""

    kind: str
    text: str


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into RFC 822 tokens, tolerating unterminated constructs."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            # A comment keeps its raw text, nested parentheses and escapes.
            level, j = 0, i
            while j < n:
                c = text[j]
                if c == "\\" and j + 1 < n:
                    j += 2
                    continue
                if c == "(":
                    level += 1
                elif c == ")":
                    level -= 1
                    if level == 0:
                        j += 1
                        break
                j += 1
            tokens.append(Token(COMMENT, text[i:j]))
            i = j
        elif ch in '"[':
            close = '"' if ch == '"' else "]"
            out: list[str] = []
            j = i + 1
            while j < n and text[j] != close:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                out.append(text[j])
                j += 1
            tokens.append(Token(QSTRING if ch == '"' else DOMLIT, "".join(out)))
            i = j + 1
        elif ch in OPERATORS and ch != "\\":
            tokens.append(Token(ch, ch))
            i += 1
        else:
            out = []
            j = i
            while j < n:
                c = text[j]
                if c == "\\":
                    if j + 1 < n:
                        out.append(text[j + 1])
                    j += 2
                    continue
                if c.isspace() or c in OPERATORS:
                    break
                out.append(c)
                j += 1
            if out:
                tokens.append(Token(ATOM, "".join(out)))
            i = j
    return tokens


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _word(token: Token, quoted: bool) -> str:
    if token.kind == QSTRING:
        return _quote(token.text) if quoted else token.text
    if token.kind == ATOM:
        if quoted and any(c in OPERATORS or c.isspace() for c in token.text):
            return _quote(token.text)
        return token.text
    if token.kind == DOMLIT:
        return f"[{token.text}]"
    return token.text


def externalize(tokens: list[Token], quoted: bool = True) -> str:
    """Tokens as text in Postfix's canonical spacing; ``quoted=False`` unquotes words."""
    out: list[str] = []
    for index, token in enumerate(tokens):
        out.append(_word(token, quoted))
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.kind == ",":
            out.append(" ")
        elif after is not None and (after.kind == "<" or (token.kind in _WORDS and after.kind in _WORDS)):
            out.append(" ")
    return "".join(out)


@dataclass(frozen=True)
class AliasEntry:
    """One ``name: value`` line: the unquoted name and the canonical value."""

    line: int
    name: str
    value: str


def parse_alias_line(text: str) -> tuple[str, str] | str:
    """(name, value) of one logical line, or the warning text without location."""
    tokens = tokenize(text)
    colon = next((i for i, t in enumerate(tokens) if t.kind == ":"), -1)
    if colon <= 0 or colon == len(tokens) - 1:
        return "need name:value pair"
    name_tokens = tokens[:colon]
    if any(t.kind == "," for t in name_tokens):
        return "need name:value pair"
    if any(t.kind in "@%" for t in name_tokens):
        return "name must be local"
    return externalize(name_tokens, quoted=False), externalize(tokens[colon + 1 :])


def alias_entries(text: str, path: str, warn: Warn) -> Iterator[AliasEntry]:
    """The entries of an aliases(5) source, warning about bad lines."""
    for line in logical_lines(text, path, warn):
        parsed = parse_alias_line(line.text)
        if isinstance(parsed, str):
            warn(f"{path}, line {line.line}: {parsed}")
            continue
        yield AliasEntry(line.line, parsed[0], parsed[1])


TargetKind = Literal["address", "file", "command", "include"]


@dataclass(frozen=True)
class AliasTarget:
    """One destination of an alias, as local(8) delivers it.

    ``address``: a mail address in internal (unquoted) form; ``file``: an absolute path
    to append to; ``command``: a shell command (``text`` without the ``|``);
    ``include``: the path of a ``:include:`` list.
    """

    kind: TargetKind
    text: str


def _target(tokens: list[Token]) -> AliasTarget | None:
    words = [t for t in tokens if t.kind != COMMENT]
    if "<" in [t.kind for t in words] and ">" in [t.kind for t in words]:
        # A route address "Name <addr>": the address is inside the brackets.
        start = [t.kind for t in words].index("<")
        end = len(words) - 1 - [t.kind for t in reversed(words)].index(">")
        words = words[start + 1 : end]
    text = externalize(words, quoted=False).strip()
    if not text:
        return None
    if text.startswith("|"):
        return AliasTarget("command", text[1:])
    if text.startswith("/"):
        return AliasTarget("file", text)
    if text[:9].lower() == ":include:":
        return AliasTarget("include", text[9:].strip())
    return AliasTarget("address", text)


def parse_targets(value: str) -> list[AliasTarget]:
    """The destinations in an alias value, in order (empty elements dropped)."""
    targets: list[AliasTarget] = []
    group: list[Token] = []
    for token in tokenize(value) + [Token(",", ",")]:
        if token.kind == ",":
            target = _target(group)
            if target is not None:
                targets.append(target)
            group = []
        else:
            group.append(token)
    return targets

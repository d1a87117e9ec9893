"""Parsing the rules of regexp: and pcre: tables (regexp_table(5), pcre_table(5)).

A logical line is one of:

* ``/pattern/flags result`` or ``!/pattern/flags result`` (any number of
  ``!``, each may be followed by whitespace; each toggles the negation). The
  delimiter is the first character; inside the pattern a backslash protects
  the next character (and stays in the pattern). Flags are the characters up
  to the first whitespace, each toggles one option; the result is the rest
  of the line after whitespace.
* ``if /pattern/flags`` / ``if !/pattern/flags`` ... ``endif`` (case
  insensitive keywords, nesting allowed);
* anything starting with a letter or digit that is not ``if``/``endif``:
  warned about and ignored.

The result may hold ``$1``..``$N``, ``${N}``, ``$(N)`` (the text matched by
group N) and ``$$`` (a dollar sign).

Every problem is a warning that skips the rule, as in Postfix, worded as
Postfix words it (``regexp map FILE, line N: ...``). The caller supplies how
a pattern is compiled; compile errors come back as the warning text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from mailhorn import log

#: A compiled pattern object (the table type decides what it is).
P = TypeVar("P")

_SPACE = " \t\r\n\v\f"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

#: A substitution template: literal text and group numbers, in order.
Template = tuple[str | int, ...]


class RuleError(Exception):
    """A rule is skipped; the message is the rest of Postfix's warning."""


@dataclass(frozen=True)
class Dialect(Generic[P]):
    """What differs between regexp: and pcre: rule parsing.

    ``compile(pattern, flags)`` returns (compiled, number of groups) or
    raises RuleError; ``default_flags`` is the initial option set and
    ``known_flags`` the flag letters accepted.
    """

    kind: str
    compile: Callable[[str, frozenset[str]], tuple[P, int]]
    known_flags: str
    default_flags: frozenset[str]
    #: wording of Postfix's warnings, which differs between the two types
    no_delimiter: str
    zero_index: str
    obsolete_flags: str = ""


@dataclass(frozen=True)
class MatchRule(Generic[P]):
    """``/pattern/flags result`` (``negate`` for ``!/pattern/``)."""

    line: int
    pattern: P
    negate: bool
    template: Template


@dataclass(frozen=True)
class IfRule(Generic[P]):
    """``if /pattern/``: rules up to ``end`` (an index) apply when it matches."""

    line: int
    pattern: P
    negate: bool
    end: int


Rule = MatchRule[P] | IfRule[P]


def is_alnum(c: str) -> bool:
    """ASCII letter or digit (the C locale's isalnum)."""
    return c.isascii() and c.isalnum()


def _keyword(text: str, word: str) -> bool:
    return text[: len(word)].lower() == word and (len(text) == len(word) or not is_alnum(text[len(word)]))


class RuleParser(Generic[P]):
    """Turns numbered logical lines into a flat rule list with IF jumps."""

    def __init__(self, dialect: Dialect[P], name: str) -> None:
        self.dialect = dialect
        self.name = name
        self.rules: list[MatchRule[P] | IfRule[P]] = []
        #: open IFs: (index in rules, line number)
        self.open_ifs: list[tuple[int, int]] = []

    def warn(self, line: int, text: str) -> None:
        log.warning(f"{self.dialect.kind} map {self.name}, line {line}: {text}")

    def parse(self, lines: list[tuple[int, str]]) -> list[MatchRule[P] | IfRule[P]]:
        for number, text in lines:
            try:
                self.parse_line(number, text)
            except RuleError as exc:
                self.warn(number, str(exc))
        while self.open_ifs:
            index, number = self.open_ifs.pop()
            self.warn(number, "IF has no matching ENDIF")
            self._close(index)
        return self.rules

    def _close(self, index: int) -> None:
        rule = self.rules[index]
        assert isinstance(rule, IfRule)
        self.rules[index] = IfRule(rule.line, rule.pattern, rule.negate, len(self.rules))

    def parse_line(self, number: int, text: str) -> None:
        if not is_alnum(text[0]):
            self.match_rule(number, text)
        elif _keyword(text, "if"):
            self.if_rule(number, text[2:].lstrip(_SPACE))
        elif _keyword(text, "endif"):
            if not self.open_ifs:
                self.warn(number, "ignoring ENDIF without matching IF")
                return
            if text[5:].strip(_SPACE):
                self.warn(number, "ignoring extra text after ENDIF")
            index, _ = self.open_ifs.pop()
            self._close(index)
        else:
            self.warn(number, "ignoring unrecognized request")

    def if_rule(self, number: int, text: str) -> None:
        negate, pattern, flags, rest = self.pattern_part(number, text)
        compiled, _ = self.dialect.compile(pattern, flags)
        if rest:
            self.warn(number, f'ignoring extra text after IF statement: "{rest}"')
            self.warn(number, "do not prepend whitespace to statements between IF and ENDIF")
        self.open_ifs.append((len(self.rules), number))
        self.rules.append(IfRule(number, compiled, negate, -1))

    def match_rule(self, number: int, text: str) -> None:
        negate, pattern, flags, rest = self.pattern_part(number, text)
        if not rest:
            self.warn(number, "no replacement text: using empty string")
        template = self.parse_template(number, rest)
        if negate and any(isinstance(part, int) for part in template):
            raise RuleError("$number found in negative match replacement text: skipping this rule")
        compiled, groups = self.dialect.compile(pattern, flags)
        highest = max((part for part in template if isinstance(part, int)), default=0)
        if highest > groups:
            raise RuleError(f'out of range replacement index "{highest}": skipping this rule')
        self.rules.append(MatchRule(number, compiled, negate, template))

    def pattern_part(self, number: int, text: str) -> tuple[bool, str, frozenset[str], str]:
        """Split ``[!]/pattern/flags rest`` into its parts."""
        negate = False
        p = text
        while p.startswith("!"):
            negate = not negate
            p = p[1:].lstrip(_SPACE)
        if not p:
            raise RuleError("no regexp: skipping this rule")
        delim = p[0]
        i = 1
        while i < len(p):
            if p[i] == "\\" and i + 1 < len(p):
                i += 2
                continue
            if p[i] == delim:
                break
            i += 1
        else:
            raise RuleError(f'no closing regexp delimiter "{delim}": {self.dialect.no_delimiter}')
        pattern = p[1:i]
        flags = set(self.dialect.default_flags)
        j = i + 1
        while j < len(p) and p[j] not in _SPACE:
            c = p[j]
            if c in self.dialect.obsolete_flags:
                self.warn(number, f'ignoring obsolete regexp option "{c}"')
            elif c in self.dialect.known_flags:
                flags ^= {c}
            else:
                raise RuleError(f'unknown regexp option "{c}": skipping this rule')
            j += 1
        return negate, pattern, frozenset(flags), p[j:].lstrip(_SPACE)

    def parse_template(self, number: int, text: str) -> Template:
        """Parse ``$N`` references the way Postfix's mac_parse() does."""
        parts: list[str | int] = []
        literal: list[str] = []
        i = 0
        while i < len(text):
            c = text[i]
            if c != "$":
                literal.append(c)
                i += 1
                continue
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt == "$":
                literal.append("$")
                i += 2
                continue
            if nxt in ("{", "("):
                close = "}" if nxt == "{" else ")"
                depth = 0
                j = i + 1
                end = -1
                while j < len(text):
                    if text[j] == nxt:
                        depth += 1
                    elif text[j] == close:
                        depth -= 1
                        if depth == 0:
                            end = j
                            break
                    j += 1
                if end < 0:
                    log.warning(f'truncated macro reference: "{text}"')
                    raise RuleError("bad replacement syntax: skipping this rule")
                name = text[i + 2 : end]
                i = end + 1
            else:
                j = i + 1
                while j < len(text) and text[j] in _NAME_CHARS:
                    j += 1
                name = text[i + 1 : j]
                i = j
            if not name:
                log.warning(f'empty macro name: "{text}"')
                raise RuleError("bad replacement syntax: skipping this rule")
            if not (name.isascii() and name.isdigit()):
                self.warn(number, f'non-numeric replacement index "{name}"')
                raise RuleError("bad replacement syntax: skipping this rule")
            index = int(name)
            if index == 0:
                self.warn(number, f'{self.dialect.zero_index} replacement index "0"')
                raise RuleError("bad replacement syntax: skipping this rule")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(index)
        if literal:
            parts.append("".join(literal))
        return tuple(parts)

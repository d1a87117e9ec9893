"""regexp: and pcre: tables (regexp_table(5), pcre_table(5)).

The table file (or inline ``{ {rule} ... }`` text) is read and compiled once,
when the table is opened. A lookup tries the rules in order against the whole
key, unchanged (patterns decide about case), and returns the first match's
result with ``$N`` replaced by the text of group N (empty when the group did
not take part in the match). ``if /pattern/`` ... ``endif`` blocks apply only
when the key matches (``if !/pattern/``: does not match).

regexp: patterns are POSIX regular expressions (see :mod:`mailhorn.tables.ere`),
flags ``i`` (case-insensitive, on by default), ``x`` (extended syntax, on by
default; off means basic syntax) and ``m`` (REG_NEWLINE). pcre: patterns are
Perl-compatible (see :mod:`mailhorn.tables.pcre_syntax`), flags ``i`` (on),
``m``, ``s`` (on), ``x``, ``A``, ``E``, ``U``; ``X`` is obsolete and ignored
with a warning, as with PCRE2. Matching is done on bytes (the key in UTF-8),
as Postfix does in the C locale.

Parameters read: none.

Errors: a rule Postfix would skip is skipped with Postfix's warning (file and
line); a missing file or bad inline text raises :class:`TableConfigError`; a
match that runs longer than :data:`MATCH_TIMEOUT` seconds (a pathological
pattern) raises :class:`TableRetry`. An empty result (``/x/`` with no
text, or an empty ``$1``) is returned as ``""``, as Postfix returns it.
"""

from __future__ import annotations

from typing import Any

import regex  # type: ignore[import-untyped]

from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, TableRetry, in_memory
from mailhorn.tables.ere import PosixRegexError, translate
from mailhorn.tables.pattern_source import read_source
from mailhorn.tables.pcre_syntax import adapt, error_text
from mailhorn.tables.regexp_parse import Dialect, IfRule, MatchRule, RuleError, RuleParser, Template

#: Seconds one pattern may spend on one key before the lookup fails
#: temporarily; Postfix has no such limit, but a catastrophic pattern must not
#: stall a server.
MATCH_TIMEOUT = 1.0

Pattern = Any  # a compiled ``regex`` pattern; the module ships no type hints


class CompiledPattern:
    """A compiled pattern and how to apply it (``anchored``: pcre flag ``A``)."""

    def __init__(self, compiled: Pattern, anchored: bool = False) -> None:
        self.compiled = compiled
        self.anchored = anchored

    def search(self, subject: bytes) -> Any:
        """The match object or None; TableRetry when the match takes too long."""
        try:
            if self.anchored:
                return self.compiled.match(subject, timeout=MATCH_TIMEOUT)
            return self.compiled.search(subject, timeout=MATCH_TIMEOUT)
        except TimeoutError as exc:
            raise TableRetry(f"pattern match timed out after {MATCH_TIMEOUT}s: {self.compiled.pattern!r}") from exc


def _source_bytes(pattern: str) -> bytes:
    return pattern.encode("utf-8", "surrogateescape")


def compile_regexp(pattern: str, flags: frozenset[str]) -> tuple[CompiledPattern, int]:
    """Compile a regexp: pattern with flags ``i`` ``x`` ``m`` (regcomp semantics)."""
    try:
        result = translate(_source_bytes(pattern), extended="x" in flags, icase="i" in flags, newline="m" in flags)
    except PosixRegexError as exc:
        raise RuleError(str(exc)) from exc
    options = regex.V0 | regex.POSIX
    if "i" in flags:
        options |= regex.IGNORECASE
    if "m" in flags:
        options |= regex.MULTILINE
    return CompiledPattern(regex.compile(result.pattern, options)), result.groups


def compile_pcre(pattern: str, flags: frozenset[str]) -> tuple[CompiledPattern, int]:
    """Compile a pcre: pattern with flags ``i m s x A E U`` (PCRE2 semantics)."""
    text = _source_bytes(pattern).decode("latin-1")
    source = adapt(text, ungreedy="U" in flags, dollar_endonly="E" in flags and "m" not in flags,
                   extended="x" in flags)
    options = regex.V0
    for flag, option in (("i", regex.IGNORECASE), ("m", regex.MULTILINE), ("s", regex.DOTALL), ("x", regex.VERBOSE)):
        if flag in flags:
            options |= option
    try:
        compiled = regex.compile(source.encode("latin-1"), options)
    except regex.error as exc:
        raise RuleError(error_text(exc.msg, exc.pos, text)) from exc
    except (ValueError, OverflowError) as exc:
        raise RuleError(f"error in regex at offset 0: {exc}") from exc
    return CompiledPattern(compiled, anchored="A" in flags), int(compiled.groups)


REGEXP = Dialect[CompiledPattern](
    kind="regexp", compile=compile_regexp, known_flags="ixm", default_flags=frozenset("ix"),
    no_delimiter="skipping this rule", zero_index="out-of-range",
)
PCRE = Dialect[CompiledPattern](
    kind="pcre", compile=compile_pcre, known_flags="imsxAEU", default_flags=frozenset("is"),
    no_delimiter="ignoring this rule", zero_index="out of range", obsolete_flags="X",
)


@in_memory
class PatternTable:
    """An opened regexp: or pcre: table."""

    def __init__(self, dialect: Dialect[CompiledPattern], name: str) -> None:
        self._type = dialect.kind
        self._name = name
        lines = read_source(name, dialect.kind)
        self.rules = RuleParser(dialect, name).parse(lines)

    @property
    def type(self) -> str:
        return self._type

    @property
    def name(self) -> str:
        return self._name

    def lookup(self, key: str) -> str | None:
        """The first matching rule's result, or None."""
        subject = key.encode("utf-8", "surrogateescape")
        rules = self.rules
        i = 0
        while i < len(rules):
            rule = rules[i]
            found = rule.pattern.search(subject)
            if isinstance(rule, IfRule):
                i = i + 1 if (found is None) == rule.negate else rule.end
                continue
            i += 1
            if (found is None) != rule.negate:
                continue
            # An empty result is returned as such; the generic lookup layer
            # (postmap's, as Postfix's dict layer) warns about it.
            return _substitute(rule.template, found)
        return None


def _substitute(template: Template, found: Any) -> str:
    parts: list[str] = []
    for part in template:
        if isinstance(part, int):
            group = found.group(part)
            if group:
                parts.append(group.decode("utf-8", "surrogateescape"))
        else:
            parts.append(part)
    return "".join(parts)


def open_regexp(name: str, config: Config, options: OpenOptions) -> PatternTable:
    """Open ``regexp:name``: read and compile the table now."""
    return PatternTable(REGEXP, name)


def open_pcre(name: str, config: Config, options: OpenOptions) -> PatternTable:
    """Open ``pcre:name``: read and compile the table now."""
    return PatternTable(PCRE, name)


__all__ = ["MATCH_TIMEOUT", "PatternTable", "open_pcre", "open_regexp", "MatchRule", "IfRule"]

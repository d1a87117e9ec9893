"""POSIX regular expressions (regcomp(3)) translated for the ``regex`` module.

regexp: tables hold POSIX extended regular expressions (ERE), or basic ones
(BRE) when the ``x`` flag turns REG_EXTENDED off (regexp_table(5)). Postfix
hands them to the C library's regcomp() in the C locale, so patterns and keys
are byte strings and only ASCII letters have a case. :func:`translate` turns
such a pattern into an equivalent ``regex`` pattern (bytes, V0 syntax) that is
compiled with ``regex.POSIX`` for POSIX's leftmost-longest overall match.

What is translated, following the GNU C library that the real Postfix uses:

* ERE: ``( ) | * + ? {m,n}`` (also ``{,n}``), ``^ $`` as anchors anywhere;
  ``*+?{`` at the start of an expression, group or alternative is an error;
  an unmatched ``)`` is an ordinary character; repeated quantifiers
  (``a**``, ``a{1}{2}``) apply to what they follow.
* BRE: ``\\( \\) \\{m,n\\}``, the GNU operators ``\\+ \\? \\|``; ``*`` is
  ordinary at the start; ``^``/``$`` are anchors only at the start/end of an
  expression, group or alternative; ``+ ? | ( ) { }`` are ordinary.
* Both: bracket expressions with ranges, ``[:class:]``, one-character
  ``[=c=]`` and ``[.c.]``, ``]`` first is ordinary, no backslash escapes
  inside; ``\\1``-``\\9`` back references to closed groups; the GNU escapes
  ``\\w \\W \\s \\S \\b \\B \\< \\> \\` \\'``; any other escaped character
  is ordinary.
* REG_ICASE (on by default in regexp: tables): the C library compares an
  upper-cased subject, and an escaped character is compared as written, so
  ``\\a`` never matches while ``\\A`` matches ``a`` and ``A``; a range is
  checked with upper-cased end points (``[Z-a]`` is an error).
* REG_NEWLINE (flag ``m``): ``.`` and ``[^...]`` do not match a newline and
  ``^``/``$`` also match next to one; without it they match only at the ends.

Known difference: where several longest matches exist, sub-expression
captures follow the ``regex`` module's POSIX mode, which agrees with the C
library in the common cases (``(a|ab)(c|bcd)(d*)``) but is not proven equal in
every case.

Errors: :class:`PosixRegexError` carrying the C library's regerror() text
(``Unmatched ( or \\(``, ``Invalid preceding regular expression``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: RE_DUP_MAX of the C library: larger interval counts are "too big".
DUP_MAX = 0x7FFF

CLASSES = frozenset(
    ["alpha", "upper", "lower", "digit", "xdigit", "space", "print", "punct", "graph", "cntrl", "blank", "alnum"]
)

E_PAREN = "Unmatched ( or \\("
E_RPAREN = "Unmatched ) or \\)"
E_BRACK = "Unmatched [, [^, [:, [., or [="
E_BRACE = "Unmatched \\{"
E_BADBR = "Invalid content of \\{\\}"
E_BADRPT = "Invalid preceding regular expression"
E_RANGE = "Invalid range end"
E_CTYPE = "Invalid character class name"
E_COLLATE = "Invalid collation character"
E_SUBREG = "Invalid back reference"
E_ESIZE = "Regular expression too big"
E_ESCAPE = "Trailing backslash"

_WORD = r"[0-9A-Za-z_]"
_NOT_WORD = r"[^0-9A-Za-z_]"


class PosixRegexError(Exception):
    """A pattern regcomp() would refuse; the message is regerror()'s text."""


@dataclass(frozen=True)
class Translation:
    """A translated pattern: ``regex`` source text and its number of groups."""

    pattern: bytes
    groups: int


@dataclass
class _Level:
    """One open group (or the whole expression) being translated."""

    alternatives: list[list[str]] = field(default_factory=lambda: [[]])
    #: whether the last item of the current alternative may take a quantifier
    quantifiable: list[bool] = field(default_factory=lambda: [False])
    number: int = 0

    @property
    def items(self) -> list[str]:
        return self.alternatives[-1]


def _literal(c: str) -> str:
    """A ``regex`` expression matching the single byte ``c`` (latin-1 text)."""
    if c.isascii() and c.isalnum():
        return c
    return f"\\x{ord(c):02x}"


def _set_member(c: str) -> str:
    return f"\\x{ord(c):02x}"


class _Translator:
    def __init__(self, text: str, extended: bool, icase: bool, newline: bool) -> None:
        self.s = text
        self.i = 0
        self.extended = extended
        self.icase = icase
        self.newline = newline
        self.stack: list[_Level] = [_Level()]
        self.groups = 0
        self.closed: set[int] = set()

    # -- helpers ---------------------------------------------------------
    @property
    def level(self) -> _Level:
        return self.stack[-1]

    def at_start(self) -> bool:
        """At the start of the expression, a group or an alternative."""
        return not self.level.items

    def add(self, expr: str, quantifiable: bool = True) -> None:
        self.level.items.append(expr)
        self.level.quantifiable[-1] = quantifiable

    def quantify(self, suffix: str) -> None:
        items = self.level.items
        if not items or not self.level.quantifiable[-1]:
            raise PosixRegexError(E_BADRPT)
        items[-1] = f"(?:{items[-1]}){suffix}"

    def bre_literal_star(self) -> bool:
        """In a BRE, ``*`` is ordinary at the start of an expression (or after ``^``)."""
        return self.at_start() or (self.level.items == ["^"] or self.level.items[-1:] == [self.anchor_start()])

    def anchor_start(self) -> str:
        return "^" if self.newline else r"\A"

    def anchor_end(self) -> str:
        return "$" if self.newline else r"\Z"

    # -- main loop -------------------------------------------------------
    def run(self) -> Translation:
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            self.i += 1
            if c == "\\":
                self.escape()
            elif c == "[":
                self.add(self.bracket())
            elif c == ".":
                self.add("." if self.newline else r"(?s:.)")
            elif c == "*":
                if not self.extended and self.bre_literal_star():
                    self.add(_literal("*"))
                elif self.extended and self.at_start():
                    raise PosixRegexError(E_BADRPT)
                else:
                    self.quantify("*")
            elif self.extended and c in "+?":
                if self.at_start():
                    raise PosixRegexError(E_BADRPT)
                self.quantify(c)
            elif self.extended and c == "{":
                if self.at_start():
                    raise PosixRegexError(E_BADRPT)
                self.quantify(self.interval("}"))
            elif self.extended and c == "(":
                self.open_group()
            elif self.extended and c == ")":
                if len(self.stack) > 1:
                    self.close_group()
                else:
                    self.add(_literal(")"))
            elif self.extended and c == "|":
                self.alternative()
            elif c == "^":
                if self.extended or self.at_start():
                    self.add(self.anchor_start(), quantifiable=False)
                else:
                    self.add(_literal("^"))
            elif c == "$":
                if self.extended or self.bre_at_end():
                    self.add(self.anchor_end(), quantifiable=False)
                else:
                    self.add(_literal("$"))
            else:
                self.add(_literal(c))
        if len(self.stack) > 1:
            raise PosixRegexError(E_PAREN)
        body = self.join(self.stack[0])
        return Translation(body.encode("latin-1"), self.groups)

    def bre_at_end(self) -> bool:
        """In a BRE, ``$`` is an anchor at the end of an expression, group or alternative."""
        rest = self.s[self.i :]
        return rest == "" or rest.startswith("\\)") or rest.startswith("\\|")

    @staticmethod
    def join(level: _Level) -> str:
        return "|".join("".join(items) for items in level.alternatives)

    def open_group(self) -> None:
        self.groups += 1
        self.stack.append(_Level(number=self.groups))

    def close_group(self) -> None:
        level = self.stack.pop()
        self.closed.add(level.number)
        self.add(f"({self.join(level)})")

    def alternative(self) -> None:
        self.level.alternatives.append([])
        self.level.quantifiable.append(False)

    # -- escapes ---------------------------------------------------------
    def escape(self) -> None:
        if self.i >= len(self.s):
            raise PosixRegexError(E_ESCAPE)
        c = self.s[self.i]
        self.i += 1
        if not self.extended:
            if c == "(":
                self.open_group()
                return
            if c == ")":
                if len(self.stack) == 1:
                    raise PosixRegexError(E_PAREN)
                self.close_group()
                return
            if c == "{":
                if self.at_start():
                    raise PosixRegexError(E_BADRPT)
                self.quantify(self.interval("\\}"))
                return
            if c in "+?":
                if self.bre_literal_star():
                    self.add(_literal(c))
                else:
                    self.quantify(c)
                return
            if c == "|":
                self.alternative()
                return
        if c in "123456789":
            number = int(c)
            if number not in self.closed:
                raise PosixRegexError(E_SUBREG)
            self.add(f"(?:\\{number})")
            return
        special = {
            "w": _WORD, "W": _NOT_WORD, "s": r"[[:space:]]", "S": r"[^[:space:]]",
            "b": r"\b", "B": r"\B", "<": r"\m", ">": r"\M", "`": r"\A", "'": r"\Z",
        }
        expr = special.get(c)
        if expr is not None:
            self.add(expr, quantifiable=c in "wWsS")
            return
        if self.icase and "a" <= c <= "z":
            # The subject is upper-cased; an escaped lower-case letter is not.
            self.add("(?!)")
            return
        self.add(_literal(c))

    # -- intervals -------------------------------------------------------
    def interval(self, close: str) -> str:
        s = self.s

        def number() -> str:
            start = self.i
            while self.i < len(s) and s[self.i].isdigit():
                self.i += 1
            return s[start : self.i]

        low = number()
        comma = False
        high = ""
        if self.i < len(s) and s[self.i] == ",":
            comma = True
            self.i += 1
            high = number()
        if self.i >= len(s) or (close == "\\}" and self.i + 1 >= len(s) and s[self.i] == "\\"):
            raise PosixRegexError(E_BRACE)
        if not s.startswith(close, self.i):
            raise PosixRegexError(E_BADBR)
        self.i += len(close)
        if not low and not comma:
            raise PosixRegexError(E_BADBR)
        m = int(low) if low else 0
        n = int(high) if high else None
        if m > DUP_MAX or (n is not None and n > DUP_MAX):
            raise PosixRegexError(E_ESIZE)
        if n is not None and n < m:
            raise PosixRegexError(E_BADBR)
        if not comma:
            return f"{{{m}}}"
        return f"{{{m},{'' if n is None else n}}}"

    # -- bracket expressions ---------------------------------------------
    def bracket(self) -> str:
        s = self.s
        negate = False
        if self.i < len(s) and s[self.i] == "^":
            negate = True
            self.i += 1
        members: list[str] = []
        first = True
        while True:
            if self.i >= len(s):
                raise PosixRegexError(E_BRACK)
            c = s[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            start, is_class = self.bracket_element()
            if is_class:
                if s.startswith("-", self.i) and not s.startswith("-]", self.i):
                    raise PosixRegexError(E_RANGE)
                members.append(start)
                continue
            if s.startswith("-", self.i) and not s.startswith("-]", self.i):
                self.i += 1
                if self.i >= len(s):
                    raise PosixRegexError(E_BRACK)
                end, end_is_class = self.bracket_element()
                if end_is_class:
                    raise PosixRegexError(E_RANGE)
                lo, hi = ord(start), ord(end)
                if self.icase:
                    lo, hi = ord(start.upper()) if start.isascii() else lo, ord(end.upper()) if end.isascii() else hi
                if lo > hi:
                    raise PosixRegexError(E_RANGE)
                if s.startswith("-", self.i) and not s.startswith("-]", self.i):
                    raise PosixRegexError(E_RANGE)
                members.append(f"{_set_member(start)}-{_set_member(end)}")
            else:
                members.append(_set_member(start))
        if negate and self.newline:
            members.append(_set_member("\n"))
        return ("[^" if negate else "[") + "".join(members) + "]"

    def bracket_element(self) -> tuple[str, bool]:
        """One element: a byte (latin-1 char) or a ``[:class:]`` (is_class=True)."""
        s = self.s
        c = s[self.i]
        if c == "[" and self.i + 1 < len(s) and s[self.i + 1] in ":=.":
            kind = s[self.i + 1]
            end = s.find(kind + "]", self.i + 2)
            if end < 0:
                raise PosixRegexError(E_BRACK)
            name = s[self.i + 2 : end]
            self.i = end + 2
            if kind == ":":
                if name not in CLASSES:
                    raise PosixRegexError(E_CTYPE)
                return f"[:{name}:]", True
            if len(name) != 1:
                raise PosixRegexError(E_COLLATE)
            return name, False
        self.i += 1
        return c, False


def translate(pattern: bytes, *, extended: bool = True, icase: bool = True, newline: bool = False) -> Translation:
    """Translate a POSIX regular expression (regcomp flags given) for ``regex``.

    Raises :class:`PosixRegexError` with regerror()'s text for a bad pattern.
    """
    return _Translator(pattern.decode("latin-1"), extended, icase, newline).run()

"""PCRE patterns (pcre_table(5)) adapted for the ``regex`` module.

Postfix compiles pcre: patterns with PCRE2 without UTF mode, so patterns and
subjects are bytes. The ``regex`` module (V0, Perl syntax) accepts almost all
of PCRE's syntax; :func:`adapt` rewrites what it lacks or reads differently:

* ``\\Q...\\E`` quoting becomes escaped bytes;
* ``\\k<name>``, ``\\k'name'``, ``\\k{name}`` become ``(?P=name)``;
* ``\\x{HH}`` becomes ``\\xHH``;
* ``\\Z`` (end, or before a final newline) becomes ``(?=\\n?\\Z)`` and
  ``\\z`` (very end) becomes ``\\Z``;
* flag ``U`` (PCRE2_UNGREEDY) inverts the greediness of every quantifier;
* flag ``E`` (PCRE2_DOLLAR_ENDONLY, ignored with ``m``) makes ``$`` match only
  at the very end.

Compile errors are reported as PCRE2 words the common ones (``missing closing
parenthesis``, ``missing terminating ] for character class``, ``quantifier
does not follow a repeatable item``, ``unrecognized character follows \\``);
others keep the ``regex`` module's text. The offset is PCRE2's where the two
libraries agree on it, else the ``regex`` module's.
"""

from __future__ import annotations


def _skip_class(s: str, i: int) -> int:
    """Index just past the character class starting at ``s[i] == '['``."""
    j = i + 1
    if j < len(s) and s[j] == "^":
        j += 1
    if j < len(s) and s[j] == "]":
        j += 1
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == "[" and j + 1 < len(s) and s[j + 1] in ":.=":
            end = s.find(s[j + 1] + "]", j + 2)
            if end >= 0:
                j = end + 2
                continue
        if c == "]":
            return j + 1
        j += 1
    return len(s)


def _interval_end(s: str, i: int) -> int:
    """Index past a ``{n}``, ``{n,}``, ``{n,m}`` quantifier at ``i``, or -1."""
    j = i + 1
    start = j
    while j < len(s) and s[j].isdigit():
        j += 1
    if j == start:
        return -1
    if j < len(s) and s[j] == ",":
        j += 1
        while j < len(s) and s[j].isdigit():
            j += 1
    if j < len(s) and s[j] == "}":
        return j + 1
    return -1


def _quote(text: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{ord(c):02x}" for c in text)


def adapt(pattern: str, *, ungreedy: bool, dollar_endonly: bool, extended: bool) -> str:
    """Rewrite a PCRE pattern (latin-1 text, one char per byte) for ``regex``."""
    s = pattern
    out: list[str] = []
    i = 0
    after_atom = False
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            e = s[i + 1]
            if e == "Q":
                end = s.find("\\E", i + 2)
                literal = s[i + 2 :] if end < 0 else s[i + 2 : end]
                out.append(_quote(literal))
                i = len(s) if end < 0 else end + 2
                after_atom = bool(literal)
                continue
            if e == "E":
                i += 2
                continue
            if e == "k" and i + 2 < len(s) and s[i + 2] in "<'{":
                close = {"<": ">", "'": "'", "{": "}"}[s[i + 2]]
                end = s.find(close, i + 3)
                if end > 0:
                    out.append(f"(?P={s[i + 3 : end]})")
                    i = end + 1
                    after_atom = True
                    continue
            if e == "x" and i + 2 < len(s) and s[i + 2] == "{":
                end = s.find("}", i + 3)
                digits = s[i + 3 : end] if end > 0 else ""
                if digits and all(d in "0123456789abcdefABCDEF" for d in digits) and int(digits, 16) < 256:
                    out.append(f"\\x{int(digits, 16):02x}")
                    i = end + 1
                    after_atom = True
                    continue
            if e == "Z":
                out.append(r"(?=\n?\Z)")
            elif e == "z":
                out.append(r"\Z")
            else:
                out.append(s[i : i + 2])
            i += 2
            after_atom = e not in "AbBGzZ"
            continue
        if c == "[":
            end = _skip_class(s, i)
            out.append(s[i:end])
            i = end
            after_atom = True
            continue
        if c == "(":
            if s.startswith("(?#", i):
                end = s.find(")", i)
                end = len(s) if end < 0 else end + 1
                out.append(s[i:end])
                i = end
                continue
            out.append(c)
            i += 1
            if i < len(s) and s[i] == "?":
                out.append("?")
                i += 1
            after_atom = False
            continue
        if extended and c in " \t\n\r\v\f":
            out.append(c)
            i += 1
            continue
        if extended and c == "#":
            end = s.find("\n", i)
            end = len(s) if end < 0 else end
            out.append(s[i:end])
            i = end
            continue
        quantifier_end = -1
        if c in "*+?" and after_atom:
            quantifier_end = i + 1
        elif c == "{" and after_atom:
            quantifier_end = _interval_end(s, i)
        if quantifier_end > 0:
            out.append(s[i:quantifier_end])
            i = quantifier_end
            if ungreedy:
                if i < len(s) and s[i] == "?":
                    i += 1
                elif not (i < len(s) and s[i] == "+"):
                    out.append("?")
            elif i < len(s) and s[i] in "?+":
                out.append(s[i])
                i += 1
            after_atom = False
            continue
        if c == "$" and dollar_endonly:
            out.append(r"\Z")
        else:
            out.append(c)
        i += 1
        after_atom = c not in "|^$"
    return "".join(out)


def error_text(msg: str, pos: int | None, pattern: str) -> str:
    """PCRE2's wording of a compile error reported by ``regex``."""
    offset = pos if pos is not None else 0
    if msg == "missing )":
        return f"error in regex at offset {len(pattern)}: missing closing parenthesis"
    if msg == "unterminated character set":
        return f"error in regex at offset {len(pattern)}: missing terminating ] for character class"
    if msg in ("multiple repeat", "nothing to repeat"):
        return f"error in regex at offset {offset}: quantifier does not follow a repeatable item"
    if msg.startswith("bad escape"):
        return f"error in regex at offset {max(offset - 1, 0)}: unrecognized character follows \\"
    if msg == "unbalanced parenthesis":
        return f"error in regex at offset {offset}: unmatched closing parenthesis"
    return f"error in regex at offset {offset}: {msg}"

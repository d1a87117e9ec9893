"""postconf's output formats: ``name = value`` lines and master.cf entries.

Postfix prints a parameter line word by word: runs of whitespace in a value
become one space, and with ``-f`` a line longer than 80 columns is folded
before the word that would pass column 80, continuing with four spaces.

A master.cf entry (``postconf -M``) puts its columns on tab-like stops (11,
17, 25, 33, 41, 49, 57) with at least one space between columns; with ``-f``
each ``-o`` override goes on its own continuation line, the word after an
override starts a new line, and other words fold at 80 columns.
"""

from __future__ import annotations

from mailhorn.config.mastercf import Service, Setting

LINE_LIMIT = 80
INDENT = "    "

#: Where each master.cf column starts in ``postconf -M`` output.
COLUMN_STOPS = (0, 11, 17, 25, 33, 41, 49, 57)


def fold_words(words: list[str], fold: bool) -> str:
    """Join words with single spaces, folding at 80 columns when asked."""
    if not fold:
        return " ".join(words)
    lines: list[str] = []
    line = ""
    for word in words:
        if not line:
            line = word
        elif len(line) + 1 + len(word) > LINE_LIMIT:
            lines.append(line)
            line = INDENT + word
        else:
            line += " " + word
    lines.append(line)
    return "\n".join(lines)


def param_line(name: str, value: str, fold: bool) -> str:
    """``name = value`` as postconf prints it (``name =`` for an empty value)."""
    return fold_words([name, "=", *value.split()], fold)


def value_line(value: str, fold: bool) -> str:
    """A value alone (``postconf -h``)."""
    return fold_words(value.split(), fold)


def master_columns(service: Service) -> str:
    """The seven fixed columns and the command name, aligned as Postfix aligns them."""
    fields = service.columns()[:7] + (service.command,)
    out = ""
    for stop, text in zip(COLUMN_STOPS, fields):
        if out:
            out += " " * max(1, stop - len(out))
        out += text
    return out


def master_entry(service: Service, fold: bool, head: str | None = None) -> str:
    """One master.cf entry as ``postconf -M`` (``-Mf`` when ``fold``) prints it.

    ``head`` replaces the columns and command (``postconf -F`` prints
    ``name/type/command = command`` there). A folded master.cf line stays
    below 80 columns, one less than a folded parameter line.
    """
    if head is None:
        head = master_columns(service)
    if not fold:
        rest = [w.render() if isinstance(w, Setting) else w for w in service.argv]
        return " ".join([head, *rest])
    lines: list[str] = []
    line = head
    after_setting = False
    for word in service.argv:
        if isinstance(word, Setting) or word.startswith("-o "):
            lines.append(line)
            line = INDENT + (word.render() if isinstance(word, Setting) else word)
            after_setting = True
            continue
        if after_setting or len(line) + 1 + len(word) >= LINE_LIMIT:
            lines.append(line)
            line = INDENT + word
        else:
            line += " " + word
        after_setting = False
    lines.append(line)
    return "\n".join(lines)

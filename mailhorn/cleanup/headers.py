"""Header and body inspection: header_checks(5) tables, their actions and logs.

A logical header (a header line with its folded continuation lines, joined
by ``\\n`` as Postfix keeps them) is matched against one of three table
lists, chosen as Postfix's cleanup_header_callback does:

* ``header_checks`` for headers of the message itself;
* ``mime_header_checks`` for MIME headers (``Content-*``, ``MIME-Version``)
  wherever they appear, and for every header of a multipart body part;
* ``nested_header_checks`` for the other headers of an attached message
  (``message/rfc822``).

``body_checks`` sees body lines one at a time (MIME boundary and part header
lines included when they are not given to the header checks), at most
``body_checks_size_limit`` bytes of each body part.

The first table with a match wins; its value is an action (header_checks(5)):
``REJECT [text]``, ``WARN [text]``, ``HOLD [text]``, ``DISCARD [text]``,
``IGNORE``, ``PREPEND text``, ``REPLACE text``, ``REDIRECT user@domain``,
``FILTER transport:destination``, ``BCC user@domain``, ``INFO [text]``,
``DUNNO``, ``OK``. What each does to the message is cleanup's business
(:mod:`mailhorn.cleanup.cleanup`); this module parses the action, checks its
argument and formats the log line, which is Postfix's cleanup_act_log::

    QUEUEID: ACTION: CLASS CONTENT from ORIGIN; from=<SENDER> to=<RCPT> proto=P helo=<H>: TEXT

with CONTENT cut at 200 characters and unprintable characters (the newline
of a folded header) shown as ``?``.

Parameters read: ``header_checks``, ``mime_header_checks``,
``nested_header_checks``, ``body_checks`` (via :meth:`ContentChecks.from_config`).

Errors: a table lookup failure raises :class:`~mailhorn.tables.base.TableRetry`
(the caller answers 451 and keeps nothing).
"""

from __future__ import annotations

import re

import enum
from dataclasses import dataclass
from typing import Final

from mailhorn.config.load import Config
from mailhorn.tables.base import Table
from mailhorn.tables.registry import open_table

#: Headers that are MIME headers for the choice of table (Postfix's HDR_OPT_MIME).
MIME_HEADERS: Final = frozenset({
    "content-type", "content-transfer-encoding", "content-description",
    "content-disposition", "content-id", "mime-version",
})

#: Longest CONTENT shown in an action log line (cleanup_act_log's %.200s).
LOG_CONTENT_MAX: Final = 200


class HeaderClass(enum.Enum):
    """Where a header sits, which decides its check table."""

    PRIMARY = "primary"
    MULTIPART = "multipart"
    NESTED = "nested"


class Act(enum.Enum):
    """header_checks(5) actions."""

    REJECT = "REJECT"
    WARN = "WARN"
    HOLD = "HOLD"
    DISCARD = "DISCARD"
    IGNORE = "IGNORE"
    PREPEND = "PREPEND"
    REPLACE = "REPLACE"
    REDIRECT = "REDIRECT"
    FILTER = "FILTER"
    BCC = "BCC"
    INFO = "INFO"
    DUNNO = "DUNNO"
    OK = "OK"


#: Explicit table from action word to action (matched case-insensitively).
ACTIONS: Final[dict[str, Act]] = {a.value: a for a in Act}


@dataclass(frozen=True)
class Action:
    """One table result: the action and its optional text."""

    act: Act
    text: str


@dataclass(frozen=True)
class BadAction:
    """A table result cleanup cannot use; ``warning`` is Postfix's log text."""

    warning: str


def parse_action(value: str, map_name: str) -> Action | BadAction:
    """Split a table value into action and text, checking what the action needs.

    Texts of the warnings are Postfix's (cleanup_act): an unknown word, a
    PREPEND/REPLACE text that is not a header, a REDIRECT/BCC without ``@``,
    a FILTER without ``:``.
    """
    word, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if "\t" in word:
        word, _, more = word.partition("\t")
        rest = (more + " " + rest).strip()
    act = ACTIONS.get(word.upper())
    if act is None:
        return BadAction(f"unknown command in {map_name} map: {value}")
    if act in (Act.PREPEND, Act.REPLACE):
        if not rest:
            return BadAction(f"{act.value} action without text in {map_name} map")
        if header_name(rest) is None:
            return BadAction(f"bad {act.value} header text \"{rest}\" in {map_name} map -- "
                             "need \"headername: headervalue\"")
    if act in (Act.REDIRECT, Act.BCC) and "@" not in rest:
        return BadAction(f"bad {act.value} target \"{rest}\" in {map_name} map, need user@domain")
    if act is Act.FILTER and ":" not in rest:
        return BadAction(f"bad FILTER action \"{rest}\" in {map_name} map, "
                         "need \"transport:destination\"")
    return Action(act, rest)


def header_name(line: str) -> str | None:
    """The field name of a header line, or None when the line is not a header.

    RFC 5322 §2.2: printable ASCII except colon, then a colon; like Postfix's
    is_header(), white space is allowed between name and colon.
    """
    match = _HEADER_NAME.match(line)
    return match.group(1) if match is not None else None


#: A header's field name: printable ASCII but colon, then optional blanks and the colon.
_HEADER_NAME: Final = re.compile(r"([!-9;-~]+)[ \t]*:")


class ChecksTable:
    """An ordered list of pattern tables searched for the first match."""

    def __init__(self, name: str, tables: list[Table]) -> None:
        self.name = name
        self.tables = tables

    def __bool__(self) -> bool:
        return bool(self.tables)

    def lookup(self, text: str) -> str | None:
        """The first match; raises TableRetry when a table cannot answer."""
        for table in self.tables:
            value = table.lookup(text)
            if value is not None:
                return value
        return None


@dataclass
class ContentChecks:
    """The four check lists of one cleanup configuration."""

    header: ChecksTable
    mime_header: ChecksTable
    nested_header: ChecksTable
    body: ChecksTable

    @classmethod
    def from_config(cls, config: Config) -> ContentChecks:
        def tables(param: str) -> ChecksTable:
            return ChecksTable(param, [open_table(spec, config) for spec in config.list(param)])

        return cls(tables("header_checks"), tables("mime_header_checks"),
                   tables("nested_header_checks"), tables("body_checks"))

    @classmethod
    def none(cls) -> ContentChecks:
        """No checks (``receive_override_options = no_header_body_checks``)."""
        return cls(ChecksTable("header_checks", []), ChecksTable("mime_header_checks", []),
                   ChecksTable("nested_header_checks", []), ChecksTable("body_checks", []))

    def for_header(self, name: str, header_class: HeaderClass) -> ChecksTable:
        """The table list for one header (see module doc)."""
        if name.lower() in MIME_HEADERS or header_class is HeaderClass.MULTIPART:
            return self.mime_header
        if header_class is HeaderClass.NESTED:
            return self.nested_header
        return self.header


def printable(text: str, limit: int = LOG_CONTENT_MAX) -> str:
    """Log-safe text: cut to ``limit`` and control characters shown as ``?``."""
    cut = text[:limit]
    return "".join(c if c.isprintable() else "?" for c in cut)


@dataclass(frozen=True)
class LogContext:
    """What cleanup_act_log puts after the content: origin, sender, recipient, ..."""

    origin: str
    sender: str
    recipient: str | None
    protocol: str | None
    helo: str | None

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, origin: str, sender: str, recipient: str | None, protocol: str | None,
                 helo: str | None) -> None:
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "sender", sender)
        object.__setattr__(self, "recipient", recipient)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "helo", helo)

    def format(self, queue_id: str, action: str, klass: str, content: str, text: str) -> str:
        line = f"{queue_id}: {action}: {klass} {printable(content)} from {self.origin};"
        line += f" from=<{self.sender}>"
        if self.recipient is not None:
            line += f" to=<{self.recipient}>"
        if self.protocol:
            line += f" proto={self.protocol}"
        if self.helo:
            line += f" helo=<{self.helo}>"
        if text:
            line += f": {text}"
        return line

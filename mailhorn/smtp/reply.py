"""SMTP replies: the `Reply` value, its wire form, and Postfix's reply texts.

A `Reply` is a three-digit code (RFC 5321 §4.2), an optional enhanced status
code (RFC 3463, RFC 2034 ENHANCEDSTATUSCODES) and one or more text lines.
`Reply.render()` gives the wire form: every line but the last is
``CODE-[STATUS ]text``, the last ``CODE [STATUS ]text`` (RFC 5321 §4.2.1).

Replies travel as exceptions (`SmtpReplyError(reply, blame)`), caught once per
command; `Blame.PEER` means the client's fault (log at info), `Blame.LOCAL`
ours (log at error with a traceback).

The named constants are the texts the Postfix 3.7 smtpd sends for the same
situations; they were checked against the real smtpd where it could be run.
Replies whose text carries a variable part are built by small functions.

Parameters read: none.  Errors: `ValueError` for a malformed `Reply`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "Blame",
    "Reply",
    "SmtpReplyError",
]

_STATUS_RE: Final = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: code, optional enhanced status, text lines."""

    code: int
    status: str | None
    lines: tuple[str, ...]

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, code: int, status: str | None, lines: tuple[str, ...]) -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "lines", lines)
        self.__post_init__()

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        if self.status is not None:
            # RFC 3463 §2: the class digit of the enhanced code equals the
            # first digit of the basic code.
            if not _STATUS_RE.match(self.status) or self.status[0] != str(self.code)[0]:
                raise ValueError(f"bad enhanced status code {self.status!r} for {self.code}")
        if not self.lines:
            raise ValueError("a reply needs at least one text line")
        for line in self.lines:
            if "\r" in line or "\n" in line:
                raise ValueError("reply text must not contain CR or LF")

    @classmethod
    def of(cls, code: int, status: str | None, *lines: str) -> Reply:
        """Build a reply from its parts (convenience for constants)."""
        return cls(code, status, tuple(lines))

    @property
    def is_positive(self) -> bool:
        """2xx or 3xx (RFC 5321 §4.2.1)."""
        return self.code < 400

    @property
    def is_intermediate(self) -> bool:
        """3xx: the command continues (354 after DATA, 334 in AUTH)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    @property
    def text(self) -> str:
        """All text lines joined by newlines (for logs)."""
        return "\n".join(self.lines)

    def with_text(self, *lines: str) -> Reply:
        """Same code and status, new text."""
        return Reply(self.code, self.status, tuple(lines))

    def render(self) -> bytes:
        """The wire form, each line ending in CRLF (RFC 5321 §4.2.1)."""
        prefix = f"{self.status} " if self.status else ""
        if len(self.lines) == 1:
            return f"{self.code} {prefix}{self.lines[0]}\r\n".encode("utf-8", "surrogateescape")
        out: list[str] = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            out.append(f"{self.code}{sep}{prefix}{line}\r\n")
        return "".join(out).encode("utf-8", "surrogateescape")

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status else ""
        return f"{self.code} {prefix}{self.text}"


class Blame(enum.Enum):
    """Whose fault a failed command is: decides the log level."""

    PEER = "peer"
    LOCAL = "local"


class SmtpReplyError(Exception):
    """A command ends with this reply instead of its normal one."""

    def __init__(self, reply: Reply, blame: Blame = Blame.PEER) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.blame = blame


# --- Replies Postfix's smtpd sends (texts as Postfix 3.7 sends them) ------

OK: Final = Reply.of(250, "2.0.0", "Ok")
MAIL_OK: Final = Reply.of(250, "2.1.0", "Ok")
RCPT_OK: Final = Reply.of(250, "2.1.5", "Ok")
BYE: Final = Reply.of(221, "2.0.0", "Bye")
START_MAIL_INPUT: Final = Reply.of(354, None, "End data with <CR><LF>.<CR><LF>")
READY_TO_START_TLS: Final = Reply.of(220, "2.0.0", "Ready to start TLS")

BAD_SYNTAX: Final = Reply.of(500, "5.5.2", "Error: bad syntax")
COMMAND_NOT_RECOGNIZED: Final = Reply.of(500, "5.5.2", "Error: command not recognized")
COMMAND_NOT_IMPLEMENTED: Final = Reply.of(502, "5.5.1", "Error: command not implemented")
I_CAN_BREAK_RULES: Final = Reply.of(221, "2.7.0", "Error: I can break rules, too. Goodbye.")

NEED_HELO: Final = Reply.of(503, "5.5.1", "Error: send HELO/EHLO first")
NEED_HELO_ETRN: Final = Reply.of(503, None, "Error: send HELO/EHLO first")
NEED_MAIL: Final = Reply.of(503, "5.5.1", "Error: need MAIL command")
NEED_RCPT: Final = Reply.of(503, "5.5.1", "Error: need RCPT command")
NESTED_MAIL: Final = Reply.of(503, "5.5.1", "Error: nested MAIL command")
DATA_AFTER_BDAT: Final = Reply.of(503, "5.5.1", "Error: DATA after BDAT")
NO_VALID_RECIPIENTS: Final = Reply.of(554, "5.5.1", "Error: no valid recipients")
MAIL_TRANSACTION_IN_PROGRESS: Final = Reply.of(503, "5.5.1", "Error: MAIL transaction in progress")
AUTH_NOT_ENABLED: Final = Reply.of(503, "5.5.1", "Error: authentication not enabled")
INSUFFICIENT_AUTHORIZATION: Final = Reply.of(550, "5.7.0", "Error: insufficient authorization")
VRFY_DISABLED: Final = Reply.of(502, "5.5.1", "VRFY command is disabled")
ETRN_UNABLE: Final = Reply.of(458, None, "Unable to queue messages")

SYNTAX_HELO: Final = Reply.of(501, None, "Syntax: HELO hostname")
SYNTAX_EHLO: Final = Reply.of(501, None, "Syntax: EHLO hostname")
SYNTAX_LHLO: Final = Reply.of(501, None, "Syntax: LHLO hostname")
SYNTAX_MAIL: Final = Reply.of(501, "5.5.4", "Syntax: MAIL FROM:<address>")
SYNTAX_RCPT: Final = Reply.of(501, "5.5.4", "Syntax: RCPT TO:<address>")
SYNTAX_DATA: Final = Reply.of(501, "5.5.4", "Syntax: DATA")
SYNTAX_RSET: Final = Reply.of(501, "5.5.4", "Syntax: RSET")
SYNTAX_VRFY: Final = Reply.of(501, "5.5.4", "Syntax: VRFY address [SMTPUTF8]")
SYNTAX_ETRN: Final = Reply.of(500, None, "Syntax: ETRN domain")
SYNTAX_STARTTLS: Final = Reply.of(501, "5.5.4", "Syntax: STARTTLS")
SYNTAX_AUTH: Final = Reply.of(501, "5.5.4", "Syntax: AUTH mechanism")
SYNTAX_XFORWARD: Final = Reply.of(501, "5.5.4", "Syntax: XFORWARD attribute=value...")
SYNTAX_XCLIENT: Final = Reply.of(501, "5.5.4", "Syntax: XCLIENT attribute=value...")
# RFC 3030 gives no way to resynchronise after a BDAT whose size cannot be
# read, so Postfix answers 521 and disconnects.
SYNTAX_BDAT: Final = Reply.of(521, "5.5.4", "Syntax: BDAT count [LAST]")

BAD_SENDER_SYNTAX: Final = Reply.of(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX: Final = Reply.of(501, "5.1.3", "Bad recipient address syntax")
BAD_SIZE_SYNTAX: Final = Reply.of(501, "5.5.4", "Bad message size syntax")
BAD_RET_SYNTAX: Final = Reply.of(501, "5.5.4", "Bad RET parameter syntax")
BAD_ENVID_SYNTAX: Final = Reply.of(501, "5.5.4", "Bad ENVID parameter syntax")
BAD_NOTIFY_SYNTAX: Final = Reply.of(501, "5.5.4", "Error: Bad NOTIFY parameter syntax")
BAD_ORCPT_SYNTAX: Final = Reply.of(501, "5.5.4", "Error: Bad ORCPT parameter syntax")

SIZE_EXCEEDS_LIMIT: Final = Reply.of(552, "5.3.4", "Message size exceeds fixed limit")
SIZE_EXCEEDS_FS_LIMIT: Final = Reply.of(552, "5.3.4", "Message size exceeds file system imposed limit")
MESSAGE_TOO_BIG: Final = Reply.of(552, "5.3.4", "Error: message file too big")
CHUNK_TOO_BIG: Final = Reply.of(552, "5.3.4", "Chunk exceeds message size limit")
TOO_MANY_RECIPIENTS: Final = Reply.of(452, "4.5.3", "Error: too many recipients")
TOO_MANY_ERRORS: Final = Reply.of(421, "4.7.0", "Error: too many errors")


def unsupported_option(option: str) -> Reply:
    """``555 5.5.4 Unsupported option: X`` for an unknown ESMTP parameter
    (RFC 5321 §4.1.1.11 says 555 for unrecognised MAIL/RCPT parameters)."""
    return Reply.of(555, "5.5.4", f"Unsupported option: {printable(option)}")


#: What printable() replaces: C0 controls and DEL.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f]")


def printable(text: str) -> str:
    """Peer text made safe to echo in a reply or log: control characters
    become ``?`` (as Postfix's printable() does)."""
    return _CONTROL.sub("?", text)


def greeting(banner: str) -> Reply:
    """``220 $smtpd_banner`` (postconf(5) smtpd_banner)."""
    return Reply.of(220, None, banner)


def helo_ok(myhostname: str) -> Reply:
    """The HELO reply: ``250 $myhostname`` without an enhanced code."""
    return Reply.of(250, None, myhostname)


def ehlo_ok(myhostname: str, keywords: list[str]) -> Reply:
    """The multi-line EHLO/LHLO reply: hostname, then one extension a line."""
    return Reply(250, None, (myhostname, *keywords))


def queued_as(queue_id: str) -> Reply:
    """``250 2.0.0 Ok: queued as ID`` after the end of the message."""
    return Reply.of(250, "2.0.0", f"Ok: queued as {queue_id}")


def bdat_chunk_ok(octets: int) -> Reply:
    """``250 2.0.0 Ok: N bytes`` after a BDAT chunk that is not the last."""
    return Reply.of(250, "2.0.0", f"Ok: {octets} bytes")


def bdat_queued_as(octets: int, queue_id: str) -> Reply:
    """``250 2.0.0 Ok: N bytes queued as ID`` after BDAT ... LAST."""
    return Reply.of(250, "2.0.0", f"Ok: {octets} bytes queued as {queue_id}")


def bdat_discarded(octets: int) -> Reply:
    """``551 5.0.0 Discarded N bytes after earlier error``: a BDAT chunk of a refused message."""
    return Reply.of(551, "5.0.0", f"Discarded {octets} bytes after earlier error")


def timeout_exceeded(myhostname: str) -> Reply:
    """``421 4.4.2 HOST Error: timeout exceeded`` (smtpd_timeout)."""
    return Reply.of(421, "4.4.2", f"{myhostname} Error: timeout exceeded")


def service_unavailable(myhostname: str) -> Reply:
    """``421 4.3.2 HOST Service currently unavailable``."""
    return Reply.of(421, "4.3.2", f"{myhostname} Service currently unavailable")


def no_smtp_service(myhostname: str) -> Reply:
    """``521 5.5.1 HOST Service not available`` (RFC 7504 521 reply)."""
    return Reply.of(521, "5.5.1", f"{myhostname} Service not available")


def bare_newline_received(myhostname: str) -> Reply:
    """``521 5.5.2 HOST Error: bare <LF> received``
    (postconf(5) smtpd_forbid_bare_newline = reject)."""
    return Reply.of(521, "5.5.2", f"{myhostname} Error: bare <LF> received")

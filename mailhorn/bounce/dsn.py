"""RFC 3464 delivery status notifications, worded and laid out as Postfix's.

:func:`build_dsn` produces the bytes of one notification message, a
``multipart/report; report-type=delivery-status`` (RFC 6522) with three
parts:

1. ``Content-Description: Notification``: the human-readable text of
   Postfix's built-in templates (``postconf -b`` shows them: "This is the
   mail system at host ..."), then one paragraph per recipient,
   ``<rcpt>: reason`` or ``<rcpt> (expanded from <orig>): reason``, wrapped
   at 79 columns with a 4-space indent as Postfix's bounce daemon does;
   postmaster copies carry no template text;
2. ``Content-Description: Delivery report``: the ``message/delivery-status``
   fields (RFC 3464 §2.2 and §2.3): ``Reporting-MTA: dns; $myhostname``,
   ``Original-Envelope-Id`` (RFC 3461 ENVID), ``X-Postfix-Queue-ID``,
   ``X-Postfix-Sender``, ``Arrival-Date``; per recipient ``Final-Recipient``,
   ``Original-Recipient`` (the RFC 3461 ORCPT, else ``rfc822;`` and the
   original recipient), ``Action``, ``Status``, ``Remote-MTA`` and
   ``Diagnostic-Code: smtp; ...`` for a remote server's reply (else
   ``Diagnostic-Code: X-Postfix; reason``), and ``Will-Retry-Until`` for a
   delayed recipient (arrival + ``maximal_queue_lifetime``);
3. the returned message: ``message/rfc822`` (``Undelivered Message``) or
   only its header as ``text/rfc822-headers`` (``Undelivered Message
   Headers``; success notices say ``Message``/``Message Headers``), with
   ``Return-Path:`` in front.

The message headers are Postfix's: ``Date``, ``From: Mail Delivery System
<MAILER-DAEMON@$myorigin>``, the template's ``Subject``, ``To``,
``Auto-Submitted: auto-replied`` (``auto-generated`` for postmaster
copies), ``MIME-Version``, ``Content-Type`` with the boundary
``QUEUEID.TIME/$myhostname``; ``Content-Transfer-Encoding: 8bit`` (and a
UTF-8 notification part) when the returned message is 8-bit. cleanup adds
``Received:`` and ``Message-Id:``.

Where a reason came from a remote server, the delivery agents' text
``host NAME[ADDR] said: REPLY (in reply to CMD command)`` gives
``Remote-MTA: dns; NAME`` and ``Diagnostic-Code: smtp; REPLY``.

Parameters read: none (the caller passes them in :class:`DsnInfo`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mailhorn.cleanup.received import mail_date

#: Longest line of wrapped notification text, and the continuation indent.
WRAP_WIDTH = 79
WRAP_INDENT = "    "


class Kind(enum.Enum):
    """The three notices (RFC 3461 NOTIFY=FAILURE, DELAY, SUCCESS)."""

    FAILURE = "failure"
    DELAY = "delay"
    SUCCESS = "success"


#: The built-in template texts (Postfix's ``postconf -b``), before expansion.
_TEXTS = {
    Kind.FAILURE: """\
This is the mail system at host {myhostname}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system""",
    Kind.DELAY: """\
This is the mail system at host {myhostname}.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than {delay_hours} hour(s).
It will be retried until it is {lifetime_days} day(s) old.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system""",
    Kind.SUCCESS: """\
This is the mail system at host {myhostname}.

Your message was successfully delivered to the destination(s)
listed below. If the message was delivered to mailbox you will
receive no further notifications. Otherwise you may still receive
notifications of mail delivery errors from other systems.

                   The mail system""",
}

#: (sender subject, postmaster subject) of each template.
SUBJECTS = {
    Kind.FAILURE: ("Undelivered Mail Returned to Sender", "Postmaster Copy: Undelivered Mail"),
    Kind.DELAY: ("Delayed Mail (still being retried)", "Postmaster Warning: Delayed Mail"),
    Kind.SUCCESS: ("Successful Mail Delivery Report", "Successful Mail Delivery Report"),
}

_REMOTE = re.compile(r"^host (?P<host>[^\s\[]+)\[[^\]]*\] said: (?P<text>.*?)"
                     r"(?: \(in reply to [^()]* command\))?$", re.DOTALL)


@dataclass(frozen=True)
class DsnRecipient:
    """One recipient's line of the report (from the delivery status logs)."""

    address: str
    status: str
    action: str
    reason: str
    orig_rcpt: str | None = None
    dsn_orcpt: str | None = None


@dataclass(frozen=True)
class DsnInfo:
    """Everything one notification says, besides the returned content."""

    kind: Kind
    queue_id: str
    myhostname: str
    myorigin: str
    sender: str
    recipient: str
    arrival: float
    recipients: tuple[DsnRecipient, ...]
    postmaster: bool = False
    headers_only: bool = False
    eight_bit: bool = False
    envid: str | None = None
    now: float = 0.0
    delay_hours: int = 0
    lifetime_days: int = 5
    lifetime_seconds: int = 5 * 86400


def wrap(text: str, width: int = WRAP_WIDTH, indent: str = WRAP_INDENT) -> list[str]:
    """Break ``text`` at spaces into lines of at most ``width`` columns.

    Continuation lines start with ``indent``; a word longer than a line is
    not broken (Postfix's line_wrap for bounce text).
    """
    lines: list[str] = []
    rest = text
    prefix = ""
    while True:
        line = prefix + rest
        if len(line) <= width:
            lines.append(line)
            return lines
        cut = line.rfind(" ", len(prefix) + 1, width + 1)
        if cut < 0:
            cut = line.find(" ", width + 1)
            if cut < 0:
                lines.append(line)
                return lines
        lines.append(line[:cut].rstrip(" "))
        rest = line[cut:].lstrip(" ")
        if not rest:
            return lines
        prefix = indent


def diagnostic(reason: str) -> tuple[str | None, str, str]:
    """(remote MTA or None, diagnostic type, diagnostic text) for a reason."""
    match = _REMOTE.match(reason)
    if match:
        return match.group("host"), "smtp", match.group("text")
    return None, "X-Postfix", reason


def original_recipient(rcpt: DsnRecipient) -> str:
    """The Original-Recipient value: the ORCPT, else ``rfc822;`` + the original recipient."""
    if rcpt.dsn_orcpt:
        return rcpt.dsn_orcpt
    return f"rfc822;{rcpt.orig_rcpt or rcpt.address}"


def notice_text(info: DsnInfo) -> list[str]:
    """The human-readable part's lines (without the part headers)."""
    lines: list[str] = []
    if not info.postmaster:
        lines.extend(_TEXTS[info.kind].format(
            myhostname=info.myhostname, delay_hours=info.delay_hours,
            lifetime_days=info.lifetime_days).split("\n"))
    for rcpt in info.recipients:
        lines.append("")
        who = f"<{rcpt.address}>"
        if rcpt.orig_rcpt and rcpt.orig_rcpt.casefold() != rcpt.address.casefold():
            who += f" (expanded from <{rcpt.orig_rcpt}>)"
        lines.extend(wrap(f"{who}: {rcpt.reason}"))
    return lines


def status_fields(info: DsnInfo) -> list[str]:
    """The message/delivery-status body (per-message and per-recipient fields)."""
    sender = info.sender or f"MAILER-DAEMON@{info.myorigin}"
    lines = [f"Reporting-MTA: dns; {info.myhostname}"]
    if info.envid:
        lines.append(f"Original-Envelope-Id: {info.envid}")
    lines += [f"X-Postfix-Queue-ID: {info.queue_id}",
              f"X-Postfix-Sender: rfc822; {sender}",
              f"Arrival-Date: {mail_date(info.arrival)}"]
    for rcpt in info.recipients:
        mta, dtype, dtext = diagnostic(rcpt.reason)
        lines += ["", f"Final-Recipient: rfc822; {rcpt.address}",
                  f"Original-Recipient: {original_recipient(rcpt)}",
                  f"Action: {rcpt.action}", f"Status: {rcpt.status}"]
        if mta:
            lines.append(f"Remote-MTA: dns; {mta}")
        lines.extend(wrap(f"Diagnostic-Code: {dtype}; {dtext}"))
        if rcpt.action == "delayed":
            lines.append(f"Will-Retry-Until: {mail_date(info.arrival + info.lifetime_seconds)}")
    return lines


def boundary(info: DsnInfo) -> str:
    """The MIME boundary: ``QUEUEID.TIME/$myhostname``."""
    return f"{info.queue_id}.{int(info.now)}/{info.myhostname}"


def headers(info: DsnInfo) -> list[str]:
    """The notification's own header lines."""
    subject = SUBJECTS[info.kind][1 if info.postmaster else 0]
    lines = [f"Date: {mail_date(info.now)}",
             f"From: Mail Delivery System <MAILER-DAEMON@{info.myorigin}>",
             f"Subject: {subject}",
             f"To: {info.recipient}",
             f"Auto-Submitted: {'auto-generated' if info.postmaster else 'auto-replied'}",
             "MIME-Version: 1.0",
             "Content-Type: multipart/report; report-type=delivery-status;",
             f'\tboundary="{boundary(info)}"']
    if info.eight_bit:
        lines.append("Content-Transfer-Encoding: 8bit")
    return lines


def returned_description(info: DsnInfo) -> str:
    """Content-Description of the returned message part."""
    name = "Message" if info.kind is Kind.SUCCESS else "Undelivered Message"
    return f"{name} Headers" if info.headers_only else name


def build_dsn(info: DsnInfo, content: Iterable[bytes]) -> Iterator[bytes]:
    """The notification message, in pieces (LF line ends).

    ``content`` is the original message as stored in the queue (LF line
    ends); with ``headers_only`` only its header block is used, so it may
    be the header block alone.
    """
    mark = boundary(info)
    charset = "utf-8" if info.eight_bit else "us-ascii"
    out = headers(info) + ["", "This is a MIME-encapsulated message.", "",
                           f"--{mark}", "Content-Description: Notification",
                           f"Content-Type: text/plain; charset={charset}"]
    if info.eight_bit:
        out.append("Content-Transfer-Encoding: 8bit")
    out += ["", *notice_text(info), "", f"--{mark}", "Content-Description: Delivery report",
            "Content-Type: message/delivery-status", "", *status_fields(info), "",
            f"--{mark}", f"Content-Description: {returned_description(info)}",
            f"Content-Type: {'text/rfc822-headers' if info.headers_only else 'message/rfc822'}"]
    if info.eight_bit:
        out.append("Content-Transfer-Encoding: 8bit")
    out += ["", f"Return-Path: <{info.sender or f'MAILER-DAEMON@{info.myorigin}'}>"]
    yield _encode("\n".join(out) + "\n")
    last = b"\n"
    if info.headers_only:
        for piece in header_block(content):
            yield piece
            last = piece[-1:] or last
        if last != b"\n":
            yield b"\n"
    else:
        for piece in content:
            if piece:
                yield piece
                last = piece[-1:]
        if last != b"\n":
            yield b"\n"
    yield _encode(f"\n--{mark}--\n")


def header_block(content: Iterable[bytes]) -> Iterator[bytes]:
    """The header lines of stored content, up to (not including) the empty line."""
    tail = b""
    for piece in content:
        data = tail + piece
        if data.startswith(b"\n"):
            return
        end = data.find(b"\n\n")
        if end >= 0:
            yield data[:end + 1]
            return
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        tail = data[cut:]
    if tail:
        yield tail + b"\n"


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")

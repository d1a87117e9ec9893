"""The headers cleanup writes itself: Received:, Message-Id:, Date:, From:, To:.

Formats are Postfix 3.7's, checked line for line against the real cleanup,
smtpd and pickup (queue ID and times aside):

SMTP mail (Postfix's smtpd writes this header; here cleanup does, from the
:class:`~mailhorn.cleanup.request.ClientInfo` smtpd hands over)::

    Received: from HELO (NAME [ADDR])
    \t(Authenticated sender: USER)                     smtpd_sasl_authenticated_header
    \t(using TLSv1.3 with cipher ... (256/256 bits)    smtpd_tls_received_header
    \t key-exchange ...)
    \tby MYHOSTNAME (MAIL_NAME) with PROTOCOL id QUEUEID
    \tfor <RCPT>; DATE                                 exactly one recipient
    \tby MYHOSTNAME (MAIL_NAME) with PROTOCOL id QUEUEID;
    \tDATE                                             otherwise

Local submission (Postfix's pickup writes this one)::

    Received: by MYHOSTNAME (MAIL_NAME, from userid UID)
    \tid QUEUEID; DATE

``Message-Id: <YYYYMMDDhhmmss.QUEUEID@MYHOSTNAME>`` (UTC time of the queue
file's creation; ``<QUEUEID@MYHOSTNAME>`` with long queue IDs), ``Date:`` in
Postfix's mail_date form ``Sat,  1 Nov 2026 14:25:55 +0000 (UTC)`` (day of
month space-padded, local time with numeric offset and zone name, of the
arrival time), ``From:`` per ``header_from_format``.

Parameters read (by the caller, passed in): ``myhostname``, ``mail_name``,
``smtpd_sasl_authenticated_header``, ``smtpd_tls_received_header``,
``header_from_format``.
"""

from __future__ import annotations

import time
from typing import Final

from mailhorn.address.quote import quote_local
from mailhorn.cleanup.request import ClientInfo

#: Envelope sender shown in a From: header added to a bounce (null sender).
MAIL_ADDR_MAIL_DAEMON: Final = "MAILER-DAEMON"


#: The last date made: (second, zone names, text). Every message gets one or
#: two, and glibc's localtime() looks at /etc/localtime each time it is called.
_last_date: tuple[int, tuple[str, str], str] = (-1, ("", ""), "")


def mail_date(when: float) -> str:
    """RFC 5322 date as Postfix's mail_date() writes it (space-padded day, zone name)."""
    global _last_date
    seconds = int(when)
    last = _last_date
    if last[0] == seconds and last[1] == time.tzname:  # time.tzset() changes tzname
        return last[2]
    local = time.localtime(seconds)
    offset = (local.tm_gmtoff or 0) // 60
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    stamp = time.strftime("%a, %e %b %Y %H:%M:%S ", local)
    text = f"{stamp}{sign}{offset // 60:02d}{offset % 60:02d} ({time.strftime('%Z', local)})"
    _last_date = (seconds, time.tzname, text)
    return text


def rfc_addr(addr: str) -> str:
    """The client address as Received: shows it (``IPv6:`` prefix, RFC 5321 §4.1.3)."""
    return f"IPv6:{addr}" if ":" in addr else addr


def smtpd_received(client: ClientInfo, *, myhostname: str, mail_name: str, queue_id: str,
                   recipients: list[str], arrival: float, sasl_header: bool,
                   tls_header: bool) -> list[str]:
    """The physical lines of the Received: header for mail from an SMTP client.

    ``client.tls`` is the comment text smtpd built for the TLS session: its
    first line without the opening parenthesis (``using TLSv1.3 with cipher
    ...``), further lines as they continue (`` key-exchange ...``); a text
    already in parentheses is used as is, line for line, so smtpd can also
    pass the client-certificate comment.
    """
    helo = client.helo or client.name
    lines = [f"Received: from {helo} ({client.name} [{rfc_addr(client.addr)}])"]
    if sasl_header and client.sasl_username:
        lines.append(f"\t(Authenticated sender: {client.sasl_username})")
    if tls_header and client.tls:
        text = client.tls if client.tls.startswith("(") else f"({client.tls})"
        lines.extend(f"\t{part}" for part in text.split("\n"))
    by = f"\tby {myhostname} ({mail_name}) with {client.protocol} id {queue_id}"
    date = mail_date(arrival)
    if len(recipients) == 1:
        lines.append(by)
        lines.append(f"\tfor <{recipients[0]}>; {date}")
    else:
        lines.append(by + ";")
        lines.append(f"\t{date}")
    return lines


def pickup_received(*, myhostname: str, mail_name: str, queue_id: str, uid: int,
                    arrival: float) -> list[str]:
    """The Received: header pickup(8) adds to locally submitted mail."""
    return [f"Received: by {myhostname} ({mail_name}, from userid {uid})",
            f"\tid {queue_id}; {mail_date(arrival)}"]


def message_id(queue_id: str, myhostname: str, created: float, *, long_ids: bool) -> str:
    """The Message-Id value cleanup makes (Postfix 3.x cleanup_header_done_callback)."""
    if long_ids:
        return f"<{queue_id}@{myhostname}>"
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(int(created)))
    return f"<{stamp}.{queue_id}@{myhostname}>"


def _quote_phrase(name: str) -> str:
    """A display name, quoted when it has RFC 5322 specials (§3.2.3 phrase)."""
    specials = set('()<>[]:;@\\,."')
    if name and not any(c in specials for c in name):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def from_header(sender: str, fullname: str | None, *, header_from_format: str = "standard") -> str:
    """The From: header cleanup adds when the message has none.

    ``standard`` (Postfix >= 3.3 default): ``From: Full Name <addr>``;
    ``obsolete``: ``From: addr (Full Name)``. The null sender shows as
    ``MAILER-DAEMON``; without a full name only the address appears.
    """
    address = quote_local(sender) if sender else MAIL_ADDR_MAIL_DAEMON
    if sender and fullname:
        if header_from_format == "obsolete":
            comment = fullname.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            return f"From: {address} ({comment})"
        return f"From: {_quote_phrase(fullname)} <{address}>"
    return f"From: {address}"

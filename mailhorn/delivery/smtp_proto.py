"""The command side of the SMTP/LMTP client: what to send, and how to read what came back.

This module has no I/O.  It builds the client's command lines (EHLO, LHLO,
MAIL FROM with SIZE/BODY/SMTPUTF8/RET/ENVID, RCPT TO with NOTIFY/ORCPT,
BDAT, ...), reads the server's EHLO keywords into :class:`Features`, turns
a message stored with LF line ends into the SMTP wire form (CRLF, dot
stuffing, RFC 5321 §4.5.2) in a streaming way, and words failures as the
Postfix SMTP client does in its logs and bounces:

* ``host mx.example.com[192.0.2.1] said: 550 5.1.1 <u@example.com>: ...
  (in reply to RCPT TO command)``
* ``lost connection with mx.example.com[192.0.2.1] while sending end of
  data -- message may be sent more than once``
* ``conversation with mx.example.com[192.0.2.1] timed out while receiving
  the initial server greeting``

Replies are parsed by :class:`mailhorn.smtp.client.ReplyParser`.  A reply
without an enhanced status code (RFC 3463) gets ``X.0.0`` of its class, as
Postfix does.

Parameters read: none (the caller passes ``smtp_quote_rfc821_envelope`` and
the EHLO keywords to discard).  Errors: none raised here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from mailhorn.smtp.reply import Reply

__all__ = [
    "DotStuffer",
    "Features",
    "dsn_of",
    "lost_text",
    "mail_from",
    "parse_ehlo",
    "quote_mailbox",
    "rcpt_to",
    "said_text",
    "timeout_text",
    "lines_of",
    "reply_text",
    "xtext",
]


@dataclass
class Features:
    """What a server announced in its EHLO/LHLO reply (RFC 5321 §4.1.1.1).

    ``size_limit`` is 0 when SIZE had no (or a zero) limit (RFC 1870 §4).
    """

    esmtp: bool = False
    pipelining: bool = False
    size: bool = False
    size_limit: int = 0
    eightbitmime: bool = False
    smtputf8: bool = False
    dsn: bool = False
    chunking: bool = False
    starttls: bool = False
    enhancedstatuscodes: bool = False
    auth: tuple[str, ...] = ()
    keywords: dict[str, str] = field(default_factory=dict)


def parse_ehlo(reply: Reply, discard: Iterable[str] = ()) -> Features:
    """The features of a 250 EHLO/LHLO reply; keywords in ``discard`` are ignored
    (``smtp_discard_ehlo_keywords``)."""
    dropped = {word.upper() for word in discard}
    feats = Features(esmtp=True)
    for line in reply.lines[1:]:
        words = line.split()
        if not words:
            continue
        keyword = words[0].upper()
        if keyword in dropped:
            continue
        params = words[1:]
        feats.keywords[keyword] = " ".join(params)
        if keyword == "PIPELINING":
            feats.pipelining = True
        elif keyword == "SIZE":
            feats.size = True
            if params and params[0].isdigit():
                feats.size_limit = int(params[0])
        elif keyword == "8BITMIME":
            feats.eightbitmime = True
        elif keyword == "SMTPUTF8":
            feats.smtputf8 = True
        elif keyword == "DSN":
            feats.dsn = True
        elif keyword == "CHUNKING":
            feats.chunking = True
        elif keyword == "STARTTLS":
            feats.starttls = True
        elif keyword == "ENHANCEDSTATUSCODES":
            feats.enhancedstatuscodes = True
        elif keyword == "AUTH" or (keyword.startswith("AUTH=") and not feats.auth):
            # "AUTH=LOGIN PLAIN" is the pre-RFC 2554 form some servers still send.
            mechs = params if keyword == "AUTH" else [keyword[5:], *params]
            feats.auth = tuple(m.upper() for m in mechs if m)
    return feats


def xtext(value: str) -> str:
    """RFC 3461 §4 xtext: ``+`` and ``=``, controls and non-ASCII as ``+HH``."""
    out: list[str] = []
    for byte in value.encode("utf-8", "surrogateescape"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


_SPECIALS = set('()<>[]:;@\\,." ')


def quote_mailbox(address: str, quote: bool = True) -> str:
    """An envelope address in RFC 5321 form: the local part quoted when it needs it
    (``smtp_quote_rfc821_envelope``, RFC 5321 §4.1.2 Quoted-string)."""
    if not quote or not address:
        return address
    at = address.rfind("@")
    local, domain = (address[:at], address[at:]) if at > 0 else (address, "")
    if local.startswith('"') and local.endswith('"') and len(local) > 1:
        return address
    atoms = local.split(".")
    needs = any(not atom or any(ch in _SPECIALS or ord(ch) < 33 for ch in atom) for atom in atoms)
    if not needs:
        return address
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"{domain}'


def mail_from(sender: str, feats: Features, *, size: int | None, body_8bit: bool, smtputf8: bool,
              ret: str | None, envid: str | None, quote: bool = True) -> str:
    """The MAIL FROM command line (without CRLF) with the ESMTP parameters the server
    announced: SIZE (RFC 1870), BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531),
    RET and ENVID (RFC 3461 §4.3, §4.4)."""
    parts = [f"MAIL FROM:<{quote_mailbox(sender, quote)}>"]
    if feats.size and size is not None:
        parts.append(f"SIZE={size}")
    if body_8bit and feats.eightbitmime:
        parts.append("BODY=8BITMIME")
    if smtputf8 and feats.smtputf8:
        parts.append("SMTPUTF8")
    if feats.dsn:
        if ret:
            parts.append(f"RET={ret.upper()}")
        if envid:
            parts.append(f"ENVID={xtext(envid)}")
    return " ".join(parts)


def rcpt_to(address: str, feats: Features, *, notify: Iterable[str] = (), orcpt: str | None = None,
            quote: bool = True) -> str:
    """The RCPT TO command line with NOTIFY and ORCPT when the server offers DSN
    (RFC 3461 §4.1, §4.2).  ``orcpt`` is ``addr-type;address`` or a bare address."""
    parts = [f"RCPT TO:<{quote_mailbox(address, quote)}>"]
    if feats.dsn:
        words = sorted({w.upper() for w in notify}, key=_NOTIFY_ORDER.index)
        if words:
            parts.append("NOTIFY=" + ",".join(words))
        if orcpt:
            kind, sep, value = orcpt.partition(";")
            if not sep:
                kind, value = "rfc822", orcpt
            parts.append(f"ORCPT={kind};{xtext(value)}")
    return " ".join(parts)


_NOTIFY_ORDER = ["NEVER", "SUCCESS", "FAILURE", "DELAY"]


def dsn_of(reply: Reply) -> str:
    """The reply's enhanced status code, or ``X.0.0`` of its class (as Postfix)."""
    if reply.status is not None:
        return reply.status
    return f"{reply.code // 100}.0.0"


def reply_text(reply: Reply) -> str:
    """A reply as one line: ``550 5.1.1 text continued`` (multi-line text joined by spaces)."""
    prefix = f"{reply.code} {reply.status} " if reply.status else f"{reply.code} "
    return prefix + " ".join(line for line in reply.lines if line) if any(reply.lines) else prefix.rstrip()


def said_text(server: str, reply: Reply, command: str) -> str:
    """``host NAME[ADDR] said: REPLY (in reply to COMMAND command)``."""
    return f"host {server} said: {reply_text(reply)} (in reply to {command} command)"


#: What the client was doing when a connection broke (Postfix's phrases).
STAGE_GREETING = "receiving the initial server greeting"
STAGE_HELO = "performing the EHLO handshake"
STAGE_LHLO = "performing the LHLO handshake"
STAGE_STARTTLS = "sending STARTTLS"
STAGE_AUTH = "performing SASL authentication"
STAGE_MAIL = "sending MAIL FROM"
STAGE_RCPT = "sending RCPT TO"
STAGE_DATA = "sending DATA command"
STAGE_BODY = "sending message body"
STAGE_DOT = "sending end of data -- message may be sent more than once"
STAGE_RSET = "sending RSET"


def lost_text(server: str, stage: str) -> str:
    return f"lost connection with {server} while {stage}"


def timeout_text(server: str, stage: str) -> str:
    return f"conversation with {server} timed out while {stage}"


class DotStuffer:
    """LF-terminated message bytes in, SMTP DATA wire bytes out (CRLF, dot-stuffed).

    A line starting with ``.`` gets a second dot (RFC 5321 §4.5.2); a stray CR
    before LF is kept as the line end's CR.  :meth:`end` closes the message
    with ``CRLF.CRLF``, adding the line end a last partial line lacks.
    """

    def __init__(self, stuff: bool = True) -> None:
        self._bol = True
        self._stuff = stuff

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        out = bytearray()
        start = 0
        n = len(data)
        while start < n:
            if self._bol and self._stuff and data[start] == 0x2E:
                out += b"."
            nl = data.find(b"\n", start)
            if nl < 0:
                out += data[start:]
                self._bol = False
                break
            line = data[start:nl]
            if line.endswith(b"\r"):
                line = line[:-1]
            out += line
            out += b"\r\n"
            self._bol = True
            start = nl + 1
        return bytes(out)

    def end(self) -> bytes:
        if not self._stuff:
            return b"" if self._bol else b"\r\n"
        return b".\r\n" if self._bol else b"\r\n.\r\n"


def lines_of(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines (with their LF) from chunks; a last line without LF as it is."""
    pending = b""
    for chunk in chunks:
        if not chunk:
            continue
        data = pending + chunk if pending else chunk
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            yield data[start:nl + 1]
            start = nl + 1
        pending = data[start:]
    if pending:
        yield pending

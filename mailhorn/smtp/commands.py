"""SMTP/LMTP command parsing: one command line in, one typed command out.

`parse_command(text, lmtp=...)` turns a command line (without its CRLF) into
a frozen dataclass per verb, or raises `SmtpReplyError` with the reply
Postfix's smtpd gives for that syntax error.  Syntax only: whether a command
is allowed now (session order) is the engine's business, whether it is
welcome (restrictions) is smtpd's.

Rules, as Postfix 3.7 applies them (``strict_rfc821_envelopes = no``):

- Verbs are case-insensitive; words are separated by spaces or tabs, except
  inside a double-quoted string (so ``<"a b"@c>`` is one word, ``<a b@c>``
  two, and a bad address).
- ``MAIL FROM:`` / ``RCPT TO:`` take the address from the rest of the first
  word or, when that is empty, from the next word (``MAIL FROM: <a@b>``).
  Angle brackets may be missing (``MAIL FROM: fribeiro``).  A source route
  ``<@a,@b:u@c>`` is accepted and dropped (RFC 5321 §4.1.2, appendix C).
  Text after the closing ``>`` (``<a@b>@c``), an unbalanced bracket or quote,
  a comma outside quotes or a NUL make the address bad: ``501 5.1.7 Bad
  sender address syntax`` / ``501 5.1.3 Bad recipient address syntax``.
  ``RCPT TO:<>`` is a bad recipient.
- ESMTP parameters (RFC 5321 §4.1.2 esmtp-param): SIZE (RFC 1870), BODY
  (RFC 6152; BINARYMIME of RFC 3030 only when enabled), SMTPUTF8 (RFC 6531),
  RET / ENVID (RFC 3461 §4.3, §4.4), AUTH (RFC 4954 §5), NOTIFY / ORCPT
  (RFC 3461 §4.1, §4.2).  xtext is decoded per RFC 3461 §4.  Unknown
  parameters get ``555 5.5.4 Unsupported option: X``.

Parameters read: none (the engine passes ``lmtp`` and ``binarymime``).
Errors: `SmtpReplyError` with `Blame.PEER`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Union

from mailhorn.smtp import reply as R
from mailhorn.smtp.reply import Reply, SmtpReplyError

__all__ = [
    "Auth", "Bdat", "Command", "Data", "Etrn", "Hello", "Help", "Mail",
    "MailParams", "Noop", "Path", "Quit", "Rcpt", "RcptParams", "Rset",
    "StartTls", "Unknown", "Vrfy", "Xclient", "Xforward",
    "decode_xtext", "encode_xtext", "parse_command", "parse_path", "split_words",
]

# Largest SIZE / BDAT count we represent (off_t in Postfix).
MAX_OCTETS: Final = 2**63 - 1
# Word separators: Postfix splits commands on any white space, so a stray CR
# before the CRLF is a separator too.
_SPACE: Final = " \t\r\f\v"
#: A word of a command line without quotes (split_words' fast path).
_WORDS: Final = re.compile(r"[^ \t\r\f\v]+")
#: What a mailbox without quotes may not contain (_check_mailbox's fast path).
_BAD_UNQUOTED: Final = re.compile(r"[\0<>, \t\r\f\v]")
_NOTIFY_WORDS: Final = frozenset({"SUCCESS", "FAILURE", "DELAY"})


@dataclass(frozen=True, slots=True)
class Path:
    """A reverse-path or forward-path (RFC 5321 §4.1.2) without brackets.

    ``address`` is the mailbox as the client wrote it (quotes kept, source
    route dropped); ``""`` is the null reverse-path ``<>``.
    """

    address: str
    route: tuple[str, ...] = ()

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, address: str, route: tuple[str, ...] = ()) -> None:
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "route", route)

    @property
    def is_null(self) -> bool:
        return self.address == ""

    @property
    def local_part(self) -> str:
        """The local part, unquoted (RFC 5321 §4.1.2 Quoted-string)."""
        at = _last_at(self.address)
        local = self.address if at < 0 else self.address[:at]
        return _unquote(local)

    @property
    def domain(self) -> str:
        at = _last_at(self.address)
        return "" if at < 0 else self.address[at + 1 :]

    @property
    def overlong(self) -> bool:
        """Over RFC 5321 §4.5.3.1.1/§4.5.3.1.2 limits (64-octet local part,
        255-octet domain).  Postfix accepts such paths at the syntax stage;
        this is for restrictions that want to refuse them."""
        return len(self.local_part.encode("utf-8", "surrogateescape")) > 64 or len(
            self.domain.encode("utf-8", "surrogateescape")
        ) > 255


@dataclass(frozen=True, slots=True)
class MailParams:
    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None
    auth: str | None = None

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, size: int | None = None, body: str | None = None, smtputf8: bool = False,
                 ret: str | None = None, envid: str | None = None, auth: str | None = None) -> None:
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "smtputf8", smtputf8)
        object.__setattr__(self, "ret", ret)
        object.__setattr__(self, "envid", envid)
        object.__setattr__(self, "auth", auth)


@dataclass(frozen=True, slots=True)
class RcptParams:
    notify: tuple[str, ...] | None = None
    orcpt: tuple[str, str] | None = None  # (addr-type, decoded address)

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, notify: tuple[str, ...] | None = None, orcpt: tuple[str, str] | None = None) -> None:
        object.__setattr__(self, "notify", notify)
        object.__setattr__(self, "orcpt", orcpt)


@dataclass(frozen=True, slots=True)
class Hello:
    verb: str  # "HELO", "EHLO" or "LHLO"
    hostname: str

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, verb: str, hostname: str) -> None:
        object.__setattr__(self, "verb", verb)
        object.__setattr__(self, "hostname", hostname)

    @property
    def extended(self) -> bool:
        """EHLO or LHLO: the client wants the extension list."""
        return self.verb != "HELO"


@dataclass(frozen=True, slots=True)
class Mail:
    path: Path
    params: MailParams

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, path: Path, params: MailParams) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "params", params)


@dataclass(frozen=True, slots=True)
class Rcpt:
    path: Path
    params: RcptParams

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, path: Path, params: RcptParams) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "params", params)


@dataclass(frozen=True, slots=True)
class Data:
    argument: str  # must be empty; the engine checks it after the session order

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, argument: str) -> None:
        object.__setattr__(self, "argument", argument)


@dataclass(frozen=True, slots=True)
class Bdat:
    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str
    smtputf8: bool


@dataclass(frozen=True, slots=True)
class Etrn:
    argument: str


@dataclass(frozen=True, slots=True)
class Help:
    argument: str


@dataclass(frozen=True, slots=True)
class StartTls:
    pass


@dataclass(frozen=True, slots=True)
class Auth:
    mechanism: str
    initial_response: str | None


@dataclass(frozen=True, slots=True)
class Xforward:
    attributes: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Xclient:
    attributes: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Unknown:
    verb: str
    line: str


Command = Union[
    Hello, Mail, Rcpt, Data, Bdat, Rset, Noop, Quit, Vrfy, Etrn, Help,
    StartTls, Auth, Xforward, Xclient, Unknown,
]


# --- words, xtext ---------------------------------------------------------


def split_words(text: str) -> list[str]:
    """Split on white space outside double quotes (backslash escapes inside
    quotes).  An unterminated quote runs to the end of the line."""
    if '"' not in text:
        return _WORDS.findall(text)
    words: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quoted:
            cur.append(ch)
            if ch == "\\" and i + 1 < n:
                cur.append(text[i + 1])
                i += 1
            elif ch == '"':
                quoted = False
        elif ch in _SPACE:
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
            if ch == '"':
                quoted = True
        i += 1
    if cur:
        words.append("".join(cur))
    return words


def decode_xtext(text: str) -> str | None:
    """Decode RFC 3461 §4 xtext; None if malformed.  Like Postfix, any
    printable US-ASCII character other than ``+`` stands for itself, and
    ``+`` must be followed by two hex digits."""
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        o = ord(ch)
        if ch == "+":
            hexpart = text[i + 1 : i + 3]
            if len(hexpart) != 2 or any(c not in "0123456789ABCDEFabcdef" for c in hexpart):
                return None
            out.append(int(hexpart, 16))
            i += 3
            continue
        if o < 33 or o > 126:
            return None
        out.append(o)
        i += 1
    return out.decode("utf-8", "surrogateescape")


def encode_xtext(text: str) -> str:
    """Encode as RFC 3461 §4 xtext (``+``, ``=``, controls and non-ASCII
    as ``+HH``)."""
    out: list[str] = []
    for b in text.encode("utf-8", "surrogateescape"):
        if 33 <= b <= 126 and b not in (0x2B, 0x3D):
            out.append(chr(b))
        else:
            out.append(f"+{b:02X}")
    return "".join(out)


# --- paths ----------------------------------------------------------------


def _last_at(address: str) -> int:
    """Index of the last ``@`` outside quotes, or -1."""
    quoted = False
    at = -1
    i = 0
    while i < len(address):
        ch = address[i]
        if quoted and ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "@" and not quoted:
            at = i
        i += 1
    return at


def _unquote(local: str) -> str:
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        body = local[1:-1]
        out: list[str] = []
        i = 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            out.append(body[i])
            i += 1
        return "".join(out)
    return local


def _check_mailbox(text: str) -> bool:
    """Reject what Postfix's address parser refuses: NUL, brackets, commas
    and whitespace outside quotes, unbalanced quotes.  Other characters,
    controls included, pass: Postfix leaves them to restrictions."""
    if '"' not in text:
        return _BAD_UNQUOTED.search(text) is None
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\0":
            return False
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "<>," or ch in _SPACE:
            return False
        i += 1
    return not quoted


def parse_path(word: str) -> Path:
    """Parse the address word of MAIL FROM / RCPT TO; `ValueError` if bad."""
    inner = word
    if inner.startswith("<"):
        # Postfix tolerates redundant brackets: <<a@b>>.
        while inner.startswith("<"):
            if not inner.endswith(">") or len(inner) < 2:
                raise ValueError("unbalanced angle brackets")
            inner = inner[1:-1]
    elif inner.endswith(">"):
        # strict_rfc821_envelopes = no: "a@b>" is taken as a@b.
        inner = inner[:-1]
    route: tuple[str, ...] = ()
    colon = inner.find(":")
    if inner.startswith("@") and colon >= 0:
        hops = inner[:colon].split(",")
        if any(len(h) < 2 or not h.startswith("@") for h in hops):
            raise ValueError("bad source route")
        route = tuple(h[1:] for h in hops)
        inner = inner[colon + 1 :]
        if not inner:
            raise ValueError("source route without mailbox")
    if not _check_mailbox(inner):
        raise ValueError("bad mailbox syntax")
    return Path(inner, route)


# --- parameters -----------------------------------------------------------


def _parse_mail_params(words: list[str], binarymime: bool) -> MailParams:
    size: int | None = None
    body: str | None = None
    smtputf8 = False
    ret: str | None = None
    envid: str | None = None
    auth: str | None = None
    for word in words:
        key, eq, value = word.partition("=")
        key = key.upper()
        if key == "SIZE" and eq:
            if not value.isascii() or not value.isdigit():
                raise SmtpReplyError(R.BAD_SIZE_SYNTAX)
            size = int(value)
            if size > MAX_OCTETS:
                raise SmtpReplyError(R.SIZE_EXCEEDS_FS_LIMIT)
        elif key == "BODY" and eq:
            v = value.upper()
            if v in ("7BIT", "8BITMIME") or (v == "BINARYMIME" and binarymime):
                body = v
            else:
                raise SmtpReplyError(R.unsupported_option(word))
        elif key == "SMTPUTF8" and not eq:
            smtputf8 = True
        elif key == "RET" and eq:
            v = value.upper()
            if ret is not None or v not in ("FULL", "HDRS"):
                raise SmtpReplyError(R.BAD_RET_SYNTAX)
            ret = v
        elif key == "ENVID" and eq:
            decoded = decode_xtext(value)
            if envid is not None or not value or decoded is None:
                raise SmtpReplyError(R.BAD_ENVID_SYNTAX)
            envid = decoded
        elif key == "AUTH" and eq:
            # RFC 4954 §5: xtext, "<>" for an unknown submitter.
            decoded = decode_xtext(value)
            auth = value if decoded is None else decoded
        else:
            raise SmtpReplyError(R.unsupported_option(word))
    return MailParams(size, body, smtputf8, ret, envid, auth)


def _parse_rcpt_params(words: list[str]) -> RcptParams:
    notify: tuple[str, ...] | None = None
    orcpt: tuple[str, str] | None = None
    for word in words:
        key, eq, value = word.partition("=")
        key = key.upper()
        if key == "NOTIFY" and eq:
            items = tuple(v.upper() for v in value.split(","))
            valid = items == ("NEVER",) or (
                all(v in _NOTIFY_WORDS for v in items) and len(set(items)) == len(items)
            )
            if notify is not None or not value or not valid:
                raise SmtpReplyError(R.BAD_NOTIFY_SYNTAX)
            notify = items
        elif key == "ORCPT" and eq:
            addr_type, semi, xtext = value.partition(";")
            decoded = decode_xtext(xtext)
            if orcpt is not None or not semi or not addr_type or decoded is None:
                raise SmtpReplyError(R.BAD_ORCPT_SYNTAX)
            orcpt = (addr_type, decoded)
        else:
            raise SmtpReplyError(R.unsupported_option(word))
    return RcptParams(notify, orcpt)


def _path_words(words: list[str], keyword: str) -> tuple[str, list[str]] | None:
    """For ``MAIL FROM:x`` / ``RCPT TO:x``: (address word, parameter words)."""
    if not words or not words[0].upper().startswith(keyword):
        return None
    rest = words[0][len(keyword) :]
    if rest:
        return rest, words[1:]
    if len(words) < 2:
        return None
    return words[1], words[2:]


# --- commands -------------------------------------------------------------


def _hello(verb: str, rest: str, syntax: Reply) -> Hello:
    if not rest:
        raise SmtpReplyError(syntax)
    return Hello(verb, rest)


def _mail(words: list[str], binarymime: bool) -> Mail:
    pw = _path_words(words, "FROM:")
    if pw is None:
        raise SmtpReplyError(R.SYNTAX_MAIL)
    try:
        path = parse_path(pw[0])
    except ValueError:
        raise SmtpReplyError(R.BAD_SENDER_SYNTAX) from None
    return Mail(path, _parse_mail_params(pw[1], binarymime))


def _rcpt(words: list[str]) -> Rcpt:
    pw = _path_words(words, "TO:")
    if pw is None:
        raise SmtpReplyError(R.SYNTAX_RCPT)
    try:
        path = parse_path(pw[0])
    except ValueError:
        raise SmtpReplyError(R.BAD_RECIPIENT_SYNTAX) from None
    if path.is_null:
        raise SmtpReplyError(R.BAD_RECIPIENT_SYNTAX)
    return Rcpt(path, _parse_rcpt_params(pw[1]))


def _bdat(words: list[str]) -> Bdat:
    if not 1 <= len(words) <= 2:
        raise SmtpReplyError(R.SYNTAX_BDAT)
    count = words[0]
    if not count.isascii() or not count.isdigit() or int(count) > MAX_OCTETS:
        raise SmtpReplyError(R.SYNTAX_BDAT)
    last = False
    if len(words) == 2:
        if words[1].upper() != "LAST":
            raise SmtpReplyError(R.SYNTAX_BDAT)
        last = True
    return Bdat(int(count), last)


def _attributes(words: list[str], syntax: Reply) -> tuple[tuple[str, str], ...]:
    if not words:
        raise SmtpReplyError(syntax)
    attrs: list[tuple[str, str]] = []
    for word in words:
        name, eq, value = word.partition("=")
        decoded = decode_xtext(value) if value else ""
        if not eq or not name or decoded is None:
            raise SmtpReplyError(syntax)
        attrs.append((name.upper(), decoded))
    return tuple(attrs)


def _vrfy(words: list[str], rest: str) -> Vrfy:
    if not words:
        raise SmtpReplyError(R.SYNTAX_VRFY)
    if len(words) > 1 and words[-1].upper() == "SMTPUTF8":
        return Vrfy(" ".join(words[:-1]), True)
    return Vrfy(rest, False)


def _auth(words: list[str]) -> Auth:
    if not 1 <= len(words) <= 2:
        raise SmtpReplyError(R.SYNTAX_AUTH)
    return Auth(words[0].upper(), words[1] if len(words) == 2 else None)


def _no_args(words: list[str], cmd: Command, syntax: Reply) -> Command:
    if words:
        raise SmtpReplyError(syntax)
    return cmd


def parse_command(text: str, *, lmtp: bool = False, binarymime: bool = False) -> Command:
    """Parse one command line (decoded, without CRLF).

    Raises `SmtpReplyError` with Postfix's reply for a syntax error.
    """
    stripped = text.strip(_SPACE)
    if not stripped:
        raise SmtpReplyError(R.BAD_SYNTAX)
    words = split_words(stripped)
    verb = words[0].upper()
    args = words[1:]
    rest = stripped[len(words[0]) :].strip(_SPACE)
    if verb == "HELO" and not lmtp:
        return _hello(verb, rest, R.SYNTAX_HELO)
    if verb == "EHLO" and not lmtp:
        return _hello(verb, rest, R.SYNTAX_EHLO)
    if verb == "LHLO" and lmtp:
        return _hello(verb, rest, R.SYNTAX_LHLO)
    if verb == "MAIL":
        return _mail(args, binarymime)
    if verb == "RCPT":
        return _rcpt(args)
    if verb == "DATA":
        return Data(rest)
    if verb == "BDAT":
        return _bdat(args)
    if verb == "RSET":
        return _no_args(args, Rset(), R.SYNTAX_RSET)
    if verb == "NOOP":
        return Noop()
    if verb == "QUIT":
        return Quit()
    if verb == "VRFY":
        return _vrfy(args, rest)
    if verb == "ETRN":
        if not rest:
            raise SmtpReplyError(R.SYNTAX_ETRN)
        return Etrn(rest)
    if verb == "HELP":
        return Help(rest)
    if verb == "STARTTLS":
        return _no_args(args, StartTls(), R.SYNTAX_STARTTLS)
    if verb == "AUTH":
        return _auth(args)
    if verb == "XFORWARD":
        return Xforward(_attributes(args, R.SYNTAX_XFORWARD))
    if verb == "XCLIENT":
        return Xclient(_attributes(args, R.SYNTAX_XCLIENT))
    return Unknown(words[0], text)


def looks_like_header(text: str) -> bool:
    """True for a line like ``Subject: x``: a message header sent as a
    command.  Postfix answers such lines (and smtpd_forbidden_commands) with
    ``221 2.7.0 Error: I can break rules, too. Goodbye.``"""
    name, colon, _ = text.partition(":")
    return bool(colon) and bool(name) and all(33 <= ord(c) <= 126 and c != ":" for c in name)

"""The IMAP command table: each command's argument parser and where it is allowed.

What it does
    :data:`COMMANDS` maps a command name to a :class:`CommandSpec`: the
    function that parses its arguments (a :class:`~mailhorn.imap.parse.Reader`
    positioned after the name) into a typed value, and the session states
    in which it may run (RFC 3501 §3: not authenticated, authenticated,
    selected; logout accepts nothing). ``UID`` is a prefix handled by
    :func:`parse_command`.

    FETCH items (RFC 3501 §6.4.5, macros ALL/FAST/FULL), STORE flags
    (§6.4.6), and SEARCH keys (§6.4.4, with CHARSET) are parsed here.

Errors
    :class:`~mailhorn.imap.parse.ParseError` (BAD) with Dovecot's texts,
    :class:`~mailhorn.imap.parse.ParseNo` (NO).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from mailhorn.imap.message import SectionSpec
from mailhorn.imap.parse import (
    MAX_DEPTH,
    SYSTEM_FLAGS,
    Append,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Copy,
    Create,
    Delete,
    Enable,
    Expunge,
    Fetch,
    FetchAttr,
    GetQuota,
    GetQuotaRoot,
    Id,
    Idle,
    ListCmd,
    Login,
    Logout,
    Namespace,
    Noop,
    ParseError,
    Piece,
    Reader,
    Rename,
    Search,
    SearchKey,
    Select,
    SetQuota,
    StartTls,
    Status,
    Store,
    Subscribe,
    Unselect,
    decode_mailbox,
    parse_date,
    parse_seqset,
)


class State(enum.Flag):
    """RFC 3501 §3 session states a command may run in."""

    NOT_AUTH = enum.auto()
    AUTH = enum.auto()
    SELECTED = enum.auto()
    ANY = NOT_AUTH | AUTH | SELECTED
    AUTHED = AUTH | SELECTED


Parser = Callable[[Reader, bool], Command]


@dataclass(frozen=True)
class CommandSpec:
    parse: Parser
    states: State
    uid_ok: bool = False


def _none(cls: Callable[[], Command]) -> Parser:
    def parse(r: Reader, uid: bool) -> Command:
        r.end()
        return cls()
    return parse


def _login(r: Reader, uid: bool) -> Command:
    r.sp()
    user = r.astring()
    r.sp()
    password = r.astring()
    r.end()
    return Login(user, password)


def _authenticate(r: Reader, uid: bool) -> Command:
    r.sp()
    mech = r.atom().decode("ascii").upper()
    initial = None
    if r.maybe(b" "):
        initial = r.atom(extra=frozenset(b"="))
    r.end()
    return Authenticate(mech, initial)


def _id(r: Reader, uid: bool) -> Command:
    r.sp()
    if r.peek() != 0x28:
        if r.nstring() is not None:
            raise ParseError("Invalid arguments")
        r.end()
        return Id(None)
    r.open_list()
    params: list[tuple[bytes, bytes | None]] = []
    while not r.close_list():
        if params:
            r.sp()
        key = r.string()
        r.sp()
        params.append((key, r.nstring()))
    r.end()
    return Id(tuple(params))


def _enable(r: Reader, uid: bool) -> Command:
    caps: list[str] = []
    while r.maybe(b" "):
        caps.append(r.atom().decode("ascii").upper())
    if not caps:
        raise ParseError("Invalid arguments")
    r.end()
    return Enable(tuple(caps))


def _mailbox_only(make: Callable[[str], Command]) -> Parser:
    def parse(r: Reader, uid: bool) -> Command:
        r.sp()
        name = r.mailbox()
        r.end()
        return make(name)
    return parse


def _create(r: Reader, uid: bool) -> Command:
    r.sp()
    name = r.mailbox()
    if r.maybe(b" "):
        # RFC 6154 §3: CREATE name (USE (\\Sent …)); accepted, attributes come from names.
        r.open_list()
        if r.atom().upper() != b"USE":
            raise ParseError("Invalid arguments")
        r.sp()
        _flag_list(r)
        if not r.close_list():
            raise ParseError("Invalid arguments")
    r.end()
    return Create(name)


def _rename(r: Reader, uid: bool) -> Command:
    r.sp()
    old = r.mailbox()
    r.sp()
    new = r.mailbox()
    r.end()
    return Rename(old, new)


def _list_mailbox(r: Reader) -> str:
    """``list-mailbox``: astring or atom with ``%`` and ``*`` (RFC 3501 §9)."""
    if r.at_literal() or r.peek() == 0x22:
        raw = r.string()
    else:
        raw = r.atom(extra=frozenset(b"%*]"))
    if raw.upper() == b"INBOX":
        return "INBOX"
    return decode_mailbox(raw) if raw else ""


def _list(lsub: bool) -> Parser:
    def parse(r: Reader, uid: bool) -> Command:
        r.sp()
        select: list[bytes] = []
        if not lsub and r.peek() == 0x28:
            select = r.list_of(lambda: r.atom())
            r.sp()
        ref = _list_mailbox(r)
        r.sp()
        if not lsub and r.peek() == 0x28:
            r.open_list()
            patterns: list[str] = []
            while not r.close_list():
                if patterns:
                    r.sp()
                patterns.append(_list_mailbox(r))
        else:
            patterns = [_list_mailbox(r)]
        ret: list[bytes] = []
        if not lsub and r.maybe(b" "):
            if r.atom().upper() != b"RETURN":
                raise ParseError("Invalid arguments")
            r.sp()
            ret = r.list_of(lambda: r.atom())
        r.end()
        return ListCmd(ref, tuple(patterns), lsub,
                       tuple(s.decode("ascii").upper() for s in select),
                       tuple(s.decode("ascii").upper() for s in ret))
    return parse


_STATUS_ITEMS = frozenset({"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE"})


def _status(r: Reader, uid: bool) -> Command:
    r.sp()
    name = r.mailbox()
    r.sp()
    items = [i.decode("ascii").upper() for i in r.list_of(lambda: r.atom())]
    if not items or any(i not in _STATUS_ITEMS for i in items):
        raise ParseError("Invalid status item")
    r.end()
    return Status(name, tuple(items))


def _flag(r: Reader) -> str:
    if r.maybe(b"\\"):
        if r.maybe(b"*"):
            return "\\*"
        word = "\\" + r.atom().decode("ascii", "replace")
        for known in (*SYSTEM_FLAGS, "\\Recent"):
            if word.lower() == known.lower():
                return known
        return word
    return r.atom(extra=frozenset(b"]")).decode("utf-8", "replace")


def _flag_list(r: Reader) -> list[str]:
    r.open_list()
    out: list[str] = []
    while not r.close_list():
        if out:
            r.sp()
        out.append(_flag(r))
    return out


def parse_append_head(pieces: list[Piece]) -> tuple[str, list[str], bytes | None]:
    """APPEND's arguments before the literal: mailbox, flags, raw date-time (or None)."""
    r = Reader(pieces)
    r.sp()
    name = r.mailbox()
    r.sp()
    flags: list[str] = []
    date: bytes | None = None
    if r.peek() == 0x28:
        flags = _flag_list(r)
        r.sp()
    if r.peek() == 0x22:
        date = r.quoted()
        r.sp()
    if not r.at_end():
        raise ParseError("Invalid arguments")
    return name, flags, date


# --- FETCH -------------------------------------------------------------------------------

_FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_FETCH_SIMPLE = frozenset({"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER",
                           "RFC822.SIZE", "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID"})


def _section(r: Reader) -> SectionSpec:
    r.expect(b"[")
    text = bytearray()
    while r.peek() not in (0x5D, 0x20, 0, -1):
        text.append(r.peek())
        r.pos += 1
    spec = text.decode("ascii", "replace").upper()
    parts = spec.split(".") if spec else []
    path: list[int] = []
    while parts and parts[0].isdigit():
        n = int(parts.pop(0))
        if n == 0:
            raise ParseError("Invalid BODY[..] parameter: Invalid section")
        path.append(n)
    rest = ".".join(parts)
    fields: tuple[bytes, ...] = ()
    if rest in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        r.sp()
        names = r.list_of(lambda: r.astring())
        if not names:
            raise ParseError("Invalid BODY[..] parameter: Empty header fields list")
        fields = tuple(n.upper() for n in names)
    elif rest not in ("", "HEADER", "TEXT", "MIME") or (rest == "MIME" and not path):
        raise ParseError("Invalid BODY[..] parameter: Unknown section name")
    r.expect(b"]")
    return SectionSpec(tuple(path), rest, fields)


def _fetch_attr(r: Reader) -> list[FetchAttr]:
    word = r.atom(stop=frozenset(b"[")).decode("ascii", "replace").upper()
    if word in _FETCH_MACROS:
        return [FetchAttr(n) for n in _FETCH_MACROS[word]]
    if word in ("BODY", "BODY.PEEK") and r.peek() == 0x5B:
        section = _section(r)
        partial = None
        if r.maybe(b"<"):
            start = bytearray()
            while r.peek() not in (0x3E, 0, -1):
                start.append(r.peek())
                r.pos += 1
            r.expect(b">")
            off, dot, length = bytes(start).partition(b".")
            if not off.isdigit() or not dot or not length.isdigit() or int(length) == 0:
                raise ParseError("Invalid BODY[..] parameter: Invalid partial")
            partial = (int(off), int(length))
        return [FetchAttr("BODY[]", section, partial, word == "BODY.PEEK")]
    if word in _FETCH_SIMPLE:
        return [FetchAttr(word)]
    raise ParseError(f"Unknown parameter {word}")


def _fetch(r: Reader, uid: bool) -> Command:
    r.sp()
    seqset = parse_seqset(r.atom(extra=frozenset(b"*")))
    r.sp()
    attrs: list[FetchAttr] = []
    if r.peek() == 0x28:
        r.open_list()
        while not r.close_list():
            if attrs:
                r.sp()
            attrs += _fetch_attr(r)
    else:
        attrs = _fetch_attr(r)
    r.end()
    if not attrs:
        raise ParseError("Invalid arguments")
    if uid and not any(a.name == "UID" for a in attrs):
        attrs.insert(0, FetchAttr("UID"))  # RFC 3501 §6.4.8: UID FETCH always returns UID
    return Fetch(seqset, tuple(attrs), uid)


def _store(r: Reader, uid: bool) -> Command:
    r.sp()
    seqset = parse_seqset(r.atom(extra=frozenset(b"*")))
    r.sp()
    item = r.atom().decode("ascii", "replace").upper()
    mode = item[0] if item[:1] in ("+", "-") else ""
    base = item.lstrip("+-")
    silent = base.endswith(".SILENT")
    if base.removesuffix(".SILENT") != "FLAGS":
        raise ParseError("Invalid arguments")
    r.sp()
    if r.peek() == 0x28:
        flags = _flag_list(r)
    else:
        flags = [_flag(r)]
        while r.maybe(b" "):
            flags.append(_flag(r))
    r.end()
    if any(f in ("\\Recent", "\\*") for f in flags):
        raise ParseError("Invalid system flag \\RECENT" if "\\Recent" in flags else "Invalid flags")
    return Store(seqset, mode, silent, tuple(flags), uid)


def _copy(move: bool) -> Parser:
    def parse(r: Reader, uid: bool) -> Command:
        r.sp()
        seqset = parse_seqset(r.atom(extra=frozenset(b"*")))
        r.sp()
        name = r.mailbox()
        r.end()
        return Copy(seqset, name, uid, move)
    return parse


def _expunge(r: Reader, uid: bool) -> Command:
    if uid:
        r.sp()
        seqset = parse_seqset(r.atom(extra=frozenset(b"*")))
        r.end()
        return Expunge(seqset)
    r.end()
    return Expunge()


def _getquota(r: Reader, uid: bool) -> Command:
    r.sp()
    root = r.astring()
    r.end()
    return GetQuota(root)


def _setquota(r: Reader, uid: bool) -> Command:
    r.sp()
    root = r.astring()
    r.sp()
    r.open_list()
    limits: list[tuple[str, int]] = []
    while not r.close_list():
        if limits:
            r.sp()
        name = r.atom().decode("ascii").upper()
        r.sp()
        limits.append((name, r.number()))
    r.end()
    return SetQuota(root, tuple(limits))


# --- SEARCH ------------------------------------------------------------------------------

_SEARCH_FLAG_KEYS = frozenset({"ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD",
                               "RECENT", "SEEN", "UNANSWERED", "UNDELETED", "UNDRAFT",
                               "UNFLAGGED", "UNSEEN"})
_SEARCH_STRING_KEYS = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
_SEARCH_DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})


def _search_key(r: Reader, depth: int) -> SearchKey:
    if depth > MAX_DEPTH:
        raise ParseError("Too deep nesting")
    if r.peek() == 0x28:
        r.open_list()
        keys = [_search_key(r, depth + 1)]
        while not r.close_list():
            r.sp()
            keys.append(_search_key(r, depth + 1))
        return keys[0] if len(keys) == 1 else SearchKey("AND", children=tuple(keys))
    c = r.peek()
    if c == 0x2A or 0x30 <= c <= 0x39:
        return SearchKey("SEQSET", (parse_seqset(r.atom(extra=frozenset(b"*"))),))
    word = r.atom().decode("ascii", "replace").upper()
    if word in _SEARCH_FLAG_KEYS:
        return SearchKey(word)
    if word in _SEARCH_STRING_KEYS:
        r.sp()
        return SearchKey(word, (r.astring(),))
    if word in _SEARCH_DATE_KEYS:
        r.sp()
        raw = r.quoted() if r.peek() == 0x22 else r.atom()
        return SearchKey(word, (parse_date(raw),))
    if word in ("KEYWORD", "UNKEYWORD"):
        r.sp()
        return SearchKey(word, (r.atom(extra=frozenset(b"]")).decode("utf-8", "replace"),))
    if word in ("LARGER", "SMALLER"):
        r.sp()
        return SearchKey(word, (r.number(),))
    if word == "HEADER":
        r.sp()
        name = r.astring()
        r.sp()
        return SearchKey(word, (name, r.astring()))
    if word == "UID":
        r.sp()
        return SearchKey(word, (parse_seqset(r.atom(extra=frozenset(b"*"))),))
    if word == "NOT":
        r.sp()
        return SearchKey("NOT", children=(_search_key(r, depth + 1),))
    if word == "OR":
        r.sp()
        a = _search_key(r, depth + 1)
        r.sp()
        return SearchKey("OR", children=(a, _search_key(r, depth + 1)))
    raise ParseError(f"Unknown argument {word}")


def _search(r: Reader, uid: bool) -> Command:
    r.sp()
    charset = None
    save = (r.index, r.pos)
    if r.peek() not in (0x28, -1, 0x22, 0x2A) and r.atom().upper() == b"CHARSET":
        r.sp()
        charset = r.astring().decode("ascii", "replace").upper()
        r.sp()
    else:
        r.index, r.pos = save
    keys = [_search_key(r, 0)]
    while r.maybe(b" "):
        keys.append(_search_key(r, 0))
    r.end()
    key = keys[0] if len(keys) == 1 else SearchKey("AND", children=tuple(keys))
    return Search(charset, key, uid)


A, U, S, N = State.ANY, State.AUTHED, State.SELECTED, State.NOT_AUTH

#: Every command mailhorn knows (RFC 3501 §6 and the extensions of issue "IMAP4rev1").
COMMANDS: dict[str, CommandSpec] = {
    "CAPABILITY": CommandSpec(_none(Capability), A),
    "NOOP": CommandSpec(_none(Noop), A),
    "LOGOUT": CommandSpec(_none(Logout), A),
    "ID": CommandSpec(_id, A),
    "STARTTLS": CommandSpec(_none(StartTls), N),
    "AUTHENTICATE": CommandSpec(_authenticate, N),
    "LOGIN": CommandSpec(_login, N),
    "ENABLE": CommandSpec(_enable, U),
    "SELECT": CommandSpec(_mailbox_only(lambda m: Select(m, False)), U),
    "EXAMINE": CommandSpec(_mailbox_only(lambda m: Select(m, True)), U),
    "CREATE": CommandSpec(_create, U),
    "DELETE": CommandSpec(_mailbox_only(Delete), U),
    "RENAME": CommandSpec(_rename, U),
    "SUBSCRIBE": CommandSpec(_mailbox_only(lambda m: Subscribe(m, True)), U),
    "UNSUBSCRIBE": CommandSpec(_mailbox_only(lambda m: Subscribe(m, False)), U),
    "LIST": CommandSpec(_list(False), U),
    "LSUB": CommandSpec(_list(True), U),
    "STATUS": CommandSpec(_status, U),
    "NAMESPACE": CommandSpec(_none(Namespace), U),
    "IDLE": CommandSpec(_none(Idle), U),
    "GETQUOTA": CommandSpec(_getquota, U),
    "GETQUOTAROOT": CommandSpec(_mailbox_only(GetQuotaRoot), U),
    "SETQUOTA": CommandSpec(_setquota, U),
    "CHECK": CommandSpec(_none(Check), S),
    "CLOSE": CommandSpec(_none(Close), S),
    "UNSELECT": CommandSpec(_none(Unselect), S),
    "EXPUNGE": CommandSpec(_expunge, S, uid_ok=True),
    "SEARCH": CommandSpec(_search, S, uid_ok=True),
    "FETCH": CommandSpec(_fetch, S, uid_ok=True),
    "STORE": CommandSpec(_store, S, uid_ok=True),
    "COPY": CommandSpec(_copy(False), S, uid_ok=True),
    "MOVE": CommandSpec(_copy(True), S, uid_ok=True),
}
#: APPEND is framed by the codec (its literal is the message), not parsed here.
APPEND_STATES = U


def parse_command(name: str, pieces: list[Piece]) -> tuple[Command, CommandSpec, bool]:
    """Parse the arguments of ``name`` (upper case; ``UID`` prefix handled): (command, spec, uid)."""
    uid = False
    r = Reader(pieces)
    if name == "UID":
        r.sp()
        name = r.atom().decode("ascii", "replace").upper()
        uid = True
    spec = COMMANDS.get(name)
    if spec is None or (uid and not spec.uid_ok):
        raise ParseError("Unknown command")
    return spec.parse(r, uid), spec, uid


__all__ = ["APPEND_STATES", "COMMANDS", "CommandSpec", "State", "parse_append_head",
           "parse_command", "Append"]

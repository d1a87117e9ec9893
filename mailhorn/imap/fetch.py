"""FETCH: the items of one message, in the order Dovecot sends them (RFC 3501 §6.4.5, §7.4.2).

What it does
    :func:`fetch_items` turns the FETCH attributes of a command and one
    message into the ``(name, value)`` list that
    :func:`mailhorn.imap.codec.fetch_response` writes. Values are bytes, or
    ``(size, chunks)`` for sections sent as literals, streamed from the
    message file without reading it whole (design.md §5 rule 7).

    Order, as Dovecot 2.3 answers (checked against its ``imap``): first the
    cheap items in the order asked (``UID``, ``FLAGS``, ``INTERNALDATE``,
    ``RFC822.SIZE``), then the FLAGS that a non-PEEK body fetch changed
    (when FLAGS was not asked for), then the others in the order asked
    (``ENVELOPE``, ``BODY``, ``BODYSTRUCTURE``, ``BODY[…]``, ``RFC822``,
    ``RFC822.HEADER``, ``RFC822.TEXT``). ``UID FETCH`` always has UID first.

    :func:`sets_seen` says whether the attributes set \\Seen (``BODY[…]``
    without ``.PEEK``, ``RFC822``, ``RFC822.TEXT``; RFC 3501 §6.4.5).

    INTERNALDATE is the file's mtime, shown in the server's time zone as
    Dovecot shows it.

Errors
    ``OSError`` / :class:`~mailhorn.mailstore.errors.NoSuchMessage` when the
    file cannot be opened (the message was expunged by another process):
    the caller answers ``NO [EXPUNGEISSUED]``.
"""

from __future__ import annotations

import datetime as dt
import mmap
from collections.abc import Iterable
from dataclasses import dataclass

from mailhorn.imap import message as mimemsg
from mailhorn.imap.codec import FetchValue
from mailhorn.imap.message import SectionSpec
from mailhorn.imap.parse import FetchAttr
from mailhorn.mailstore.maildir import Mailbox, Message

_EARLY = frozenset({"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE"})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: RFC822.* items are these sections (RFC 3501 §6.4.5).
_RFC822_SECTIONS = {"RFC822": SectionSpec(), "RFC822.HEADER": SectionSpec(text="HEADER"),
                    "RFC822.TEXT": SectionSpec(text="TEXT")}
#: Items that need the parsed message.
_NEEDS_MESSAGE = frozenset({"ENVELOPE", "BODY", "BODYSTRUCTURE", "BODY[]", "RFC822",
                            "RFC822.HEADER", "RFC822.TEXT"})


def sets_seen(attrs: Iterable[FetchAttr]) -> bool:
    """Whether fetching ``attrs`` sets \\Seen (non-PEEK body parts)."""
    return any((a.name == "BODY[]" and not a.peek) or a.name in ("RFC822", "RFC822.TEXT")
               for a in attrs)


def internal_date(timestamp: float) -> bytes:
    """``"21-Nov-2026 14:59:42 +0000"`` (RFC 3501 §9 date-time) in local time."""
    when = dt.datetime.fromtimestamp(timestamp).astimezone()
    offset = when.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    text = (f'"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} '
            f'{when.hour:02d}:{when.minute:02d}:{when.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}"')
    return text.encode("ascii")


@dataclass
class LoadedMessage:
    """A message file mapped into memory (or read, when empty) and parsed once."""

    parsed: mimemsg.Message
    _map: mmap.mmap | None

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a section iterator still holds a view; the GC closes it


def load_message(store: Mailbox, msg: Message) -> LoadedMessage:
    """Open and parse one message; raises NoSuchMessage when it is gone."""
    with store.open(msg) as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return LoadedMessage(mimemsg.parse_message(b""), None)
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return LoadedMessage(mimemsg.parse_message(mapped), mapped)


def rfc822_size(msg: Message, loaded: LoadedMessage | None) -> int:
    if msg.vsize is not None:
        return msg.vsize
    if loaded is None:
        raise ValueError("message not loaded")
    return mimemsg.virtual_size(loaded.parsed)


def needs_message(attrs: Iterable[FetchAttr], msg: Message) -> bool:
    return any(a.name in _NEEDS_MESSAGE or (a.name == "RFC822.SIZE" and msg.vsize is None)
               for a in attrs)


def _item(attr: FetchAttr, msg: Message, uid: int, flags: bytes,
          loaded: LoadedMessage | None) -> tuple[bytes, FetchValue]:
    name = attr.name
    if name == "UID":
        return b"UID", b"%d" % uid
    if name == "FLAGS":
        return b"FLAGS", flags
    if name == "INTERNALDATE":
        return b"INTERNALDATE", internal_date(msg.internal_date)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE", b"%d" % rfc822_size(msg, loaded)
    assert loaded is not None
    parsed = loaded.parsed
    if name == "ENVELOPE":
        return b"ENVELOPE", mimemsg.envelope(parsed.root)
    if name == "BODY":
        return b"BODY", mimemsg.bodystructure(parsed, extended=False)
    if name == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE", mimemsg.bodystructure(parsed, extended=True)
    if name in _RFC822_SECTIONS:
        return name.encode("ascii"), mimemsg.section(parsed, _RFC822_SECTIONS[name])
    assert attr.section is not None
    return attr.response_name(), mimemsg.section(parsed, attr.section, attr.partial)


def fetch_items(attrs: tuple[FetchAttr, ...], msg: Message, uid: int, flags: bytes,
                flags_changed: bool, loaded: LoadedMessage | None) -> list[tuple[bytes, FetchValue]]:
    """The items of ``* N FETCH (…)`` in Dovecot's order (see the module text)."""
    seen_names: set[str] = set()
    early: list[tuple[bytes, FetchValue]] = []
    late: list[tuple[bytes, FetchValue]] = []
    for attr in attrs:
        key = attr.name if attr.section is None else attr.response_name().decode("latin-1")
        if key in seen_names:
            continue
        seen_names.add(key)
        target = early if attr.name in _EARLY else late
        target.append(_item(attr, msg, uid, flags, loaded))
    if flags_changed and "FLAGS" not in seen_names:
        early.append((b"FLAGS", flags))
    return early + late


__all__ = ["LoadedMessage", "fetch_items", "internal_date", "load_message", "needs_message",
           "rfc822_size", "sets_seen"]

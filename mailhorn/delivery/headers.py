"""The headers a final delivery prepends, the mbox ``From `` line, and loop detection.

What it does
    :func:`prepend_headers` builds what Postfix's mail_copy() writes before
    the message in a mailbox, Maildir file, ``/file`` or ``|command`` input,
    in its order::

        Return-Path: <SENDER>
        X-Original-To: ORIGINAL-RECIPIENT      (when the queue file has one)
        Delivered-To: RECIPIENT

    Addresses are written in external form (quote_822_local); the
    ``Delivered-To:`` address is folded to lower case as Postfix does.

    :func:`from_line` is the mbox separator ``From SENDER  Www Mmm dd hh:mm:ss yyyy``
    (``MAILER-DAEMON`` for the null sender, two spaces, asctime of the local
    time). :func:`quote_from` writes ``>From `` for every line that starts
    with ``From `` (mbox "From_ quoting", streamed across chunk boundaries).

    :func:`has_delivered_to` answers Postfix's delivered_hdr_find(): does the
    message's own header block hold ``Delivered-To:`` with this address
    (case-insensitive)? A local or virtual delivery that finds one bounces
    with ``5.4.6 mail forwarding loop for ADDRESS`` (local(8), virtual(8)).

Parameters read
    None: the agents pass ``prepend_delivered_header`` decisions in.

Errors
    None of its own; the content iterator's ``OSError`` propagates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from mailhorn.address.quote import quote_local

#: The sender shown for the null sender (Postfix's MAIL_ADDR_MAIL_DAEMON).
MAILER_DAEMON: Final = "MAILER-DAEMON"
#: Header bytes examined for Delivered-To: (the header block is bounded by cleanup).
_HEADER_SCAN_LIMIT: Final = 1024 * 1024


def external(address: str) -> str:
    """An address as a header shows it (quote_822_local)."""
    return quote_local(address) if address else address


def prepend_headers(*, sender: str | None, orig_rcpt: str | None, delivered: str | None) -> bytes:
    """``Return-Path:``, ``X-Original-To:`` and ``Delivered-To:`` lines (each optional).

    ``sender`` None leaves out Return-Path (an empty sender still gives
    ``Return-Path: <>``); ``orig_rcpt`` empty or None leaves out
    X-Original-To; ``delivered`` None leaves out Delivered-To.
    """
    lines: list[str] = []
    if sender is not None:
        lines.append(f"Return-Path: <{external(sender)}>")
    if orig_rcpt:
        lines.append(f"X-Original-To: {external(orig_rcpt)}")
    if delivered is not None:
        lines.append(f"Delivered-To: {external(delivered.lower())}")
    return "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")


def from_line(sender: str, now: float | None = None) -> bytes:
    """The mbox ``From `` separator line (mail_copy MAIL_COPY_FROM)."""
    who = external(sender) if sender else MAILER_DAEMON
    stamp = time.asctime(time.localtime(time.time() if now is None else now))
    return f"From {who}  {stamp}\n".encode("utf-8", "surrogateescape")


def quote_from(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The content with ``>`` before each line that starts with ``From ``."""
    at_start = True
    pending = b""
    for chunk in chunks:
        data = pending + chunk
        pending = b""
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            if at_start:
                head = data[i:i + 5]
                if len(head) < 5 and i + len(head) == n and b"From "[:len(head)] == head:
                    pending = head  # maybe "From " across the chunk boundary
                    break
                if head == b"From ":
                    out += b">"
            nl = data.find(b"\n", i)
            if nl < 0:
                out += data[i:]
                at_start = False
                break
            out += data[i:nl + 1]
            i = nl + 1
            at_start = True
        if out:
            yield bytes(out)
    if pending:
        yield pending


def with_final_newline(chunks: Iterable[bytes], blank_line: bool = False) -> Iterator[bytes]:
    """The content ending in a newline; ``blank_line`` adds the empty line mbox needs."""
    last = b"\n"
    for chunk in chunks:
        if chunk:
            last = chunk[-1:]
            yield chunk
    if last != b"\n":
        yield b"\n"
    if blank_line:
        yield b"\n"


def header_block(open_content: Callable[[], Iterator[bytes]]) -> bytes:
    """The message's primary header block (bounded), without the empty line."""
    data = bytearray()
    for chunk in open_content():
        data += chunk
        if data.startswith(b"\n"):
            return b""
        end = data.find(b"\n\n")
        if end >= 0:
            return bytes(data[:end + 1])
        if len(data) >= _HEADER_SCAN_LIMIT:
            break
    return bytes(data[:_HEADER_SCAN_LIMIT])


def delivered_to_values(headers: bytes) -> set[str]:
    """The folded values of every ``Delivered-To:`` header in a header block."""
    found: set[str] = set()
    for line in headers.split(b"\n"):
        if line[:13].lower() == b"delivered-to:":
            value = line[13:].decode("utf-8", "surrogateescape").strip().lower()
            if value:
                found.add(value)
    return found


def has_delivered_to(open_content: Callable[[], Iterator[bytes]], address: str) -> bool:
    """Whether the message already says ``Delivered-To: ADDRESS`` (a forwarding loop)."""
    values = delivered_to_values(header_block(open_content))
    folded = address.lower()
    return folded in values or external(folded) in values

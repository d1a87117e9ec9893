"""The IMAP codec hands pipelined input over through a public call (take_unread)."""

from __future__ import annotations

from mailhorn.imap.codec import CommandEvent, ImapCodec


def test_take_unread_returns_what_follows_the_decoded_command() -> None:
    codec = ImapCodec()
    codec.receive_data(b"a1 LOGIN user pass\r\na2 SELECT INBOX\r\na3 NOOP")
    event = codec.next_event()
    assert isinstance(event, CommandEvent)
    assert codec.take_unread() == b"a2 SELECT INBOX\r\na3 NOOP"
    assert codec.buffered == 0 and codec.take_unread() == b""
    assert codec.next_event() is None
